"""A search run's supernet read back for analysis (`nas rank`, the experiment scripts)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from nas.arch.space import SPACES, SearchSpace, Supernet
from nas.config import SearchRunConfig
from nas.core.errors import UserError
from nas.data.datasets import DatasetInfo
from nas.run.checkpoint import CHECKPOINT, load_checkpoint, restoring


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


@dataclass
class Architecture:
    """A search run's architecture parameters as its last checkpoint holds them."""

    space: SearchSpace
    alphas: dict[str, torch.Tensor]  # cell type -> (E, K) alpha
    betas: dict[str, torch.Tensor]  # cell type -> (E,) edge-normalisation logits; empty without edge_norm
    logits: dict[str, torch.Tensor]  # what derive reads: the sampler's derive_logits of alpha
    epoch: int  # the last epoch trained
    tau: float | None


def load_architecture(run_dir: str | Path, cfg: SearchRunConfig) -> Architecture:
    """The last checkpoint's alphas, betas and derive logits (`nas derive`, the experiment scripts).

    Raises:
        UserError: no checkpoint, one that does not fit the config, or one without architecture parameters.
    """
    from nas.sampling import build_sampler

    space = SPACES.get(cfg.space.name)
    path = Path(run_dir) / CHECKPOINT
    state = load_checkpoint(path)
    with restoring(path):
        model = state["model"]
        alphas = {k[len("alphas.") :]: v for k, v in model.items() if k.startswith("alphas.")}
        betas = {k[len("betas.") :]: v for k, v in model.items() if k.startswith("betas.")}
        if not alphas:
            raise UserError(f"{path} holds no architecture parameters")
        if set(alphas) != set(
            space.cell_types
        ):  # another space's run: one line (restoring), not a KeyError later
            raise KeyError(f"alphas of {sorted(alphas)}, space {space.name} has {sorted(space.cell_types)}")
        for a in alphas.values():
            if a.ndim != 2 or a.shape[1] != len(space.primitives):
                raise ValueError(f"alphas of shape {tuple(a.shape)} for {len(space.primitives)} ops")
        sampler = build_sampler(cfg.sampler, space)
        logits = {k: sampler.derive_logits(torch.as_tensor(v)) for k, v in alphas.items()}
        tau = state.get("tau")
        return Architecture(
            space, alphas, betas, logits, state["epoch"] - 1, None if tau is None else float(tau)
        )
