"""The tables and plots of an ablation (`nas ablate`), built from whatever run directories exist.

- results.csv: one row per run (kind search or baseline, settings, status, final supernet val accuracy,
  proxy test accuracy, params, FLOPs, parameter-free ops, final entropies, supernet ranking, time,
  genotype); unstarted runs keep a row with status `missing`, so a partial sweep is visible as such.
- results.md: per setting, mean +- std (sample standard deviation) over the seeds whose stage finished;
  with baselines, searched against random cells (`nas.ablate.compare`); the cells each run derived.
- tau.png, entropy.png, accuracy.png; with baselines search_vs_random.png and ranking.png; TensorBoard
  hparams in tb/ (one entry per finished search); comparison.json (the comparison's numbers).
"""

from __future__ import annotations

import csv
import json
import math
import shutil
import statistics
from collections.abc import Callable
from pathlib import Path
from typing import Any

from nas.ablate import compare
from nas.ablate.plots import (
    by_setting,
    plot_accuracy,
    plot_entropy,
    plot_pareto,
    plot_ranking,
    plot_strip,
    plot_tau,
    plot_truth_curve,
)
from nas.ablate.spec import DONE, AblationConfig, Run, baseline_genotype, flatten, proxy_dir, proxy_stages
from nas.arch.diagnostics import genotype_string
from nas.arch.genotype import load_genotype_file
from nas.core.atomic import atomic_write_text, read_json_object
from nas.core.errors import UserError
from nas.core.rundir import GENOTYPE_FILE, METRICS_LOG
from nas.run.runlog import read_metrics


def _status(run_dir: Path, done: str, started: bool) -> str:
    if (run_dir / done).is_file():
        return "done"
    return "partial" if started else "missing"


def collect(spec: AblationConfig, runs: list[Run], out: Path) -> list[dict[str, Any]]:
    """One dict per run; keys starting with `_` (the metrics curve) are for the plots, not the csv.

    `score` is what judges a cell (`spec.evaluate`): its proxy retrain's test accuracy, or its ground truth
    on `ground_truth.dataset` (`score_pct`: its percentile in the whole space). Where the space has a
    ground truth every row also gets gt_<dataset> and gt_<dataset>_pct for each of the benchmark's datasets.
    """
    truth = _truth(spec, runs, out)
    rows = []
    for run in runs:
        search_dir = out / "runs" / run.id
        metrics = [] if run.is_baseline else read_metrics(search_dir / METRICS_LOG)
        last = metrics[-1] if metrics else {}
        row: dict[str, Any] = {"run": run.id, "kind": "baseline" if run.is_baseline else "search"}
        row |= {"setting": run.label, **run.point}
        row["search"] = "-" if run.is_baseline else _status(search_dir, DONE["search"], bool(metrics))
        row["epochs"] = len(metrics)
        row["val_acc"] = last.get("val_acc")
        proxy_time = _add_proxy(row, spec, run, out)
        row.update({k: v for k, v in last.items() if k.startswith(("param_free_", "entropy_"))})
        row["guard_stop"] = next((m["epoch"] for m in metrics if "guard_stop" in m), None)  # nas.search.guard
        row["search_time_s"] = sum(m.get("epoch_time", 0.0) for m in metrics)
        row["proxy_time_s"] = proxy_time
        row["wall_time_s"] = row["search_time_s"] + row["proxy_time_s"]
        row["stable_epoch"] = stable_epoch(metrics)
        row["genotype"] = (
            _genotype_text(baseline_genotype(spec, run, out)) if run.is_baseline else last.get("genotype")
        )
        _add_score(row, spec, truth, _final_genotype(spec, run, out, row))
        row["_curve"] = metrics
        rows.append(row)
    if spec.baselines is not None:
        _add_ranking(rows, out)
    return rows


def _add_proxy(row: dict[str, Any], spec: AblationConfig, run: Run, out: Path) -> float:
    """A cell's proxy columns: its status (`done` once every retrain of `proxy_train.seeds` finished), the
    mean test accuracy of its retrains (None until all finished), params and FLOPs; with several seeds, each
    finished retrain's accuracy too (`proxy_test_accs`). Returns the retrains' summed epoch time."""
    stages = proxy_stages(spec)
    dirs = [proxy_dir(out, run.id, stage) for stage in stages]
    curves = [read_metrics(d / METRICS_LOG) for d in dirs]
    results = [
        read_json_object(d / DONE["proxy"], "the proxy retrain's result")
        for d in dirs
        if (d / DONE["proxy"]).is_file()
    ]
    if not stages:
        row["proxy"] = "off"
    else:
        row["proxy"] = "done" if len(results) == len(stages) else "partial" if any(curves) else "missing"
    accs = [r.get("test_acc") for r in results]
    complete = row["proxy"] == "done" and None not in accs
    first = results[0] if results else {}
    row |= {
        "proxy_test_acc": statistics.fmean(accs) if complete else None,
        "params": first.get("params"),
        "flops": first.get("flops"),
    }
    if len(stages) > 1:
        row["proxy_test_accs"] = " ".join(f"{a:.2f}" for a in accs if a is not None)
    return sum(m.get("epoch_time", 0.0) for curve in curves for m in curve)


def stable_epoch(metrics: list[dict[str, Any]]) -> int | None:
    """The first epoch from which the derived cell never changed again (None without genotypes)."""
    cells = [m.get("genotype") for m in metrics]
    if not cells or cells[-1] is None:
        return None
    epoch = len(cells) - 1
    while epoch > 0 and cells[epoch - 1] == cells[-1]:
        epoch -= 1
    return metrics[epoch].get("epoch", epoch)


def _truth(spec: AblationConfig, runs: list[Run], out: Path) -> tuple[Any, str] | None:
    """(ground truth, dataset) of the ablation's space, or None (no ground truth, or no config to read)."""
    from nas.ablate.spec import ablation_truth, base_search_config

    try:
        return ablation_truth(spec, base_search_config(spec, runs, out))
    except UserError:
        if spec.evaluate == "ground_truth":
            raise
        return None


def _final_genotype(spec: AblationConfig, run: Run, out: Path, row: dict[str, Any]):
    """The cell a row is judged by: a baseline's, or a finished search's genotype.json; else None."""
    from nas.arch.space import resolve_genotype

    if not run.is_baseline and row["search"] != "done":
        return None
    source = (
        baseline_genotype(spec, run, out) if run.is_baseline else str(out / "runs" / run.id / GENOTYPE_FILE)
    )
    try:
        return resolve_genotype(source)
    except UserError:
        return None


def _add_score(row: dict[str, Any], spec: AblationConfig, truth: tuple[Any, str] | None, genotype) -> None:
    if truth is not None and genotype is not None:
        row.update(truth[0].record(genotype))
    if spec.evaluate == "ground_truth":
        dataset = truth[1]
        row["score"], row["score_pct"] = row.get(f"gt_{dataset}"), row.get(f"gt_{dataset}_pct")
    else:
        row["score"] = row["proxy_test_acc"]


def score_label(spec: AblationConfig, runs: list[Run], out: Path) -> str:
    """What judges the cells, in words (axis labels, table headers)."""
    if spec.evaluate == "proxy":
        return "proxy test accuracy (%)"
    truth, dataset = _truth(spec, runs, out)
    return f"{truth.name} {dataset} accuracy (%)"


def _genotype_text(source: str) -> str | None:
    """The one-line cell of a baseline, known before its retrain ran (a random draw, zoo name or file)."""
    from nas.arch.space import resolve_genotype

    try:
        return genotype_string(resolve_genotype(source))
    except UserError:
        return None


def _add_ranking(rows: list[dict[str, Any]], out: Path) -> None:
    """supernet_acc (of its own cell) and kendall_tau (over the random cells) for each ranked search."""
    from nas.ablate.launch import rank_file

    retrained = {r["run"]: r["score"] for r in rows if r["kind"] == "baseline" and r.get("score") is not None}
    for row in rows:
        if row["kind"] != "search":
            continue
        rank = compare.rank_results(rank_file(out, row["run"]))
        labels = ["searched", *(r["run"] for r in rows if r["kind"] == "baseline")]
        by_id = dict(zip(labels, rank)) if len(rank) == len(labels) else {}
        row["supernet_acc"] = by_id.get("searched")
        row["kendall_tau"] = compare.supernet_kendall(by_id, retrained) if by_id else None
        row["_rank"] = by_id


def _public(row: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in row.items() if not k.startswith("_")}


def write_csv(rows: list[dict[str, Any]], path: Path) -> None:
    columns: list[str] = []
    for row in rows:
        columns += [k for k in row if not k.startswith("_") and k not in columns]
    lines = [columns] + [["" if row.get(c) is None else row.get(c) for c in columns] for row in rows]
    import io

    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerows(lines)
    atomic_write_text(path, buffer.getvalue())


# --- markdown -----------------------------------------------------------------------------------------


def mean_std(values: list[float], fmt: Callable[[float], str]) -> str:
    """'m +- s' over the values (sample std), 'm' for one value, '-' for none."""
    values = [v for v in values if v is not None and math.isfinite(v)]
    if not values:
        return "–"
    if len(values) == 1:
        return fmt(values[0])
    return f"{fmt(statistics.mean(values))} ± {fmt(statistics.stdev(values))}"


def _table(spec: AblationConfig, rows: list[dict[str, Any]]) -> list[str]:
    keys = [k for k in flatten(spec.grid) if k != spec.seed_key]
    cells = sorted({k[len("param_free_") :] for r in rows for k in r if k.startswith("param_free_")})
    entropies = sorted({k for r in rows for k in r if k.startswith("entropy_")})
    cols = [*keys, "seeds", "supernet val acc (%)"]
    truth = spec.evaluate == "ground_truth"
    if truth:
        cols += ["ground truth (%)", "percentile in the space", "stable from epoch"]
    if spec.proxy_train is not None:
        cols += ["proxy test acc (%)", "params (M)", "FLOPs (M)"]
    cols += (
        [f"param-free ops ({c})" for c in cells] + [e.replace("_", " ") for e in entropies] + ["time (min)"]
    )
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for group in by_setting(rows).values():
        done = [r for r in group if r["search"] == "done"]
        proxied = [r for r in group if r["proxy"] == "done"]
        line = [str(group[0][k]) for k in keys] + [f"{len(done)}/{len(group)}"]
        line.append(mean_std([r["val_acc"] for r in done], "{:.2f}".format))
        if truth:
            line.append(mean_std([r.get("score") for r in done], "{:.2f}".format))
            line.append(mean_std([r.get("score_pct") for r in done], "{:.1f}".format))
            line.append(mean_std([r.get("stable_epoch") for r in done], "{:.0f}".format))
        if spec.proxy_train is not None:
            line.append(mean_std([r["proxy_test_acc"] for r in proxied], "{:.2f}".format))
            line.append(mean_std([r["params"] / 1e6 for r in proxied], "{:.3g}".format))
            line.append(mean_std([r["flops"] / 1e6 for r in proxied], "{:.3g}".format))
        line += [mean_std([r.get(f"param_free_{c}") for r in done], "{:.1f}".format) for c in cells]
        line += [mean_std([r.get(e) for r in done], "{:.3f}".format) for e in entropies]
        line.append(mean_std([r["wall_time_s"] / 60 for r in done], "{:.1f}".format))
        lines.append("| " + " | ".join(line) + " |")
    return lines


def _cells_table(rows: list[dict[str, Any]], out: Path) -> list[str]:
    lines = []
    for row in rows:
        path = out / "runs" / row["run"] / GENOTYPE_FILE
        if row["search"] != "done" or not path.is_file():
            continue
        try:
            genotype = load_genotype_file(path)
        except UserError:
            continue
        if not lines:
            lines = ["| run | " + " | ".join(genotype.cells) + " |", "|---|" + "---|" * len(genotype.cells)]
        ops = [", ".join(f"{op}←{j}" for op, j in cell.edges()) for cell in genotype.cells.values()]
        lines.append(f"| {row['run']} | " + " | ".join(ops) + " |")
    return lines


def write_markdown(
    spec: AblationConfig,
    rows: list[dict[str, Any]],
    out: Path,
    comparisons: list[compare.SettingComparison],
    score: str = "proxy test accuracy (%)",
) -> None:
    grid = ", ".join(f"`{k}` ∈ {{{', '.join(map(str, v))}}}" for k, v in flatten(spec.grid).items())
    baselines = [r for r in rows if r["kind"] == "baseline"]
    rows = [r for r in rows if r["kind"] == "search"]
    n = len(rows)
    searched = sum(r["search"] == "done" for r in rows)
    status = f"{searched}/{n} searches finished"
    if spec.proxy_train is not None:
        status += f", {sum(r['proxy'] == 'done' for r in rows)}/{n} proxy retrains finished"
    if baselines:
        status += f", {sum(r['proxy'] == 'done' for r in baselines)}/{len(baselines)} baselines retrained"
    text = [
        f"# {spec.name}",
        "",
        f"Base config `{spec.base}`; grid {grid or '(none)'}; {status}.",
        f"Mean ± sample std over `{spec.seed_key}` (finished runs only); `seeds` counts finished searches.",
        "Supernet val acc: last search epoch, on the architecture split (the part of the training set alpha trains "
        "on, not held out). Time: summed epoch",
        "times of search and proxy retrain (no start-up or evaluation).",
        *_seeds_line(spec),
        "",
        *_table(spec, rows),
    ]
    section = compare.markdown(comparisons, rows + baselines, score)
    if section:
        text += ["", *section]
    for test in _across(spec, rows):
        text += ["", *compare.across_markdown(test, score)]
    cells = _cells_table(rows, out)
    if cells:
        text += ["", "## Derived cells (`op←input`)", "", *cells]
    atomic_write_text(out / "results.md", "\n".join(text) + "\n")


def _seeds_line(spec: AblationConfig) -> list[str]:
    if spec.proxy_train is None or spec.proxy_train.seeds == 1:
        return []
    n = spec.proxy_train.seeds
    return [f"Proxy test accuracy: each cell's mean over its {n} retrains (seeds s to s + {n - 1}; each one's "
            "in results.csv, `proxy_test_accs`); a cell counts once all have finished."]  # fmt: skip


def _across(spec: AblationConfig, rows: list[dict[str, Any]]) -> list[compare.AcrossSettings]:
    """The settings tested against each other, within each value of the grid keys `reference` is not of."""
    keys = [k for k in flatten(spec.grid) if k != spec.seed_key]
    return compare.across_all(rows, keys, spec.reference, spec.seed_key)


def write_hparams(spec: AblationConfig, rows: list[dict[str, Any]], out: Path) -> None:
    """TensorBoard hparams (tb/<run id>): the grid values and the final metrics of each finished search."""
    from torch.utils.tensorboard import SummaryWriter

    shutil.rmtree(out / "tb", ignore_errors=True)  # rebuilt from scratch: no stale or duplicate entries
    writer = SummaryWriter(str(out / "tb"))
    diagnostics = {k for r in rows for k in r if k.startswith(("param_free_", "entropy_"))}
    metric_keys = ["val_acc", "proxy_test_acc", "supernet_acc", "kendall_tau", *sorted(diagnostics)]
    for row in rows:
        if row["search"] != "done":
            continue
        hparams = {
            k: row[k] if isinstance(row[k], (int, float, str, bool)) else str(row[k])
            for k in flatten(spec.grid)
        }
        metrics = {f"hparam/{k}": float("nan") if row.get(k) is None else float(row[k]) for k in metric_keys}
        writer.add_hparams(hparams, metrics, run_name=row["run"])
    writer.close()


def write_report(spec: AblationConfig, runs: list[Run], out: Path) -> list[Path]:
    """Write results.csv, results.md, the plots and the hparams; returns the files written."""
    if not out.is_dir():
        raise UserError(f"ablation directory not found: {out}")
    rows = collect(spec, runs, out)
    label = score_label(spec, runs, out)
    searched = [r for r in rows if r["kind"] == "search"]
    comparisons = compare.compare(rows)
    write_csv(rows, out / "results.csv")
    write_markdown(spec, rows, out, comparisons, label)
    written = [out / "results.csv", out / "results.md"]
    plots = {
        "tau.png": lambda p: plot_tau(searched, out, p),
        "entropy.png": lambda p: plot_entropy(searched, p),
        "accuracy.png": lambda p: plot_accuracy(searched, p, label),
        "pareto.png": lambda p: plot_pareto(rows, p),
    }
    if spec.evaluate == "ground_truth":  # the derived cell's ground truth per epoch (nas search logs it)
        key = f"gt_{_truth(spec, runs, out)[1]}"
        plots["ground_truth.png"] = lambda p: plot_truth_curve(searched, key, label, p)
    across = _across(spec, rows)
    if spec.baselines is not None or across:
        data = {"settings": [c.as_dict() for c in comparisons], "runs": [_public(r) for r in rows],
                "across_settings": [t.as_dict() for t in across]}  # fmt: skip
        atomic_write_text(out / "comparison.json", json.dumps(data, indent=1) + "\n")
        written.append(out / "comparison.json")
    if spec.baselines is not None:
        plots["search_vs_random.png"] = lambda p: plot_strip(rows, p, label)
        plots["ranking.png"] = lambda p: plot_ranking(rows, p, label)
    written += [out / name for name, draw in plots.items() if draw(out / name)]
    write_hparams(spec, rows, out)
    return written
