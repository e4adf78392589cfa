"""Derive under a budget: the cell the derive rule prefers among those whose cost fits.

The derive rule (`nas.arch.rule`) picks, per group of rows, the choice with the highest sum of log
probabilities; the cost of a cell is `fixed` plus a sum over its choices. So "the best cell under a budget"
is a multiple-choice knapsack: one choice per group, maximise the summed score, cost <= budget. It is
solved exactly by dynamic programming over the groups on Pareto fronts (Kellerer, Pferschy & Pisinger,
"Knapsack Problems", 2004, ch. 11): after each group only the (cost, score) pairs that no other pair beats
on both survive. DARTS has 8 groups of at most 10 * 7^2 = 490 choices (10^18 cells in all); the fronts stay
at a few hundred to a few thousand points, so this takes well under a second.
"""

from __future__ import annotations

import math

import torch

from nas.arch.rule import CellRule

Choice = tuple[tuple[int, int], ...]  # kept (row, op) pairs of one group


def _options(scores: torch.Tensor, costs: torch.Tensor, rule: CellRule, group: tuple[int, ...]):
    """[(cost, score, choice)] of one group: every choice of the rule, with its summed cost and score."""
    out = []
    for choice in rule.choices(group):
        out.append((sum(float(costs[e, k]) for e, k in choice), sum(float(scores[e, k]) for e, k in choice),
                    choice))  # fmt: skip
    return out


def _pareto(points: list[tuple]) -> list[tuple]:
    """The points no other beats: lower-or-equal cost and higher score (first of equals kept)."""
    front, best = [], -math.inf
    for point in sorted(points, key=lambda p: (p[0], -p[1])):
        if point[1] > best:
            front.append(point)
            best = point[1]
    return front


def cost_range(
    costs: dict[str, torch.Tensor], rules: dict[str, CellRule], fixed: float
) -> tuple[float, float]:
    """(cheapest, most expensive) cost of any cell the derive rule can produce."""
    low = high = fixed
    for ct, rule in rules.items():
        zero = torch.zeros_like(costs[ct])
        for group in rule.groups:
            group_costs = [c for c, _, _ in _options(zero, costs[ct], rule, group)]
            low, high = low + min(group_costs), high + max(group_costs)
    return low, high


def best_under_budget(
    scores: dict[str, torch.Tensor],
    costs: dict[str, torch.Tensor],
    rules: dict[str, CellRule],
    fixed: float,
    budget: float,
) -> tuple[dict[str, list[tuple[int, int]]], float] | None:
    """The kept (row, op) pairs per cell type with the highest summed score among cells of cost <= budget,
    and that cost; None if no cell fits.

    Args:
        scores: cell type -> (E, K) log probabilities (the derive rule's score).
        costs: cell type -> (E, K) table entries.
    """
    groups = [(ct, group) for ct, rule in rules.items() for group in rule.groups]
    options = [_pareto(_options(scores[ct].double(), costs[ct].double(), rules[ct], g)) for ct, g in groups]
    # the cheapest completion of every suffix of groups: prunes partial cells that cannot fit any more
    rest = [0.0] * (len(options) + 1)
    for i in range(len(options) - 1, -1, -1):
        rest[i] = rest[i + 1] + options[i][0][0]
    slack = 1e-9 * max(1.0, abs(budget))  # a budget equal to a cell's cost admits it despite rounding
    front = [(fixed, 0.0, ())]  # (cost, score, choices so far)
    for i, opts in enumerate(options):
        merged = [(c + oc, s + os, path + (choice,)) for c, s, path in front for oc, os, choice in opts
                  if c + oc + rest[i + 1] <= budget + slack]  # fmt: skip
        front = _pareto(merged)
        if not front:
            return None
    cost, _, path = max(front, key=lambda p: p[1])
    kept: dict[str, list[tuple[int, int]]] = {ct: [] for ct in rules}
    for (ct, _), choice in zip(groups, path):
        kept[ct] += list(choice)
    return {ct: sorted(pairs) for ct, pairs in kept.items()}, cost


def derive_within(
    space, alphas: dict[str, torch.Tensor], table, metric: str, budget: float, betas: dict | None = None
):
    """(genotype, cost): the space's derived cell if it fits `budget`, else the best that does (above).
    `betas`: edge-normalisation logits per cell type, or None; an edge's weight scales its op probabilities
    as in the space's derive (PC-DARTS), i.e. adds its log to the edge's scores.

    Raises:
        UserError: in one line, when no cell of the space fits (naming the cheapest cost).
    """
    from dataclasses import asdict

    from nas.arch.rule import one_hot
    from nas.core.errors import UserError
    from nas.cost.table import UNITS, off_column

    alphas = {ct: torch.as_tensor(a).detach().cpu() for ct, a in alphas.items()}
    table.check(space, {ct: tuple(a.shape) for ct, a in alphas.items()})
    genotype = space.derive(alphas, betas)
    # the table's space config travels in the provenance, where a genotype records its search's (what
    # the space's checks read, e.g. a DARTS cell's node count)
    space_cfg = asdict(table.net.space_config(space))
    genotype = type(genotype)(genotype.space, genotype.cells, {"config": {"space": space_cfg}})
    cost = table.cost_of(genotype, space, metric)
    if cost <= budget + 1e-9 * max(1.0, abs(budget)):
        return genotype, cost
    fixed, costs = table.metric(metric)
    rules = {ct: space.cell_rule(ct, c.shape[0]) for ct, c in costs.items()}
    found = best_under_budget(derive_scores(alphas, betas, rules), costs, rules, fixed, budget)
    if found is None:
        low, _ = cost_range(costs, rules, fixed)
        raise UserError(f"no {space.name} cell fits {metric} <= {budget:g}: the cheapest costs {low:g} "
                        f"{UNITS[metric]} on this network")  # fmt: skip
    kept, cost = found
    weights = {
        ct: one_hot(kept[ct], *costs[ct].shape, off_column(rules[ct], costs[ct].shape[1])) for ct in kept
    }
    return space.from_one_hot(weights), cost


def derive_scores(
    alphas: dict[str, torch.Tensor], betas: dict | None, rules: dict[str, CellRule]
) -> dict[str, torch.Tensor]:
    """The derive rule's score per cell type in `rules`: (E, K) log probabilities, plus with edge
    normalisation (`betas`, PC-DARTS) the log of each edge's weight, as the space's derive weighs them."""
    from nas.arch.space import edge_weights

    scores = {
        ct: torch.log_softmax(torch.as_tensor(alphas[ct]).detach().cpu().double(), dim=-1) for ct in rules
    }
    for ct, b in (betas or {}).items():  # (E, K) + (E, 1)
        if ct in rules:
            weights = edge_weights(torch.as_tensor(b).detach().cpu().double(), rules[ct].groups)
            scores[ct] = scores[ct] + weights.log()[:, None]
    return scores


def derive_capped(space, alphas: dict[str, torch.Tensor], betas: dict | None, ops, max_ops: int):
    """(genotype, count before the cap): the space's derived cell, or, where its first cell (DARTS: normal)
    holds more than `max_ops` edges with an op of `ops`, the cell the derive rule prefers among those with at
    most `max_ops` such edges (`search.derive_cap`). P-DARTS (Chen et al. 2019, sec. 3.3) keeps at most M = 2
    skip connections in the final normal cell by handing the weakest ones their best other op; solving the
    rule's score exactly under a count budget does that for every space, with the other cell types untouched.

    Raises:
        UserError: in one line, when no cell of the space keeps the cap (every op derive may pick is capped).
    """
    from nas.arch.diagnostics import parameter_free_ops
    from nas.arch.rule import one_hot
    from nas.core.errors import UserError
    from nas.cost.table import off_column

    genotype = space.derive(alphas, betas)
    cell = space.cell_types[0]
    count = parameter_free_ops(genotype, cell, frozenset(ops))
    if count <= max_ops:
        return genotype, count
    a = torch.as_tensor(alphas[cell])
    rules = {cell: space.cell_rule(cell, a.shape[0])}
    costs = torch.zeros(a.shape, dtype=torch.float64)  # (E, K): 1 for a capped op
    costs[:, [space.primitives.index(op) for op in ops]] = 1.0
    found = best_under_budget(derive_scores(alphas, betas, rules), {cell: costs}, rules, 0.0, max_ops)
    if found is None:
        raise UserError(f"search.derive_cap: no {space.name} cell of type {cell!r} has at most {max_ops} edges "
                        f"of {', '.join(ops)} (every op derive may pick there is capped)")  # fmt: skip
    weights = space.one_hot(genotype)
    weights[cell] = one_hot(found[0][cell], *a.shape, off_column(rules[cell], a.shape[1]))
    capped = space.from_one_hot(weights).cells[cell]
    return type(genotype)(genotype.space, {**genotype.cells, cell: capped}), count
