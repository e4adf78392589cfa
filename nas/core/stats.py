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


# --- comparing several settings (e.g. temperature schedules), each with a few seeds -------------------

PERMUTATIONS = 20_000  # Monte Carlo relabellings where the exact enumeration is too large


def kruskal_wallis(
    groups: Sequence[Sequence[float]], rounds: int = PERMUTATIONS, seed: int = 0
) -> tuple[float, float]:
    """Kruskal-Wallis H (tie-corrected) of "the groups come from one distribution", and its permutation
    p-value: the share of random relabellings of the pooled values (group sizes kept) whose H is at least
    the observed one, (count + 1) / (rounds + 1). Exact for any sample size up to Monte Carlo error,
    unlike the chi-square approximation, which is poor with 3 values per group."""
    sizes = [len(g) for g in groups]
    if len(sizes) < 2 or min(sizes) < 1:
        raise ValueError("Kruskal-Wallis needs at least two non-empty groups")
    pooled = np.concatenate([np.asarray(g, dtype=float) for g in groups])
    ranks = _midranks(pooled)
    h = _kw_h(ranks, sizes)
    rng = np.random.default_rng(seed)
    hs = np.array([_kw_h(rng.permutation(ranks), sizes) for _ in range(rounds)])
    return h, float((np.sum(hs >= h - 1e-9) + 1) / (rounds + 1))


def _kw_h(ranks: np.ndarray, sizes: list[int]) -> float:
    n = len(ranks)
    ties = np.unique(ranks, return_counts=True)[1]
    correction = 1 - float((ties**3 - ties).sum()) / (n**3 - n) if n > 1 else 1.0
    if correction <= 0:
        return 0.0
    bounds = np.cumsum([0, *sizes])
    h = sum(ranks[a:b].sum() ** 2 / (b - a) for a, b in zip(bounds[:-1], bounds[1:]))
    return float((12 / (n * (n + 1)) * h - 3 * (n + 1)) / correction)


def permutation_diff(
    a: Sequence[float], b: Sequence[float], rounds: int = PERMUTATIONS, seed: int = 0
) -> float:
    """Two-sided p-value of "mean(a) - mean(b) is 0": the share of splits of the pooled values into groups
    of the same sizes whose |difference of means| is at least the observed one (exact when there are at
    most EXACT_LIMIT splits, else Monte Carlo)."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    pooled, n = np.concatenate([a, b]), len(a)
    observed = abs(a.mean() - b.mean()) - 1e-9
    total = pooled.sum()
    if math.comb(len(pooled), n) <= EXACT_LIMIT:
        sums = np.fromiter(
            (pooled[list(s)].sum() for s in itertools.combinations(range(len(pooled)), n)), float
        )
        diffs = np.abs(sums / n - (total - sums) / len(b))
        return float(np.mean(diffs >= observed))
    rng = np.random.default_rng(seed)
    diffs = [abs(p[:n].mean() - p[n:].mean()) for p in (rng.permutation(pooled) for _ in range(rounds))]
    return float((np.sum(np.asarray(diffs) >= observed) + 1) / (rounds + 1))


def bootstrap_diff_ci(
    a: Sequence[float], b: Sequence[float], level: float = 0.95, rounds: int = 10_000, seed: int = 0
) -> tuple[float, float]:
    """Percentile bootstrap interval of mean(a) - mean(b), each group resampled with replacement."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    rng = np.random.default_rng(seed)
    da = rng.choice(a, size=(rounds, len(a))).mean(1)
    db = rng.choice(b, size=(rounds, len(b))).mean(1)
    lo, hi = np.quantile(da - db, [(1 - level) / 2, (1 + level) / 2])
    return float(lo), float(hi)


def cliffs_delta(a: Sequence[float], b: Sequence[float]) -> float:
    """P(x > y) - P(x < y) for x in a, y in b: -1..1, 0 = no tendency (a rank-based effect size)."""
    x, y = np.asarray(a, dtype=float)[:, None], np.asarray(b, dtype=float)[None, :]
    return float(((x > y).sum() - (x < y).sum()) / (x.size * y.size))


def min_detectable_difference(
    sd: float, n_a: int, n_b: int, alpha: float = 0.05, power: float = 0.8
) -> float:
    """The difference of means a two-sided t-test at `alpha` detects with probability `power`, for groups
    of n_a and n_b values with common standard deviation `sd` (Student t with n_a + n_b - 2 degrees of
    freedom; the usual (t_{1-alpha/2} + t_{power}) * sd * sqrt(1/n_a + 1/n_b))."""
    df = n_a + n_b - 2
    if df < 1:
        return math.nan
    return (t_quantile(1 - alpha / 2, df) + t_quantile(power, df)) * sd * math.sqrt(1 / n_a + 1 / n_b)


def t_cdf(t: float, df: float) -> float:
    """Student t distribution function, from the regularised incomplete beta function."""
    x = df / (df + t * t)
    tail = 0.5 * _betainc(df / 2, 0.5, x)
    return 1 - tail if t > 0 else tail


def t_quantile(q: float, df: float) -> float:
    """The q-quantile of Student's t with df degrees of freedom (bisection on t_cdf)."""
    lo, hi = -1e3, 1e3
    for _ in range(200):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if t_cdf(mid, df) < q else (lo, mid)
    return (lo + hi) / 2


def _betainc(a: float, b: float, x: float) -> float:
    """Regularised incomplete beta I_x(a, b) by its continued fraction (Lentz's method)."""
    if x <= 0 or x >= 1:
        return float(x >= 1)
    if x > (a + 1) / (a + b + 2):  # the fraction converges fast below this point: use the symmetry
        return 1 - _betainc(b, a, 1 - x)
    front = (
        math.exp(math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x))
        / a
    )
    tiny = 1e-300
    c, d = 1.0, 1 - (a + b) * x / (a + 1)
    d = 1 / (d if abs(d) > tiny else tiny)
    f = d
    for m in range(1, 300):
        for numerator in (m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m)),
                          -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1))):  # fmt: skip
            d = 1 + numerator * d
            d = 1 / (d if abs(d) > tiny else tiny)
            c = 1 + numerator / c
            c = c if abs(c) > tiny else tiny
            f *= c * d
        if abs(c * d - 1) < 1e-14:
            break
    return front * f
