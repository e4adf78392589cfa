"""A search run's supernet read back for analysis (`nas rank`, the experiment scripts)."""

from __future__ import annotations

from pathlib import Path

import torch

from nas.checkpoint import CHECKPOINT, load_checkpoint, restoring
from nas.config import SearchRunConfig
from nas.datasets import DatasetInfo
from nas.space import SPACES, SearchSpace, Supernet


def load_supernet(
    run_dir: str | Path, cfg: SearchRunConfig, info: DatasetInfo, device: torch.device | str = "cpu"
) -> tuple[SearchSpace, Supernet]:
    """The run's space and its supernet with the last checkpoint's weights and alphas, on `device`, in train
    mode (batch statistics, as the search used them); channels_last when the run used it.

    Raises:
        UserError: no checkpoint in `run_dir`, or one that does not fit the config.
    """
    space = SPACES.get(cfg.space.name)
    model = space.build_supernet(cfg.space, info.num_classes, info.in_channels)
    path = Path(run_dir) / CHECKPOINT
    state = load_checkpoint(path, map_location="cpu")
    with restoring(path):  # a checkpoint of another config: one line
        model.load_state_dict(state["model"])
    model.to(device).train()
    if cfg.channels_last:
        model = model.to(memory_format=torch.channels_last)
    return space, model
