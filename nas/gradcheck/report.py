"""`nas gradcheck` outputs: a table (gradcheck.md), JSON (gradcheck.json), one plot per estimator (bias and
variance against tau, log scales) plus a summary plot, and the same numbers as TensorBoard scalars."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from nas.core.atomic import atomic_write_text

COLUMNS = [  # key, header, format
    ("cosine", "cos(mean, exact)", "{:.3f}"),
    ("cosine_unbiased", "cos if unbiased", "{:.3f}"),
    ("rel_bias2", "bias² / ‖g*‖²", "{:.3g}"),
    ("rel_variance", "var / ‖g*‖²", "{:.3g}"),
    ("rel_mse", "MSE / ‖g*‖²", "{:.3g}"),
    ("norm_ratio", "‖mean‖ / ‖g*‖", "{:.3g}"),
    ("sign_agreement", "sign (mean)", "{:.2f}"),
    ("sign_agreement_sample", "sign (1 sample)", "{:.2f}"),
]


def table(report: dict[str, Any]) -> str:
    """The results as a Markdown table, one row per sampler and tau."""
    head = ["sampler", "tau", *(h for _, h, _ in COLUMNS)]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join(" --- " for _ in head) + "|"]
    for row in report["results"]:
        cells = [row["sampler"], f"{row['tau']:g}", *(fmt.format(row[k]) for k, _, fmt in COLUMNS)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def markdown(report: dict[str, Any]) -> str:
    s = report["subject"]
    return "\n".join(
        [
            f"# Gradient check: {s['space']}, {s['architectures']:,} architectures ({s['ops']}^{s['edges']})",
            "",
            f"Supernet: {s['source']}; alpha: {s['alpha']}; fixed batch of {s['batch_size']}; "
            f"{report['config']['samples']} estimates per sampler and tau (seed {report['config']['seed']}).",
            f"Loss over the architectures: min {s['loss_min']:.4f}, mean {s['loss_mean']:.4f}, "
            f"max {s['loss_max']:.4f}; E[L] under softmax(alpha): {s['expected_loss']:.4f}.",
            "",
            "Exact gradient g* = d/d alpha E_{z ~ Cat(probs(alpha))}[L(z)] by enumeration (`nas gradcheck`).",
            "",
            table(report),
            "",
        ]
    )


def plot(report: dict[str, Any], sampler: str, path: Path) -> Path:
    """Bias² and variance (relative to |g*|^2) and the cosine against tau for one sampler."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    rows = sorted((r for r in report["results"] if r["sampler"] == sampler), key=lambda r: r["tau"])
    taus = [r["tau"] for r in rows]
    fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3.4))
    floor = 1e-6  # bias² is estimated without the mean's noise and can come out <= 0
    left.plot(taus, [max(r["rel_bias2"], floor) for r in rows], "o-", label="bias² / ‖g*‖²")
    left.plot(taus, [max(r["rel_variance"], floor) for r in rows], "s-", label="variance / ‖g*‖² (1 sample)")
    left.plot(taus, [max(r["rel_mse"], floor) for r in rows], "^--", label="MSE / ‖g*‖² (1 sample)")
    left.set(xscale="log", yscale="log", xlabel="tau", title=f"{sampler}: bias and variance")
    left.legend(fontsize=7)
    right.plot(taus, [r["cosine"] for r in rows], "o-", label="cos(mean estimate, exact)")
    right.plot(taus, [r["cosine_unbiased"] for r in rows], ":", color="grey", label="unbiased, same variance")
    right.plot(taus, [r["sign_agreement"] for r in rows], "s-", label="sign agreement (mean)")
    right.set(xscale="log", ylim=(-1.05, 1.05), xlabel="tau", title=f"{sampler}: direction")
    right.axhline(0, color="k", lw=0.5)
    right.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def summary_plot(report: dict[str, Any], path: Path) -> Path:
    """Every sampler on one figure: cosine, relative bias² and relative variance against tau."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    for sampler in dict.fromkeys(r["sampler"] for r in report["results"]):
        rows = sorted((r for r in report["results"] if r["sampler"] == sampler), key=lambda r: r["tau"])
        taus = [r["tau"] for r in rows]
        axes[0].plot(taus, [r["cosine"] for r in rows], "o-", label=sampler)
        axes[1].plot(taus, [max(r["rel_bias2"], 1e-6) for r in rows], "o-", label=sampler)
        axes[2].plot(taus, [max(r["rel_variance"], 1e-6) for r in rows], "o-", label=sampler)
    for ax, title, log in zip(axes, ["cos(mean, exact)", "bias² / ‖g*‖²", "variance / ‖g*‖² (1 sample)"],
                              [False, True, True]):  # fmt: skip
        ax.set(xscale="log", yscale="log" if log else "linear", xlabel="tau", title=title)
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write(report: dict[str, Any], out: Path) -> list[Path]:
    """gradcheck.json, gradcheck.md, plots/<sampler>.png, plots/summary.png and TensorBoard scalars."""
    from nas.run.runlog import RunLogger

    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "gradcheck.json", json.dumps(report, indent=1) + "\n")
    atomic_write_text(out / "gradcheck.md", markdown(report))
    (out / "plots").mkdir(exist_ok=True)
    samplers = list(dict.fromkeys(r["sampler"] for r in report["results"]))
    paths = [out / "gradcheck.json", out / "gradcheck.md"]
    paths += [plot(report, s, out / "plots" / f"{s}.png") for s in samplers]
    paths.append(summary_plot(report, out / "plots" / "summary.png"))
    logger = RunLogger(out)  # TensorBoard: step = index of tau in the (sorted) grid
    taus = sorted({r["tau"] for r in report["results"]})
    for r in report["results"]:
        values = {k: r[k] for k, _, _ in COLUMNS} | {"tau": r["tau"]}
        logger.scalars(values, taus.index(r["tau"]), prefix=f"gradcheck/{r['sampler']}/")
    logger.text("gradcheck/table", table(report), 0)
    logger.close()
    return paths
