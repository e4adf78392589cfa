"""The figures of an ablation report: tau schedules, entropy curves, accuracies per setting, searched
against baseline cells (strip plot), supernet-vs-retrained ranking (scatter), accuracy against FLOPs with the
Pareto fronts (resource-aware search)."""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nas.core.atomic import atomic_write
from nas.core.rundir import CONFIG_FILE

if TYPE_CHECKING:
    from matplotlib.figure import Figure


def by_setting(rows: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """Rows grouped by their setting label, in first-seen order."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault(row["setting"], []).append(row)
    return groups


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
    from nas.sampling.schedules import tau_at

    fig, axes = _figure(2)
    drawn = False
    for i, (label, group) in enumerate(by_setting(rows).items()):
        config = next(
            (out / "runs" / r["run"] / CONFIG_FILE for r in group if r["search"] != "missing"), None
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
    for i, (label, group) in enumerate(by_setting(rows).items()):
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


def plot_truth_curve(rows: list[dict[str, Any]], key: str, label: str, path: Path) -> bool:
    """The ground truth of the cell each setting derived, per epoch (mean and min-max band over seeds)."""
    if not any(m.get(key) is not None for r in rows for m in r["_curve"]):
        return False
    fig, (ax,) = _figure(1, width=6.0, height=3.6)
    for i, (setting, group) in enumerate(by_setting(rows).items()):
        epochs, mean, lo, hi = _curves(group, key)
        ax.plot(epochs, mean, marker="o", markersize=2, label=setting, color=_color(i))
        ax.fill_between(epochs, lo, hi, color=_color(i), alpha=0.12)
    ax.set_xlabel("epoch")
    ax.set_ylabel(label)
    ax.set_title("the derived cell, judged by the ground truth, per epoch", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    return _save(fig, path)


def plot_accuracy(rows: list[dict[str, Any]], path: Path, score: str = "proxy retrain test acc (%)") -> bool:
    """The score of each cell (proxy test accuracy, or its ground truth; `score` names it) and the supernet's
    val accuracy per setting: mean +- std, seeds as dots."""
    titles = {"score": score, "val_acc": "supernet val acc (%)"}
    panels = [(k, t) for k, t in titles.items() if any(r.get(k) is not None for r in rows)]
    if not panels:
        return False
    fig, axes = _figure(len(panels))
    groups = by_setting(rows)
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


def plot_strip(rows: list[dict[str, Any]], path: Path, score: str = "proxy test accuracy (%)") -> bool:
    """The score of every judged cell (`score` names it), one dot each: random cells grey, each setting's
    searched cells in its colour, other baselines (zoo, files) as labelled black diamonds."""
    import numpy as np

    done = [r for r in rows if r.get("score") is not None]
    if not done:
        return False
    random = [r["score"] for r in done if r["kind"] == "baseline" and r["setting"] == "random"]
    settings = by_setting([r for r in done if r["kind"] == "search"])
    others = [r for r in done if r["kind"] == "baseline" and r["setting"] != "random"]
    columns = (["random"] if random else []) + list(settings) + (["baselines"] if others else [])
    fig, (ax,) = _figure(1, width=max(4.5, 1.3 * len(columns) + 1.5), height=3.8)
    jitter = np.random.default_rng(0)  # fixed: the picture does not change between aggregations
    x = 0
    if random:
        ax.scatter(x + jitter.uniform(-0.15, 0.15, len(random)), random, color="0.55", s=22, label="random")
        ax.hlines(statistics.median(random), x - 0.3, x + 0.3, color="0.3", linewidth=1)
        x += 1
    for i, (label, group) in enumerate(settings.items()):
        values = [r["score"] for r in group]
        ax.scatter(x + jitter.uniform(-0.15, 0.15, len(values)), values, color=_color(i), s=30, label=label)
        ax.hlines(statistics.median(values), x - 0.3, x + 0.3, color=_color(i), linewidth=1)
        x += 1
    every = [r["score"] for r in done]
    gap, label_y = 0.045 * (max(every) - min(every) or 1.0), -float("inf")
    for r in sorted(others, key=lambda r: r["score"]):  # labels pushed apart where values are close
        label_y = max(r["score"], label_y + gap)
        ax.scatter([x], [r["score"]], marker="D", color="black", s=26)
        ax.annotate(r["setting"], (x, r["score"]), xytext=(x + 0.12, label_y), fontsize=7, va="center")
    ax.set_xlim(-0.5, x + (1.6 if others else 0.5))  # room for the baselines' labels
    ax.set_xticks(range(len(columns)), columns, rotation=20, fontsize=8)
    ax.set_ylabel(score)
    ax.set_title("searched vs random cells (one dot per cell, bar = median)", fontsize=10)
    ax.grid(alpha=0.3, axis="y")
    return _save(fig, path)


def plot_ranking(rows: list[dict[str, Any]], path: Path, score: str = "retrained accuracy (%)") -> bool:
    """Per setting: each random cell's accuracy inside the final supernets (x) against its score (y: its
    retrained accuracy or its ground truth), one colour per search run, Kendall tau in the legend."""
    retrained = {r["run"]: r["score"] for r in rows if r["kind"] == "baseline" and r.get("score") is not None}
    ranked = [r for r in rows if r["kind"] == "search" and r.get("_rank")]
    if not ranked or not retrained:
        return False
    settings = by_setting(ranked)
    fig, axes = _figure(len(settings))
    for ax, (label, group) in zip(axes, settings.items()):
        for j, row in enumerate(group):
            ids = [i for i in row["_rank"] if i.startswith("random-") and i in retrained]
            tau = row.get("kendall_tau")
            name = f"{row['run']} (τ={tau:.2f})" if tau is not None and tau == tau else row["run"]
            ax.scatter(
                [row["_rank"][i] for i in ids], [retrained[i] for i in ids], color=_color(j), s=16, label=name
            )
        ax.set_xlabel("accuracy inside the supernet (%)")
        ax.set_ylabel(score)
        ax.set_title(f"{label}: does the supernet rank random cells?", fontsize=9)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=6)
    return _save(fig, path)


def pareto_front(points: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """The (cost, accuracy) points no other point beats on both (cheaper or equal and more accurate), by
    increasing cost."""
    front: list[tuple[float, float]] = []
    for cost, acc in sorted(points, key=lambda p: (p[0], -p[1])):
        if not front or acc > front[-1][1]:
            front.append((cost, acc))
    return front


def plot_pareto(rows: list[dict[str, Any]], path: Path) -> bool:
    """Proxy test accuracy against the retrained network's FLOPs, one dot per cell (searched: a colour per
    setting, e.g. per cost weight lambda; random: grey), with the Pareto front of the searched cells and of
    the random cells as steps."""
    done = [r for r in rows if r.get("proxy_test_acc") is not None and r.get("flops")]
    if not done:
        return False
    fig, (ax,) = _figure(1, width=6.0, height=4.2)
    random = [
        (r["flops"] / 1e6, r["proxy_test_acc"])
        for r in done
        if r["kind"] == "baseline" and r["setting"] == "random"
    ]
    searched = [(r["flops"] / 1e6, r["proxy_test_acc"]) for r in done if r["kind"] == "search"]
    if random:
        ax.scatter(*zip(*random), color="0.6", s=18, label="random cells")
    for i, (label, group) in enumerate(by_setting([r for r in done if r["kind"] == "search"]).items()):
        ax.scatter([r["flops"] / 1e6 for r in group], [r["proxy_test_acc"] for r in group], color=_color(i), s=30,
                   label=label)  # fmt: skip
    for points, color, name in [(searched, "black", "searched"), (random, "0.45", "random")]:
        front = pareto_front(points)
        if len(front) > 0:
            xs, ys = zip(*front)
            ax.step(
                xs,
                ys,
                where="post",
                color=color,
                linewidth=1.2,
                linestyle="--",
                label=f"Pareto front, {name}",
            )
    ax.set_xlabel("retrained network MFLOPs (batch 1)")
    ax.set_ylabel("proxy test accuracy (%)")
    ax.set_title("accuracy against cost", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    return _save(fig, path)


def _save(fig: Figure, path: Path) -> bool:
    fig.tight_layout()
    atomic_write(path, lambda f: fig.savefig(f, format="png", dpi=110))
    return True
