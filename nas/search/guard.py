"""The collapse guard: early stopping before a search collapses to parameter-free ops.

DARTS drifts towards parameter-free ops, skip connections above all, the longer it searches (Zela et al.
2020); DARTS+ (Liang et al. 2019, sec. 3.2) stops the search once the normal cell holds two or more skip
connections. Here, once alpha trains, the derived first cell (DARTS: normal) is counted at the end of every
epoch: the edges whose op is one of `search.guard.ops` (default: the space's parameter-free ops). The guard
arms at the first epoch whose count keeps the bound `search.guard.max_ops`; once armed, the first epoch
that exceeds it ends the search and the architecture parameters go back to those of the epoch before, so
the run's result (genotype.json, alphas.json, `nas derive` of its last checkpoint) keeps the bound. Counts
above the bound before it arms are ignored: an annealed sampler's first cells are noise (a uniform DARTS
cell has 8 x 3/7 = 3.4 parameter-free edges on average), and stopping there would keep a cell the search
never chose. The weights keep their last epoch (they do not decide the genotype).
"""

from __future__ import annotations

import torch

from nas.arch.diagnostics import parameter_free_ops
from nas.arch.genotype import Genotype
from nas.config import GuardConfig


class CollapseGuard:
    """Counts the guarded ops of each derived genotype and keeps the last architecture within the bound."""

    def __init__(self, cfg: GuardConfig, space) -> None:
        assert cfg.max_ops is not None
        self.max_ops = cfg.max_ops
        self.ops = frozenset(cfg.ops) if cfg.ops is not None else space.parameter_free
        self.cell = space.cell_types[0]
        self.kept: list[torch.Tensor] = []  # the architecture parameters of the last epoch within the bound
        self.kept_epoch: int | None = None  # that epoch; None until the guard arms

    @property
    def armed(self) -> bool:
        return self.kept_epoch is not None

    def count(self, genotype: Genotype) -> int:
        return parameter_free_ops(genotype, self.cell, self.ops)

    def keep(self, params: list[torch.Tensor], epoch: int) -> None:
        """Remember `params` (the architecture parameters at the end of `epoch`) as within the bound: arms."""
        self.kept = [p.detach().clone() for p in params]
        self.kept_epoch = epoch

    def check(self, genotype: Genotype, params: list[torch.Tensor], epoch: int) -> int | None:
        """After `epoch` trained alpha: the count of `genotype` (derived from `params`) if the armed guard
        stops the search here, with `params` set back to the kept ones; None to go on (a count within the
        bound is remembered and arms the guard)."""
        count = self.count(genotype)
        if count <= self.max_ops:
            self.keep(params, epoch)
            return None
        if not self.armed:
            return None
        with torch.no_grad():
            for p, kept in zip(params, self.kept):
                p.copy_(kept)
        return count
