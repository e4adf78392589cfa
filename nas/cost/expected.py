"""The expected cost of the architecture under alpha, and the cost term of the architecture loss.

E_alpha[cost] = fixed + sum over cell types and rows e of  w_e * sum_{k allowed} p~(e, k) * c(e, k)

with p = softmax(alpha) (the sampler's probabilities: the chance that a hard Gumbel sample picks op k on
edge e is exactly softmax(alpha)[e, k]), p~ = p renormalised over the ops derive may keep, and w_e the chance
that a row is kept (`CellRule.keep_probability`). For NAS-Bench-201 (every edge kept, any op, `none`
included) this is exactly the expected cost of a sampled cell, and the expected cost of the derived cell
when derive is read as a draw. For DARTS it is the expected cost of a cell drawn like a derived one: each
node keeps 2 of its inputs uniformly (w_e = 2 / inputs), each kept edge an op other than `none` with the
sampler's odds. The gradient therefore moves the op choice only, not which edges a node keeps (the
trade-off: the supernet's own samples keep all 14 edges with `none` possible, a cell no derive produces;
FBNet and SNAS put the cost on that sample, which here would reward `none`, an op derive never keeps).

Resource-constrained NAS in this form: SNAS (Xie et al., 2019, sec. 3.3, the cost as a linear function of
the sampled one-hot), FBNet (Wu et al., 2019, eq. 7, a latency lookup table summed over layers).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from nas.arch.rule import CellRule
from nas.cost.budget import cost_range
from nas.cost.table import CostTable, standard_spec, table_for


def expected_cost(
    alphas: dict[str, torch.Tensor], costs: dict[str, torch.Tensor], rules: dict[str, CellRule], fixed: float
) -> torch.Tensor:
    """E_alpha[cost] in float64 (the module doc); differentiable in every alpha.

    Args:
        alphas: cell type -> (E, K) logits.
        costs: cell type -> (E, K) table entries (summed over the cells of that type).
    """
    total = torch.zeros((), dtype=torch.float64, device=next(iter(alphas.values())).device)
    for ct, rule in rules.items():
        p = torch.softmax(alphas[ct].double(), dim=-1)[:, list(rule.allowed)]  # (E, A)
        p = p / p.sum(dim=-1, keepdim=True)
        c = costs[ct].to(p.device)[:, list(rule.allowed)]  # (E, A)
        w = rule.keep_probability().to(p.device)  # (E,)
        total = total + (w * (p * c).sum(dim=-1)).sum()
    return total + fixed


@dataclass
class CostTerm:
    """lambda * E[cost] / scale, or with a target lambda * max(0, E[cost] - target) / scale.

    `scale` is the cost of the most expensive cell derive can produce, so lambda = 1 weighs the whole range
    of the space like one nat of cross-entropy, whatever the metric and its unit.
    """

    table: CostTable
    space: Any
    metric: str
    weight: float
    target: float | None

    def __post_init__(self) -> None:
        self.fixed, self.costs = self.table.metric(self.metric)
        shapes = {ct: tuple(c.shape) for ct, c in self.costs.items()}
        self.rules = {ct: self.space.cell_rule(ct, shape[0]) for ct, shape in shapes.items()}
        self.min, self.max = cost_range(self.costs, self.rules, self.fixed)
        self.scale = max(self.max, 1e-12)

    def expected(self, alphas: dict[str, torch.Tensor]) -> torch.Tensor:
        return expected_cost(alphas, self.costs, self.rules, self.fixed)

    def penalty(self, alphas: dict[str, torch.Tensor]) -> torch.Tensor:
        """The term added to the architecture loss (a scalar tensor, differentiable in alpha)."""
        cost = self.expected(alphas)
        if self.target is not None:
            cost = (cost - self.target).clamp_min(0.0)
        return self.weight * cost / self.scale

    def derived(self, genotype) -> float:
        """The derived cell's actual cost (the whole network's, from the table)."""
        return self.table.cost_of(genotype, self.space, self.metric)

    def epoch_record(self, alphas: dict[str, torch.Tensor], genotype) -> dict[str, float]:
        """Named values for metrics.jsonl: expected and derived cost, the term's value."""
        with torch.no_grad():
            expected, penalty = float(self.expected(alphas)), float(self.penalty(alphas))
        return {f"expected_{self.metric}": expected, f"derived_{self.metric}": self.derived(genotype),
                "cost_term": penalty}  # fmt: skip


def cost_term(cfg, space: Any, info, space_cfg, supernet) -> CostTerm | None:
    """The search's cost term from `search.cost` (a `CostConfig`), checked against the supernet's alphas
    (built from `space_cfg`, the search's `space` section); None when the config asks for nothing
    (weight 0 and no table)."""
    if cfg.weight == 0 and cfg.table is None:
        return None
    spec = standard_spec(space, info.num_classes, info.in_channels, info.image_size, space_cfg)
    table = table_for(space, cfg.table, spec)
    table.check(space, {ct: tuple(a.shape) for ct, a in supernet.alphas.items()})
    return CostTerm(table, space, cfg.metric, cfg.weight, cfg.target)
