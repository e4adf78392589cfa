"""Small-sample statistics for comparing searched architectures with random ones (no SciPy needed).

- `mann_whitney_greater`: one-sided Mann-Whitney U test that sample `a` tends to be larger than `b`;
  exact (the permutation distribution of U over every split of the pooled values, so ties are handled
  exactly) when the number of splits is small, normal approximation with tie correction otherwise.
- `kendall_tau`: Kendall's tau-b rank correlation (ties in either variable corrected).
- `percentile`: where a value falls among others (ties count half), in percent.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

import numpy as np

EXACT_LIMIT = 200_000  # most splits enumerated for the exact test


def u_statistic(a: Sequence[float], b: Sequence[float]) -> float:
    """U of `a` against `b`: the number of pairs (x in a, y in b) with x > y, ties counting 1/2."""
    x, y = np.asarray(a, dtype=float)[:, None], np.asarray(b, dtype=float)[None, :]
    return float((x > y).sum() + 0.5 * (x == y).sum())


def mann_whitney_greater(a: Sequence[float], b: Sequence[float]) -> tuple[float, float, str]:
    """One-sided test of H1 "values of `a` tend to exceed those of `b`".

    Returns:
        (U of a against b, p-value, "exact" or "normal").
    """
    if not len(a) or not len(b):
        raise ValueError("both samples need at least one value")
    u = u_statistic(a, b)
    pooled = np.asarray([*a, *b], dtype=float)
    n, m = len(a), len(pooled)
    if math.comb(m, n) <= EXACT_LIMIT:
        # U of a subset S of the pooled values against the rest = sum of the midranks of S - n(n+1)/2
        ranks = _midranks(pooled)
        offset = n * (n + 1) / 2
        us = np.fromiter(
            (ranks[list(s)].sum() - offset for s in itertools.combinations(range(m), n)), dtype=float
        )
        return u, float(np.mean(us >= u - 1e-9)), "exact"
    k = len(b)
    ties = np.unique(pooled, return_counts=True)[1]
    var = n * k / 12 * ((m + 1) - float((ties**3 - ties).sum()) / (m * (m - 1)))
    if var <= 0:
        return u, 1.0, "normal"
    z = (u - n * k / 2 - 0.5) / math.sqrt(var)  # continuity correction
    return u, 0.5 * math.erfc(z / math.sqrt(2)), "normal"


def _midranks(values: np.ndarray) -> np.ndarray:
    """Ranks 1..m, tied values sharing the mean of their ranks."""
    order = np.argsort(values, kind="stable")
    ranks = np.empty(len(values))
    sorted_values = values[order]
    i = 0
    while i < len(values):
        j = i
        while j + 1 < len(values) and sorted_values[j + 1] == sorted_values[i]:
            j += 1
        ranks[order[i : j + 1]] = (i + j) / 2 + 1
        i = j + 1
    return ranks


def kendall_tau(x: Sequence[float], y: Sequence[float]) -> float:
    """Kendall's tau-b of paired values; nan when fewer than two pairs or a variable is constant."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if x.shape != y.shape:
        raise ValueError("x and y must have the same length")
    if len(x) < 2:
        return math.nan
    i, j = np.triu_indices(len(x), k=1)
    dx, dy = np.sign(x[i] - x[j]), np.sign(y[i] - y[j])
    concordance = float((dx * dy).sum())
    pairs_x, pairs_y = float((dx != 0).sum()), float((dy != 0).sum())
    if pairs_x == 0 or pairs_y == 0:
        return math.nan
    return concordance / math.sqrt(pairs_x * pairs_y)


def percentile(value: float, others: Sequence[float]) -> float:
    """Percent of `others` below `value`, ties counting half (50 = the median of `others`)."""
    if not len(others):
        raise ValueError("percentile among no values")
    others = np.asarray(others, dtype=float)
    return 100.0 * float((others < value).sum() + 0.5 * (others == value).sum()) / len(others)
