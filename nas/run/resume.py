"""What a resume may change: overrides that leave the run the same run, recorded in its config.yaml.

A resumed run continues from weights, optimiser state and data order that only make sense for the
config they came from. Overrides that do not change the model, the data or the split (more epochs, the
device, logging) are accepted and written into `config.yaml`, so the run directory says what actually
ran; any other is refused with one line naming the key.
"""

from __future__ import annotations

import dataclasses
import datetime
from pathlib import Path
from typing import Any, TypeVar

from omegaconf import OmegaConf

from nas.config import flat, load_config, to_dict, to_yaml
from nas.core.atomic import atomic_write_text
from nas.core.errors import UserError
from nas.core.rundir import CONFIG_FILE

T = TypeVar("T")

SAFE_ON_RESUME = (
    "name",
    "device",
    "deterministic",
    "progress",
    "progress_every",
    "keep_checkpoints",
    "search.epochs",
    "train.epochs",
    "data.eval_batch_size",
    "data.device_resident",
    "data.cache_dir",
    "data.download",
)


def _refuse(run_dir: Path, key: str, old: Any, new: Any) -> UserError:
    return UserError(
        f"cannot resume {run_dir} with {key}={new} (the run has {old}): it changes what the run is; "
        f"a resume may change only {', '.join(SAFE_ON_RESUME)}; start a new run in another out_dir"
    )


def _refuse_switch(run_dir: Path, saved: Any, overrides: list[str]) -> None:
    """Refuse an override that switches the space or the sampler before the saved config is loaded under
    the other one's schema (whose refusal would name a key of the saved run instead of the override)."""
    for override in overrides:
        key, _, value = override.partition("=")
        key = key.strip()
        if key in ("space.name", "sampler.name"):
            old = OmegaConf.select(OmegaConf.structured(saved), key, default=None)
            if old is not None and str(old) != value.strip():
                raise _refuse(run_dir, key, old, value.strip())


def resume_config(schema: type[T], run_dir: Path, overrides: list[str]) -> tuple[T, dict[str, list]]:
    """The config to resume `run_dir` with, and what the overrides changed ({key: [old, new]}).

    Raises:
        UserError: an override changes what the run is (naming the key), or out_dir.
    """
    for override in overrides:
        key, _, value = override.partition("=")
        if key.strip() == "out_dir" and Path(value).resolve() != run_dir.resolve():
            raise UserError(
                f"cannot resume {run_dir} with out_dir={value}: a run resumes in its own directory"
            )
    saved = load_config(schema, run_dir / CONFIG_FILE, [f"out_dir={run_dir}"])
    _refuse_switch(run_dir, saved, overrides)
    cfg = load_config(schema, run_dir / CONFIG_FILE, [*overrides, f"out_dir={run_dir}"])
    before, after = flat(to_dict(saved)), flat(to_dict(cfg))
    # keys of both (a space or sampler switched by an override has keys of its own; None where absent)
    changed = {k: [before.get(k), after.get(k)] for k in {**before, **after} if before.get(k) != after.get(k)}
    for key, (old, new) in changed.items():
        if key not in SAFE_ON_RESUME:
            raise _refuse(run_dir, key, old, new)
    return cfg, changed


def record_resume(run_dir: Path, cfg: Any, changed: dict[str, list]) -> None:
    """Rewrite run_dir/config.yaml (atomically) with `cfg`, keeping its provenance and adding a line per
    resume that changed something."""
    saved = OmegaConf.load(run_dir / CONFIG_FILE)
    meta = OmegaConf.to_container(saved.get("_meta") or OmegaConf.create({}))
    when = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    meta["resumed"] = [*meta.get("resumed", []), {"time": when, "changed": changed}]
    first = str(saved.get("out_dir", cfg.out_dir))
    if Path(first).resolve() == run_dir.resolve():  # keep it as first written; a moved run gets its new path
        cfg = dataclasses.replace(cfg, out_dir=first)
    atomic_write_text(run_dir / CONFIG_FILE, to_yaml(cfg, meta=meta))
