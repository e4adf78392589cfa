"""What a derived genotype carries about where it came from: one writer for the search (every epoch) and
`nas derive` (from the last checkpoint), so the genotype.json of either holds the same fields."""

from __future__ import annotations

from typing import Any

import torch

from nas.arch import diagnostics
from nas.arch.genotype import Genotype
from nas.arch.space import SearchSpace, exclude_ops
from nas.config import SearchRunConfig, to_dict
from nas.cost.budget import derive_capped


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
    normalisation, `betas`, under `search.derive_cap` where it is on; with its provenance
    (`genotype_provenance`, plus `derive_cap`: the cap and the count of capped ops before it)."""
    logits_kept = exclude_ops(logits, space.primitives, cfg.search.derive_exclude)
    provenance = genotype_provenance(cfg, space, logits, epoch, tau)
    cap = cfg.search.derive_cap
    if cap.max_ops is None:
        genotype = space.derive(logits_kept, betas or None)
    else:
        ops = sorted(cap.ops if cap.ops is not None else space.parameter_free)
        genotype, before = derive_capped(space, logits_kept, betas or None, ops, cap.max_ops)
        provenance["derive_cap"] = {"max_ops": cap.max_ops, "ops": ops, "before": before}
    return Genotype(genotype.space, genotype.cells, provenance)
