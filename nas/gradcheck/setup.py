"""`nas gradcheck` inputs: its config, and the fixed supernet, batch and alphas it measures at."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, ClassVar

import torch

from nas.arch.space import SPACES, SearchSpace, Supernet
from nas.config import SearchRunConfig, load_config, load_structured
from nas.core.errors import UserError
from nas.core.limits import SEED, TAU, Range, check_ranges
from nas.core.rundir import CONFIG_FILE
from nas.sampling import SAMPLERS, Sampler, build_sampler

ALPHAS = ("checkpoint", "uniform", "random")


@dataclass
class GradcheckConfig:
    """What `nas gradcheck` measures (configs/gradcheck/*.yaml, `key=value` overrides)."""

    run: str | None = None  # a search run directory: its config, its last checkpoint's weights and alphas
    base: str | None = None  # or a search config file (the supernet as initialised); one of the two
    overrides: list[str] = field(default_factory=list)  # search-config overrides (space, data, device, ...)
    out_dir: str = "runs/gradcheck"
    samplers: list[str] = field(default_factory=list)  # empty = every registered sampler
    sampler_options: dict[str, Any] = field(default_factory=dict)  # e.g. {gumbel_rao: {mc_samples: 20}}
    taus: list[float] = field(default_factory=lambda: [0.1, 0.3, 1.0, 3.0, 10.0])
    samples: int = 100  # gradient estimates per sampler and tau
    batch_size: int = 64  # the fixed batch: the first of the search's architecture split
    alpha: str = "checkpoint"  # checkpoint (the run's alphas, or the fresh supernet's) | uniform | random
    alpha_scale: float = 1.0  # alpha=random: alpha_scale * N(0, 1) (seeded)
    max_architectures: int = 20_000  # refuse to enumerate more (one forward pass each)
    seed: int = 0  # estimate i of every sampler and tau draws its noise from seed (seed, i)

    RANGES: ClassVar[dict[str, Range]] = {
        "taus": TAU, "samples": Range(2, 10**6), "batch_size": Range(1, 2**16), "alpha_scale": Range(0, 1e4),
        "max_architectures": Range(1, 10**6), "seed": SEED,
    }  # fmt: skip


def load_gradcheck(path: str | Path | None, overrides: list[str]) -> GradcheckConfig:
    """The gradcheck config with its value checks; UserError (one line) on a bad key or value."""
    gc = load_structured(GradcheckConfig, path, overrides, kind="gradcheck config")
    if (gc.run is None) == (gc.base is None):
        raise UserError("nas gradcheck needs exactly one of run=RUN_DIR or base=SEARCH_CONFIG")
    if gc.alpha not in ALPHAS:
        raise UserError(f"alpha must be one of {', '.join(ALPHAS)}, got {gc.alpha!r}")
    check_ranges(gc)
    if not gc.taus:
        raise UserError("taus must be a non-empty list")
    for name in gc.samplers or []:
        SAMPLERS.get(name)
    for name in gc.sampler_options:
        SAMPLERS.get(name)
    return gc


def search_config(gc: GradcheckConfig) -> SearchRunConfig:
    """The search config the supernet and data come from (the run's, or `base`), with `overrides`."""
    overrides = [*gc.overrides, "progress=false"]
    if gc.run is not None:
        run = Path(gc.run)
        if not (run / CONFIG_FILE).is_file():
            raise UserError(f"{run} is not a run directory (no config.yaml)")
        return load_config(SearchRunConfig, run / CONFIG_FILE, overrides)
    return load_config(SearchRunConfig, gc.base, overrides)


def samplers(gc: GradcheckConfig, space: SearchSpace) -> dict[str, Sampler]:
    """Every sampler to measure, configured as a search in this space would be (plus `sampler_options`)."""
    out = {}
    for name in gc.samplers or SAMPLERS.names():
        options = gc.sampler_options.get(name) or {}
        try:
            typed = SAMPLERS.get(name).Options(name=name, **options)
        except TypeError as exc:
            raise UserError(f"sampler_options.{name}: {exc}") from None
        check_ranges(typed, f"sampler_options.{name}.")
        out[name] = build_sampler(typed, space)
    return out


@dataclass
class Subject:
    """The fixed function a gradcheck differentiates: supernet (train mode), batch, alphas."""

    space: SearchSpace
    model: Supernet
    batch: tuple[torch.Tensor, torch.Tensor]
    alphas: dict[str, torch.Tensor]  # float32, detached, sorted by name


def prepare(gc: GradcheckConfig, cfg: SearchRunConfig) -> Subject:
    """Build the supernet (with the run's last weights), the fixed batch and the alphas to measure at."""
    from nas.data.loaders import search_loaders
    from nas.run.checkpoint import CHECKPOINT, load_checkpoint
    from nas.run.runtime import pick_device, seed_everything

    device = pick_device(cfg.device)
    seed_everything(cfg.seed)
    data = replace(cfg.data, batch_size=gc.batch_size)
    _, arch_loader, info = search_loaders(data, device=device, seed=cfg.seed, channels_last=cfg.channels_last)
    x, y = next(iter(arch_loader))
    space = SPACES.get(cfg.space.name)
    model = space.build_supernet(cfg.space, info.num_classes, info.in_channels).to(device)
    if gc.run is not None:
        model.load_state_dict(load_checkpoint(Path(gc.run) / CHECKPOINT, map_location=device)["model"])
    if cfg.channels_last:
        model = model.to(memory_format=torch.channels_last)
    model.train()  # batch statistics, as in the search; the weights are never updated
    alphas = {k: a.detach().float().clone() for k, a in sorted(model.alphas.items())}
    if gc.alpha == "uniform":
        alphas = {k: torch.zeros_like(a) for k, a in alphas.items()}
    elif gc.alpha == "random":
        gen = torch.Generator().manual_seed(gc.seed)
        alphas = {
            k: gc.alpha_scale * torch.randn(a.shape, generator=gen).to(a.device) for k, a in alphas.items()
        }
    return Subject(space, model, (x, y), alphas)
