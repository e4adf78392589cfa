"""The collapse guard: early stopping before a search collapses to parameter-free ops.

DARTS drifts towards parameter-free ops, skip connections above all, the longer it searches (Zela et al.
2020); DARTS+ (Liang et al. 2019, sec. 3.2) stops the search once the normal cell holds two or more skip
connections. Here: once alpha trains, at the end of every epoch the derived first cell (DARTS: normal) is
counted; the first epoch whose count of `search.guard.ops` (default: the space's parameter-free ops) exceeds
`search.guard.max_ops` ends the search, and the architecture parameters go back to those of the last
epoch that kept the bound, so the run's result (genotype.json, alphas.json, `nas derive` of its last
checkpoint) never exceeds it, unless the first epoch that trains alpha already does: its "epoch before"
holds alpha's initial values (near uniform), whose cell the bound never constrained. The weights keep
their last epoch (they do not decide the genotype).
"""

from __future__ import annotations

import torch

from nas.config import GuardConfig
from nas.diagnostics import parameter_free_ops
from nas.genotype import Genotype


class CollapseGuard:
    """Counts the guarded ops of each derived genotype and keeps the last architecture within the bound."""

    def __init__(self, cfg: GuardConfig, space) -> None:
        assert cfg.max_ops is not None
        self.max_ops = cfg.max_ops
        self.ops = frozenset(cfg.ops) if cfg.ops is not None else space.parameter_free
        self.cell = space.cell_types[0]
        self.kept: list[torch.Tensor] = []
        self.kept_epoch = -1  # the epoch whose end the kept parameters are from (-1: before the first)

    def count(self, genotype: Genotype) -> int:
        return parameter_free_ops(genotype, self.cell, self.ops)

    def keep(self, params: list[torch.Tensor], epoch: int) -> None:
        """Remember `params` (the architecture parameters at the end of `epoch`) as the last ones kept."""
        self.kept = [p.detach().clone() for p in params]
        self.kept_epoch = epoch

    def check(self, genotype: Genotype, params: list[torch.Tensor], epoch: int) -> int | None:
        """After `epoch` trained alpha: None if `genotype` (derived from `params`) keeps the bound (it is
        then remembered); else its count, with `params` set back to the last ones kept."""
        count = self.count(genotype)
        if count <= self.max_ops:
            self.keep(params, epoch)
            return None
        with torch.no_grad():
            for p, kept in zip(params, self.kept):
                p.copy_(kept)
        return count
