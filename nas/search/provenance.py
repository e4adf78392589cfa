"""What a derived genotype carries about where it came from: one writer for the search (every epoch) and
`nas derive` (from the last checkpoint), so the genotype.json of either holds the same fields."""

from __future__ import annotations

from typing import Any

import torch

from nas import diagnostics
from nas.config import SearchRunConfig, to_dict
from nas.genotype import Genotype
from nas.space import SearchSpace, exclude_ops


def genotype_provenance(
    cfg: SearchRunConfig, space: SearchSpace, logits: dict[str, torch.Tensor], epoch: int, tau: float | None
) -> dict[str, Any]:
    """run, epoch (the last epoch trained), seed, sampler, tau (at the end of that epoch), the op
    probabilities softmax(`logits`) per cell type (the sampler's `derive_logits`), and the whole config."""
    return {
        "run": cfg.name,
        "epoch": epoch,
        "seed": cfg.seed,
        "sampler": cfg.sampler.name,
        "tau": tau,
        "probabilities": diagnostics.probabilities(logits, space.primitives),
        "config": to_dict(cfg),
    }


def derive_genotype(
    cfg: SearchRunConfig,
    space: SearchSpace,
    logits: dict[str, torch.Tensor],
    betas: dict[str, torch.Tensor] | None,
    epoch: int,
    tau: float | None,
) -> Genotype:
    """The space's derive rule on `logits` (without `search.derive_exclude`'s ops) and, with edge
    normalisation, `betas`; with its provenance (`genotype_provenance`)."""
    genotype = space.derive(exclude_ops(logits, space.primitives, cfg.search.derive_exclude), betas or None)
    return Genotype(genotype.space, genotype.cells, genotype_provenance(cfg, space, logits, epoch, tau))
