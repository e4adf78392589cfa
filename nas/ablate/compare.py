"""Searched against baseline architectures: the numbers behind "does the search beat random?".

Every cell is judged by its `score` (report.collect: the proxy retrain's test accuracy, or the space's
ground truth with `evaluate: ground_truth`). Per setting (grid point without the seed): the score of each
searched cell and its percentile among the random cells (and, with a ground truth, in the whole space), mean +- std of both groups, a one-sided Mann-Whitney U test (searched > random;
exact for small samples), and the Kendall tau between the random cells' accuracy inside each final
supernet (`nas rank`) and their retrained accuracy, the classic check of whether a supernet can rank
architectures (Yu et al., 2020; Zela et al., 2020).
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nas.core.atomic import read_json_object
from nas.core.errors import UserError
from nas.core.stats import (
    bootstrap_diff_ci,
    cliffs_delta,
    kendall_tau,
    kruskal_wallis,
    mann_whitney_greater,
    min_detectable_difference,
    percentile,
    permutation_diff,
)


def rank_results(path: Path) -> list[float]:
    """The accuracies of a `nas rank -o` file, in its order ("searched", then the baselines); [] if absent."""
    if not path.is_file():
        return []
    results = read_json_object(path, "the rank report").get("results", [])
    accs = (
        [r.get("supernet_acc") if isinstance(r, dict) else None for r in results]
        if isinstance(results, list)
        else [None]
    )
    if not all(isinstance(a, (int, float)) and not isinstance(a, bool) for a in accs):
        raise UserError(f"the rank report {path} is not one `nas rank -o` wrote (results[].supernet_acc)")
    return accs


def supernet_kendall(rank: dict[str, float], baseline_acc: dict[str, float]) -> float:
    """Kendall tau between supernet accuracy and score over the random cells that have both."""
    ids = [i for i in baseline_acc if i.startswith("random-") and i in rank]
    if len(ids) < 2:
        return math.nan
    return kendall_tau([rank[i] for i in ids], [baseline_acc[i] for i in ids])


@dataclass
class SettingComparison:
    setting: str
    searched: list[float]  # score per finished seed
    percentiles: list[float]  # of each searched cell among the random cells
    random: list[float]
    space_percentiles: list[float] = field(default_factory=list)  # in the whole space (ground truth only)
    u: float | None = None
    p: float | None = None
    method: str = ""
    kendall: list[float] = field(default_factory=list)  # one per search run with a rank file

    def as_dict(self) -> dict[str, Any]:
        return self.__dict__.copy()


def compare(rows: list[dict[str, Any]]) -> list[SettingComparison]:
    """One comparison per setting that has at least one retrained searched cell, against the random
    baseline rows (`row["setting"] == "random"`)."""
    random_rows = [r for r in rows if r.get("kind") == "baseline" and r["setting"] == "random"]
    random = [r["score"] for r in random_rows if r.get("score") is not None]
    out = []
    settings: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        if row.get("kind") == "search":
            settings.setdefault(row["setting"], []).append(row)
    for setting, group in settings.items():
        scored = [r for r in group if r.get("score") is not None]
        searched = [r["score"] for r in scored]
        kendall = [r["kendall_tau"] for r in group if r.get("kendall_tau") is not None]
        kendall = [k for k in kendall if math.isfinite(k)]
        comp = SettingComparison(setting, searched, [], random, kendall=kendall)
        comp.space_percentiles = [r["score_pct"] for r in scored if r.get("score_pct") is not None]
        if searched and random:
            comp.percentiles = [percentile(a, random) for a in searched]
            comp.u, comp.p, comp.method = mann_whitney_greater(searched, random)
        out.append(comp)
    return out


def _fmt(values: list[float], digits: int = 2) -> str:
    if not values:
        return "–"
    if len(values) == 1:
        return f"{values[0]:.{digits}f}"
    return f"{statistics.mean(values):.{digits}f} ± {statistics.stdev(values):.{digits}f}"


def markdown(
    comparisons: list[SettingComparison], rows: list[dict[str, Any]], score: str = "proxy test accuracy (%)"
) -> list[str]:
    """The "searched vs random" section of results.md (empty when there are no baselines); `score` names
    what judges the cells."""
    baselines = [r for r in rows if r.get("kind") == "baseline"]
    if not baselines:
        return []
    random = [r["score"] for r in baselines if r["setting"] == "random" and r.get("score") is not None]
    space = any(c.space_percentiles for c in comparisons)
    lines = [
        "## Searched vs random cells",
        "",
        f"{score[:1].upper() + score[1:]} of every searched cell against {len(random)} random cells of the "
        "same space, judged the same way. Percentile: share of random cells below each searched cell "
        "(ties count half)"
        + ("; in the space: share of all the space's cells below it" if space else "")
        + ". p: one-sided Mann-Whitney U test that searched cells beat random ones. "
        "Kendall τ: rank correlation between the random cells' accuracy inside a search's final supernet "
        "(one-hot, on the architecture split alpha trained on, `nas rank`) and their score, mean ± std over the setting's "
        "searches (near 0: the supernet cannot rank architectures).",
        "",
        "| setting | searched | each searched cell | percentile among random | "
        + ("percentile in the space | " if space else "")
        + "random | U | p | Kendall τ |",
        "|---|---|---|---|" + ("---|" if space else "") + "---|---|---|---|",
    ]
    for c in comparisons:
        each = ", ".join(f"{a:.2f}" for a in c.searched) or "–"
        pct = ", ".join(f"{p:.0f}" for p in c.percentiles) or "–"
        in_space = (", ".join(f"{p:.1f}" for p in c.space_percentiles) or "–") + " | " if space else ""
        u = "–" if c.u is None else f"{c.u:g}"
        p = "–" if c.p is None else f"{c.p:.3g} ({c.method})"
        lines.append(f"| {c.setting} | {_fmt(c.searched)} | {each} | {pct} | {in_space}{_fmt(random)} "
                     f"(n={len(random)}) | {u} | {p} | {_fmt(c.kendall, 3)} |")  # fmt: skip
    others = [r for r in baselines if r["setting"] != "random"]
    if others or random:
        lines += [
            "",
            f"| baseline | {score} | percentile among random | cell |",
            "|---|---|---|---|",
        ]
        for r in sorted(baselines, key=lambda r: (r["setting"] == "random", -(r.get("score") or 0))):
            acc = r.get("score")
            pct = (
                f"{percentile(acc, random):.0f}"
                if acc is not None and random and r["setting"] != "random"
                else ""
            )
            lines.append(
                f"| {r['run']} | {'–' if acc is None else f'{acc:.2f}'} | {pct} | `{r.get('genotype') or ''}` |"
            )
    return lines


# --- settings against each other (e.g. temperature schedules) ------------------------------------------


@dataclass
class AcrossSettings:
    """Do the settings differ in score? A Kruskal-Wallis test over all of them and, with a reference
    setting, each other setting against it (difference of means with a bootstrap 95% interval, a two-sided
    permutation p, Cliff's delta) and the smallest difference the grid could have detected."""

    groups: dict[str, list[float]]
    stratum: str = ""  # the values of the grid's other keys these settings share, e.g. "sampler.name=gdas"
    h: float | None = None
    p: float | None = None
    reference: str | None = None
    pooled_sd: float | None = None
    versus: list[dict[str, Any]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return self.__dict__.copy()


def strata(
    rows: list[dict[str, Any]], keys: list[str], reference: str | None
) -> list[tuple[str, list[dict[str, Any]]]]:
    """The searched rows split by the grid keys (`keys`, the seed excluded) other than the one `reference` is
    a value of, each row's setting then that key's value: a schedule ablation over two samplers compares
    the schedules within each sampler, not across them. One stratum ("") where no such key exists."""
    searched = [r for r in rows if r.get("kind") == "search"]
    by_value = [k for k in keys if any(str(r.get(k)) == str(reference) for r in searched)]
    if reference is None or len(keys) < 2 or len(by_value) != 1:
        return [("", searched)]
    others = [k for k in keys if k != by_value[0]]
    out: dict[str, list[dict[str, Any]]] = {}
    for row in searched:
        label = ", ".join(f"{k}={row.get(k)}" for k in others)
        out.setdefault(label, []).append({**row, "setting": str(row.get(by_value[0]))})
    return list(out.items())


def across_settings(
    rows: list[dict[str, Any]], reference: str | None, stratum: str = "", seed_key: str = "seed"
) -> AcrossSettings | None:
    """The test over the searched rows' scores by setting; None with fewer than two settings that have two
    or more finished seeds. Each setting against the reference also lists the per-seed differences (the
    seeds both have): settings that share a seed share its data split and initialisation."""
    groups: dict[str, list[float]] = {}
    seeded: dict[str, dict[Any, float]] = {}
    for row in rows:
        if row.get("kind") == "search" and row.get("score") is not None:
            groups.setdefault(row["setting"], []).append(float(row["score"]))
            seeded.setdefault(row["setting"], {})[str(row.get(seed_key))] = float(row["score"])
    groups = {k: v for k, v in groups.items() if len(v) >= 2}
    if len(groups) < 2:
        return None
    out = AcrossSettings(groups, stratum)
    out.h, out.p = kruskal_wallis(list(groups.values()))
    residuals = [x - statistics.mean(v) for v in groups.values() for x in v]
    dof = len(residuals) - len(groups)
    out.pooled_sd = math.sqrt(sum(r * r for r in residuals) / dof) if dof > 0 else None
    if reference in groups:
        out.reference = reference
        ref = groups[reference]
        for name, values in groups.items():
            if name == reference:
                continue
            lo, hi = bootstrap_diff_ci(values, ref)
            mdd = min_detectable_difference(out.pooled_sd, len(values), len(ref)) if out.pooled_sd else None
            paired = {k: v - seeded[reference][k] for k, v in seeded[name].items() if k in seeded[reference]}
            out.versus.append({"setting": name, "diff": statistics.mean(values) - statistics.mean(ref),
                               "ci95": [lo, hi], "p": permutation_diff(values, ref),
                               "cliffs_delta": cliffs_delta(values, ref), "min_detectable": mdd,
                               "per_seed": dict(sorted(paired.items()))})  # fmt: skip
    return out


def across_markdown(test: AcrossSettings | None, score: str) -> list[str]:
    """The "settings against each other" section of results.md (empty without a test)."""
    if test is None:
        return []
    sizes = ", ".join(f"{k} {len(v)}" for k, v in test.groups.items())
    lines = [
        "## Settings against each other" + (f" ({test.stratum})" if test.stratum else ""),
        "",
        f"Score: {score}. Kruskal-Wallis over {len(test.groups)} settings ({sizes} finished seeds): "
        f"H = {test.h:.3f}, permutation p = {test.p:.3g}. Pooled within-setting sd: "
        + ("–" if test.pooled_sd is None else f"{test.pooled_sd:.3f}")
        + ".",
    ]
    if test.reference is not None:
        lines += [
            "",
            f"Each setting against `{test.reference}`: difference of means with a 95% bootstrap interval, "
            "two-sided permutation p, Cliff's delta (-1..1), and the smallest difference a two-sided t-test "
            "at 5% would detect with 80% power at the pooled sd and these seed counts; per seed: the difference "
            "at each seed both settings ran (same split and initialisation).",
            "",
            f"| setting | mean − {test.reference} | 95% interval | p | Cliff's δ | detectable at 80% power "
            "| per seed |",
            "|---|---|---|---|---|---|---|",
        ]
        for v in test.versus:
            mdd = "–" if v["min_detectable"] is None else f"±{v['min_detectable']:.2f}"
            seeds = ", ".join(f"{k}: {d:+.2f}" for k, d in v["per_seed"].items()) or "–"
            lines.append(f"| {v['setting']} | {v['diff']:+.2f} | [{v['ci95'][0]:+.2f}, {v['ci95'][1]:+.2f}] "
                         f"| {v['p']:.3g} | {v['cliffs_delta']:+.2f} | {mdd} | {seeds} |")  # fmt: skip
    return lines


def across_all(
    rows: list[dict[str, Any]], keys: list[str], reference: str | None, seed_key: str
) -> list[AcrossSettings]:
    """`across_settings` in every stratum (`strata`) that has a test."""
    tests = (
        across_settings(part, reference, label, seed_key) for label, part in strata(rows, keys, reference)
    )
    return [t for t in tests if t is not None]
