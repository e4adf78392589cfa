"""The tables and plots of an ablation (`nas ablate`), built from whatever run directories exist.

- results.csv: one row per run (settings, status, final supernet val accuracy, proxy test accuracy,
  params, FLOPs, parameter-free ops, final entropies, time, genotype); unstarted runs keep a row with
  status `missing`, so a partial sweep is visible as such.
- results.md: per setting, mean +- std (sample standard deviation) over the seeds whose stage finished,
  and the cells each run derived.
- tau.png, entropy.png, accuracy.png, and TensorBoard hparams in tb/ (one entry per finished search).
"""

from __future__ import annotations

import csv
import json
import math
import shutil
import statistics
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nas.errors import UserError
from nas.genotype import atomic_write, atomic_write_text, load_genotype_file
from nas.logging import read_metrics

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from nas.ablate import AblationConfig, Run


def _status(run_dir: Path, done: str, started: bool) -> str:
    if (run_dir / done).is_file():
        return "done"
    return "partial" if started else "missing"


def collect(spec: AblationConfig, runs: list[Run], out: Path) -> list[dict[str, Any]]:
    """One dict per run; keys starting with `_` (the metrics curve) are for the plots, not the csv."""
    from nas.ablate import DONE

    rows = []
    for run in runs:
        search_dir, proxy_dir = out / "runs" / run.id, out / "proxy" / run.id
        metrics = read_metrics(search_dir / "metrics.jsonl")
        last = metrics[-1] if metrics else {}
        proxy_curve = read_metrics(proxy_dir / "metrics.jsonl")
        proxy = (
            json.loads((proxy_dir / DONE["proxy"]).read_text())
            if (proxy_dir / DONE["proxy"]).is_file()
            else {}
        )
        row: dict[str, Any] = {"run": run.id, "setting": run.label, **run.point}
        row["search"] = _status(search_dir, DONE["search"], bool(metrics))
        row["epochs"] = len(metrics)
        row["val_acc"] = last.get("val_acc")
        row["proxy"] = (
            "off" if spec.proxy_train is None else _status(proxy_dir, DONE["proxy"], bool(proxy_curve))
        )
        row.update(
            {
                "proxy_test_acc": proxy.get("test_acc"),
                "params": proxy.get("params"),
                "flops": proxy.get("flops"),
            }
        )
        row.update({k: v for k, v in last.items() if k.startswith(("param_free_", "entropy_"))})
        row["search_time_s"] = sum(m.get("epoch_time", 0.0) for m in metrics)
        row["proxy_time_s"] = sum(m.get("epoch_time", 0.0) for m in proxy_curve)
        row["wall_time_s"] = row["search_time_s"] + row["proxy_time_s"]
        row["genotype"] = last.get("genotype")
        row["_curve"] = metrics
        rows.append(row)
    return rows


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


def _settings(rows: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    groups: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault(row["setting"], []).append(row)
    return groups


def _table(spec: AblationConfig, rows: list[dict[str, Any]]) -> list[str]:
    from nas.ablate import flatten

    keys = [k for k in flatten(spec.grid) if k != spec.seed_key]
    cells = sorted({k[len("param_free_") :] for r in rows for k in r if k.startswith("param_free_")})
    entropies = sorted({k for r in rows for k in r if k.startswith("entropy_")})
    cols = [*keys, "seeds", "supernet val acc (%)"]
    if spec.proxy_train is not None:
        cols += ["proxy test acc (%)", "params (M)", "FLOPs (M)"]
    cols += (
        [f"param-free ops ({c})" for c in cells] + [e.replace("_", " ") for e in entropies] + ["time (min)"]
    )
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for group in _settings(rows).values():
        done = [r for r in group if r["search"] == "done"]
        proxied = [r for r in group if r["proxy"] == "done"]
        line = [str(group[0][k]) for k in keys] + [f"{len(done)}/{len(group)}"]
        line.append(mean_std([r["val_acc"] for r in done], "{:.2f}".format))
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
        path = out / "runs" / row["run"] / "genotype.json"
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


def write_markdown(spec: AblationConfig, rows: list[dict[str, Any]], out: Path) -> None:
    from nas.ablate import flatten

    grid = ", ".join(f"`{k}` ∈ {{{', '.join(map(str, v))}}}" for k, v in flatten(spec.grid).items())
    n = len(rows)
    searched = sum(r["search"] == "done" for r in rows)
    status = f"{searched}/{n} searches finished"
    if spec.proxy_train is not None:
        status += f", {sum(r['proxy'] == 'done' for r in rows)}/{n} proxy retrains finished"
    text = [
        f"# {spec.name}",
        "",
        f"Base config `{spec.base}`; grid {grid or '(none)'}; {status}.",
        f"Mean ± sample std over `{spec.seed_key}` (finished runs only); `seeds` counts finished searches.",
        "Supernet val acc: last search epoch, on the held-out half of the search split. Time: summed epoch",
        "times of search and proxy retrain (no start-up or evaluation).",
        "",
        *_table(spec, rows),
    ]
    cells = _cells_table(rows, out)
    if cells:
        text += ["", "## Derived cells (`op←input`)", "", *cells]
    atomic_write_text(out / "results.md", "\n".join(text) + "\n")


# --- plots --------------------------------------------------------------------------------------------


def _figure(panels: int, width: float = 4.2, height: float = 3.2) -> tuple[Figure, list[Any]]:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width * panels, height))
    return fig, [fig.add_subplot(1, panels, i + 1) for i in range(panels)]


def _color(index: int) -> Any:
    from matplotlib import colormaps

    return colormaps["tab10"](index % 10)


def plot_tau(rows: list[dict[str, Any]], out: Path, path: Path) -> bool:
    """tau against epoch per setting, from the schedule itself (as the runner computes it)."""
    from nas.config import SearchRunConfig, load_config
    from nas.schedules import tau_at

    fig, axes = _figure(2)
    drawn = False
    for i, (label, group) in enumerate(_settings(rows).items()):
        config = next(
            (out / "runs" / r["run"] / "config.yaml" for r in group if r["search"] != "missing"), None
        )
        if config is None or not config.is_file():
            continue
        cfg = load_config(SearchRunConfig, config)
        epochs = cfg.search.epochs
        per = 20 if cfg.tau.per == "step" else 1  # drawing resolution within an epoch for per-step schedules
        xs = [e + s / per for e in range(epochs) for s in range(per)] + [epochs]
        ys = [tau_at(cfg.tau, e, epochs, s, per) for e in range(epochs) for s in range(per)]
        ys.append(ys[-1])
        for ax in axes:
            ax.step(xs, ys, where="post", label=label, color=_color(i), linewidth=1.5)
        drawn = True
    for ax, scale in zip(axes, ("linear", "log")):
        ax.set_yscale(scale)
        ax.set_xlabel("epoch")
        ax.set_ylabel("tau")
        ax.set_title(f"temperature schedule ({scale} scale)", fontsize=10)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    return _save(fig, path) if drawn else False


def _curves(group: list[dict[str, Any]], key: str) -> tuple[list[int], list[float], list[float], list[float]]:
    """Per epoch: mean, min and max of `key` over the runs of a setting."""
    by_epoch: dict[int, list[float]] = {}
    for row in group:
        for m in row["_curve"]:
            if m.get(key) is not None:
                by_epoch.setdefault(m["epoch"], []).append(m[key])
    epochs = sorted(by_epoch)
    vals = [by_epoch[e] for e in epochs]
    return epochs, [statistics.mean(v) for v in vals], [min(v) for v in vals], [max(v) for v in vals]


def plot_entropy(rows: list[dict[str, Any]], path: Path) -> bool:
    """Entropy of each cell type and parameter-free ops in the derived cell against epoch (min-max band)."""
    keys = sorted(
        {k for r in rows for m in r["_curve"] for k in m if k.startswith(("entropy_", "param_free_"))}
    )
    if not keys:
        return False
    fig, axes = _figure(len(keys))
    for i, (label, group) in enumerate(_settings(rows).items()):
        for ax, key in zip(axes, keys):
            epochs, mean, lo, hi = _curves(group, key)
            ax.plot(epochs, mean, marker="o", markersize=3, label=label, color=_color(i))
            ax.fill_between(epochs, lo, hi, color=_color(i), alpha=0.15)
    for ax, key in zip(axes, keys):
        kind, cell = key.rsplit("_", 1)
        what = "mean edge entropy (nats)" if kind == "entropy" else "parameter-free ops"
        ax.set_title(f"{what}: {cell}", fontsize=10)
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    return _save(fig, path)


def plot_accuracy(rows: list[dict[str, Any]], path: Path) -> bool:
    """Proxy test accuracy (where retrained) and supernet val accuracy per setting: mean +- std, seeds as
    dots."""
    titles = {"proxy_test_acc": "proxy retrain test acc (%)", "val_acc": "supernet val acc (%)"}
    panels = [(k, t) for k, t in titles.items() if any(r.get(k) is not None for r in rows)]
    if not panels:
        return False
    fig, axes = _figure(len(panels))
    groups = _settings(rows)
    for ax, (key, title) in zip(axes, panels):
        for i, group in enumerate(groups.values()):
            vals = [r[key] for r in group if r.get(key) is not None]
            if not vals:
                continue
            std = statistics.stdev(vals) if len(vals) > 1 else 0.0
            ax.errorbar(
                [i], [statistics.mean(vals)], yerr=[std], fmt="s", capsize=6, color=_color(i), markersize=7
            )
            ax.scatter([i + 0.12] * len(vals), vals, color=_color(i), alpha=0.6, s=14)
        ax.set_xticks(range(len(groups)), list(groups), rotation=20, fontsize=8)
        ax.set_xlim(-0.6, len(groups) - 0.4)
        ax.set_title(f"{title}, mean ± std over seeds", fontsize=10)
        ax.grid(alpha=0.3, axis="y")
    return _save(fig, path)


def _save(fig: Figure, path: Path) -> bool:
    fig.tight_layout()
    atomic_write(path, lambda f: fig.savefig(f, format="png", dpi=110))
    return True


def write_hparams(spec: AblationConfig, rows: list[dict[str, Any]], out: Path) -> None:
    """TensorBoard hparams (tb/<run id>): the grid values and the final metrics of each finished search."""
    from torch.utils.tensorboard import SummaryWriter

    from nas.ablate import flatten

    shutil.rmtree(out / "tb", ignore_errors=True)  # rebuilt from scratch: no stale or duplicate entries
    writer = SummaryWriter(str(out / "tb"))
    diagnostics = {k for r in rows for k in r if k.startswith(("param_free_", "entropy_"))}
    metric_keys = ["val_acc", "proxy_test_acc", *sorted(diagnostics)]
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
    write_csv(rows, out / "results.csv")
    write_markdown(spec, rows, out)
    written = [out / "results.csv", out / "results.md"]
    plots = {
        "tau.png": lambda p: plot_tau(rows, out, p),
        "entropy.png": lambda p: plot_entropy(rows, p),
        "accuracy.png": lambda p: plot_accuracy(rows, p),
    }
    written += [out / name for name, draw in plots.items() if draw(out / name)]
    write_hparams(spec, rows, out)
    return written
