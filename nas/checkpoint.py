"""Atomic checkpoints: written to a temp file in the same folder and renamed, so a crash leaves either
the old checkpoint or the new one, never a torn file."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from nas.errors import UserError
from nas.genotype import atomic_write

CHECKPOINT = "checkpoints/last.pt"  # of a run directory: search, retrain, and ablation runs


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> None:
    atomic_write(path, lambda f: torch.save(state, f))


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise UserError(f"checkpoint not found: {path}")
    try:
        # our own files: they hold RNG states (numpy arrays, python tuples), so weights_only is off
        return torch.load(path, map_location=map_location, weights_only=False)
    except Exception as exc:  # a truncated or foreign file
        raise UserError(f"cannot read checkpoint {path}: {type(exc).__name__}: {exc}") from None
