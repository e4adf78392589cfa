"""The structure of a space's derive rule, as data the cost code can read without knowing the space.

Both derive rules in this tool are one rule over *groups* of alpha rows: each group keeps `keep` of its rows
(edges), each kept edge one of the `allowed` ops, and the derived cell is the choice with the highest score
sum over kept (edge, op) of log p(edge, op):

- NAS-Bench-201: every edge is its own group and is kept (keep 1), any op, `none` included: the argmax
  per edge.
- DARTS: a node's incoming edges form a group that keeps 2, ops without `none`: the two edges whose
  strongest non-`none` op is the most probable, each with that op (DARTS' `_parse`).

Maximising the sum of log probabilities per group is exactly the argmax rules above, so a budget can be
imposed on the same score (`nas.cost.budget`), and the expected cost (`nas.cost.expected`) is defined over
the same groups.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class CellRule:
    """How derive turns one cell type's (E, K) op probabilities into kept (edge, op) pairs.

    Attributes:
        groups: the alpha rows that compete in each group (DARTS: one node's incoming edges).
        keep: how many rows each group keeps (at most the size of its smallest group).
        allowed: the op columns a kept row may take (DARTS: every op but `none`).
    """

    groups: tuple[tuple[int, ...], ...]
    keep: int
    allowed: tuple[int, ...]

    @property
    def edges(self) -> int:
        return sum(len(g) for g in self.groups)

    def keep_probability(self) -> torch.Tensor:
        """(E,) the chance that each row is kept when a group keeps `keep` of its rows uniformly at random."""
        p = torch.zeros(self.edges, dtype=torch.float64)
        for group in self.groups:
            p[list(group)] = self.keep / len(group)
        return p

    def choices(self, group: tuple[int, ...]) -> Iterator[tuple[tuple[int, int], ...]]:
        """Every choice of one group: `keep` distinct rows (in increasing order), each with an allowed op."""
        for rows in itertools.combinations(group, self.keep):
            for ops in itertools.product(self.allowed, repeat=self.keep):
                yield tuple(zip(rows, ops))

    def cover(self, round_: int) -> list[int]:
        """The rows kept in round `round_` of a set of cells that together keep every row at least once
        (`rounds()` of them): group g keeps rows (round * keep + t) mod |g|, t < keep."""
        return [g[(round_ * self.keep + t) % len(g)] for g in self.groups for t in range(self.keep)]

    def rounds(self) -> int:
        return max(-(-len(g) // self.keep) for g in self.groups)


def best_choice(log_probs: torch.Tensor, rule: CellRule) -> list[tuple[int, int]]:
    """The derive rule on (E, K) log probabilities: per group the `keep` rows whose best allowed op scores
    highest (ties: the lower row), each with that op (ties: the lower op); kept (row, op) pairs by row."""
    allowed = list(rule.allowed)
    scores, ops = log_probs[:, allowed].max(dim=1)  # (E,) best allowed score and its position in `allowed`
    kept = []
    for group in rule.groups:
        order = sorted(group, key=lambda e: -scores[e].item())[: rule.keep]  # stable: ties keep lower rows
        kept += [(e, allowed[ops[e].item()]) for e in sorted(order)]
    return kept


def one_hot(kept: list[tuple[int, int]], edges: int, ops: int, off: int | None) -> torch.Tensor:
    """(E, K) weights with a 1 at every kept (row, op) and, on rows not kept, at column `off` (the `none`
    op of a space whose derive drops edges) or nowhere (`off` None)."""
    weights = torch.zeros(edges, ops)
    if off is not None:
        weights[:, off] = 1.0
    for e, k in kept:
        weights[e] = 0.0
        weights[e, k] = 1.0
    return weights
