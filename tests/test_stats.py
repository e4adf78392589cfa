"""Small-sample statistics against hand-computed values and brute force."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from nas.core.stats import kendall_tau, mann_whitney_greater, percentile, u_statistic


def test_u_counts_pairs_with_ties_as_half():
    assert u_statistic([3, 5], [1, 3, 4]) == 2 * 3 - 1 - 0.5  # 3 beats 1, ties 3; 5 beats all three


def test_exact_p_of_complete_separation_is_one_over_the_number_of_splits():
    u, p, method = mann_whitney_greater([7, 8, 9], [1, 2, 3, 4, 5, 6])
    assert (u, method) == (18, "exact") and p == pytest.approx(1 / math.comb(9, 3))
    assert mann_whitney_greater([1, 2, 3], [4, 5, 6, 7])[1] == 1.0  # the opposite direction


def test_exact_p_equals_brute_force_permutation_test_with_ties():
    a, b = [2.0, 3.0, 3.0, 5.0], [1.0, 2.0, 3.0, 3.0, 4.0]
    pooled = a + b
    u = u_statistic(a, b)
    splits = list(itertools.combinations(range(len(pooled)), len(a)))
    count = 0
    for s in splits:
        x = [pooled[i] for i in s]
        y = [pooled[i] for i in range(len(pooled)) if i not in s]
        count += u_statistic(x, y) >= u
    assert mann_whitney_greater(a, b)[1] == pytest.approx(count / len(splits))


def test_normal_approximation_is_close_to_exact_for_moderate_samples():
    rng = np.random.default_rng(0)
    a, b = rng.normal(0.6, 1, 7).tolist(), rng.normal(0, 1, 11).tolist()
    exact = mann_whitney_greater(a, b)[1]
    import nas.core.stats as stats

    limit, stats.EXACT_LIMIT = stats.EXACT_LIMIT, 0
    try:
        u, approx, method = mann_whitney_greater(a, b)
    finally:
        stats.EXACT_LIMIT = limit
    assert method == "normal" and abs(approx - exact) < 0.01


def test_kendall_tau_b():
    assert kendall_tau([1, 2, 3, 4], [10, 20, 30, 40]) == 1.0
    assert kendall_tau([1, 2, 3, 4], [4, 3, 2, 1]) == -1.0
    assert kendall_tau([1, 2, 3, 4], [1, 3, 2, 4]) == pytest.approx((5 - 1) / 6)
    # a tie in x: 5 of 6 pairs untied in x, 6 in y; concordant 2, discordant 3 -> (2 - 3) / sqrt(5 * 6)
    assert kendall_tau([1, 1, 2, 3], [1, 2, 3, 0]) == pytest.approx((2 - 3) / math.sqrt(5 * 6))
    assert math.isnan(kendall_tau([1, 1, 1], [1, 2, 3])) and math.isnan(kendall_tau([1], [2]))


def test_percentile_counts_ties_half():
    assert percentile(5, [1, 2, 3, 4]) == 100 and percentile(0, [1, 2]) == 0
    assert percentile(2, [1, 2, 3, 4]) == pytest.approx(37.5)


# --- several settings --------------------------------------------------------------------------------


def test_kruskal_wallis_h_and_its_permutation_p_match_brute_force():
    from nas.core.stats import _kw_h, _midranks, kruskal_wallis

    groups = [[1.0, 2.0, 2.0], [3.0, 5.0], [4.0, 6.0, 7.0]]
    h, p = kruskal_wallis(groups, rounds=20_000, seed=1)
    pooled = np.concatenate(groups)
    ranks, sizes = _midranks(pooled), [3, 2, 3]
    # every relabelling of the 8 values into groups of 3, 2, 3 (ties counted once per distinct labelling)
    hs = [_kw_h(ranks[list(perm)], sizes) for perm in itertools.permutations(range(8))]
    exact = float(np.mean(np.asarray(hs) >= h - 1e-9))
    assert p == pytest.approx(exact, abs=0.01)
    # H itself: 12 / (n (n + 1)) sum R_i^2 / n_i - 3 (n + 1), divided by the tie correction
    r = [ranks[:3].sum(), ranks[3:5].sum(), ranks[5:].sum()]
    raw = 12 / (8 * 9) * (r[0] ** 2 / 3 + r[1] ** 2 / 2 + r[2] ** 2 / 3) - 27
    assert h == pytest.approx(raw / (1 - (2**3 - 2) / (8**3 - 8)))


def test_difference_tests_against_enumeration_and_known_quantiles():
    from nas.core.stats import (
        bootstrap_diff_ci,
        cliffs_delta,
        min_detectable_difference,
        permutation_diff,
        t_quantile,
    )

    a, b = [5.0, 6.0, 7.5], [1.0, 2.0, 3.0]
    assert permutation_diff(a, b) == pytest.approx(2 / math.comb(6, 3))  # only the two extreme splits
    assert permutation_diff(a, a) == 1.0
    lo, hi = bootstrap_diff_ci(a, b)
    assert lo <= np.mean(a) - np.mean(b) <= hi and lo > 0
    assert cliffs_delta(a, b) == 1.0 and cliffs_delta(b, a) == -1.0 and cliffs_delta([1, 2], [2, 1]) == 0.0
    # Student t quantiles as printed in every table: t_{.975}(4) = 2.776, t_{.975}(10) = 2.228, t_{.8}(4) = 0.941
    assert [round(t_quantile(q, df), 3) for q, df in ((0.975, 4), (0.975, 10), (0.8, 4))] == [
        2.776,
        2.228,
        0.941,
    ]
    assert t_quantile(0.5, 7) == pytest.approx(0.0, abs=1e-6)
    mdd = min_detectable_difference(1.0, 3, 3)
    assert mdd == pytest.approx((2.7764 + 0.9410) * math.sqrt(2 / 3), rel=1e-3)
    assert min_detectable_difference(1.0, 10, 10) < mdd  # more seeds see smaller differences
