"""Checkpoints: atomic writes, and loads that never run code from the file.

A checkpoint holds only tensors and plain Python values (numbers, strings, None, lists, tuples, dicts):
RNG states are stored as tensors and plain ints (`nas.run.runtime.rng_state`). It is therefore loaded with
`torch.load(weights_only=True)`, whose unpickler refuses every global outside PyTorch's tensor types, so a
`last.pt` replaced by a pickle whose `__reduce__` calls `os.system` is refused instead of executed.
Checkpoints written before RNG states were plain values hold a numpy array; exactly the numpy globals
and the uint32 dtype that rebuild its array are allowed for them (`_legacy_globals`), nothing else.

Saving serialises into memory first and then writes the bytes through `atomic_write` (temp file, fsync,
rename): a full disk or a read-only folder is a plain `OSError` naming the file, and the previous
checkpoint stays as it was.
"""

from __future__ import annotations

import contextlib
import io
import math
import pickle
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from nas.core.atomic import atomic_write
from nas.core.errors import UserError
from nas.core.limits import EPOCHS_MAX
from nas.core.rundir import CHECKPOINT  # noqa: F401  (re-exported: where checkpoints live in a run)


def _legacy_globals() -> list[Any]:
    """What rebuilds the uint32 key array of a numpy RNG state: all a pre-plain-RNG checkpoint needs."""
    core = getattr(np, "_core", None) or np.core
    return [core.multiarray._reconstruct, np.ndarray, np.dtype, type(np.dtype(np.uint32))]


class CheckpointWriteError(UserError):
    """Writing a checkpoint failed (disk full, no permission); the previous one is untouched."""


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> None:
    """Serialise `state` and write it atomically over `path`.

    Raises:
        CheckpointWriteError: the file system refused the write; the previous checkpoint is kept.
    """
    buffer = io.BytesIO()
    torch.save(state, buffer)  # errors of the state itself (unpicklable values) are bugs: they propagate
    try:
        atomic_write(path, lambda f: f.write(buffer.getbuffer()))
    except OSError as exc:
        kept = "the previous checkpoint is kept" if Path(path).is_file() else "no checkpoint was written"
        raise CheckpointWriteError(f"cannot write checkpoint {path}: {exc.strerror or exc}; {kept}") from None


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint written by `save_checkpoint`, executing nothing from the file.

    Raises:
        UserError: missing, unreadable, or holding anything but tensors and plain values.
    """
    path = Path(path)
    if not path.is_file():
        raise UserError(f"checkpoint not found: {path}")
    try:
        with torch.serialization.safe_globals(_legacy_globals()), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch's notes on foreign pickle protocols: the error says it
            state = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:  # the restricted unpickler met a global it does not allow
        raise UserError(
            f"refusing checkpoint {path}: it holds {_forbidden(exc)}, which no nas checkpoint does "
            "(nothing from it was run; load checkpoints only from sources you trust)"
        ) from None
    except Exception as exc:  # truncated, not a checkpoint at all
        raise UserError(f"cannot read checkpoint {path}: {_first_line(exc)}") from None
    if not isinstance(state, dict) or "epoch" not in state:
        raise UserError(f"{path} is not a nas checkpoint (no epoch)")
    _check_fields(path, state)
    return state


def _check_fields(path: Path, state: dict[str, Any]) -> None:
    """The fields every reader takes as given have their type: a crafted file is refused here, in one line,
    instead of failing somewhere in a restore (the rest is checked by `restoring`)."""
    epoch = state["epoch"]
    if isinstance(epoch, bool) or not isinstance(epoch, int) or not 0 <= epoch <= EPOCHS_MAX:
        raise UserError(f"{path} is not a nas checkpoint: its epoch is {str(epoch)[:40]!r}")
    for key in ("model", "w_opt", "a_opt", "ema", "optimizer"):
        if key in state and state[key] is not None and not isinstance(state[key], dict):
            raise UserError(f"{path} is not a nas checkpoint: its {key!r} is a {type(state[key]).__name__}")
    model = state.get("model") or {}
    bad = next(
        (k for k, v in model.items() if not isinstance(k, str) or not isinstance(v, torch.Tensor)), None
    )
    if bad is not None:
        raise UserError(f"{path} is not a nas checkpoint: its model entry {str(bad)[:60]!r} is not a tensor")


@contextlib.contextmanager
def restoring(path: str | Path) -> Iterator[None]:
    """Report a checkpoint that does not fit the model or optimiser being restored (another config, another
    space) as one line, instead of PyTorch's size-mismatch listing of every tensor."""
    try:
        yield
    except (RuntimeError, KeyError, ValueError, TypeError, IndexError, AttributeError, OverflowError) as exc:
        raise UserError(
            f"checkpoint {path} does not match this run's config ({_first_line(exc)[:200]}); "
            "was config.yaml edited or the checkpoint copied from another run?"
        ) from None


def _first_line(exc: BaseException) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return lines[0] if lines else type(exc).__name__


def _forbidden(exc: pickle.UnpicklingError) -> str:
    """The global the unpickler refused, from torch's message (`Unsupported global: GLOBAL posix.system`)."""
    for line in str(exc).splitlines():
        if "GLOBAL" in line:
            name = line.split("GLOBAL", 1)[1].split()[0].strip(" .,`'\"")
            if name:
                return f"the global {name[:100]!r}"
    return "an object that is not a tensor or a plain value"


def stop_if_diverged(
    record: dict[str, Any], keys: tuple[str, ...], path: Path, extra_ok: bool = True
) -> None:
    """Stop a run whose epoch produced a NaN or infinite loss, before it logs or checkpoints that epoch.

    Args:
        record: the epoch's metrics; `keys` name its losses (None values are skipped).
        path: the run's checkpoint, which stays the last good one.
        extra_ok: further finiteness checks of the caller (e.g. the alphas).

    Raises:
        UserError: one line naming the epoch, the value and the kept checkpoint.
    """
    bad = [(k, record[k]) for k in keys if record.get(k) is not None and not math.isfinite(record[k])]
    if not bad and extra_ok:
        return
    what = f"{bad[0][0]} is {bad[0][1]}" if bad else "the architecture parameters are not finite"
    kept = f"the last good checkpoint {path} is kept" if path.is_file() else "no checkpoint was written"
    raise UserError(
        f"the run diverged in epoch {record.get('epoch')}: {what}; nothing of this epoch was saved and {kept}. "
        "Start a new run with a lower learning rate (or stronger gradient clipping)"
    )
