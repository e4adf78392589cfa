"""What each temperature schedule of an ablation feeds its estimator: `nas gradcheck`'s measurements at the
temperatures the schedule visits, averaged over the architecture steps (all of them, and the first
architecture epoch alone, where the NB201 recipe's derived cell is decided).

    python experiments/tau_ablation/visited.py ABLATION.yaml SAMPLER=GRADCHECK.json ... [-o OUT.md]

Each GRADCHECK.json is a `nas gradcheck` output (its `results` rows: sampler, tau, cosine, rel_variance,
...); its sampler's row at a visited tau is interpolated linearly in log tau between the measured
temperatures (clamped at the ends). Columns:

- cos(mean, exact): the cosine between the estimator's mean and the exact gradient of the expected loss;
- noise/signal: rel_variance / norm_ratio^2, the variance of one sample over the squared norm of the mean
  estimate. Adam divides the update by the gradient's running scale, so a factor that scales
  mean and noise alike (GDAS' 1/tau) cancels, and this ratio, not the mean-squared error, is what sets how
  far alpha moves in the mean's direction;
- rel MSE: mean squared error over |g*|^2 (what a plain SGD step would see).

`learned` has no formula to replay: it is skipped (its visited taus are in each run's metrics.jsonl).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

from nas.ablate.spec import load_ablation, plan, searches
from nas.config import SearchRunConfig, load_config
from nas.sampling.schedules import tau_at

METRICS = ("cosine", "noise_signal", "rel_mse")


def rows_of(path: str, sampler: str) -> list[dict]:
    rows = [r for r in json.loads(Path(path).read_text())["results"] if r["sampler"] == sampler]
    if not rows:
        sys.exit(f"visited: {path} has no rows for {sampler}")
    for r in rows:
        r["noise_signal"] = r["rel_variance"] / max(r["norm_ratio"] ** 2, 1e-30)
    return sorted(rows, key=lambda r: r["tau"])


def interpolate(rows: list[dict], tau: float, key: str) -> float:
    """rows' `key` at `tau`, linear in log tau between the measured temperatures, clamped at the ends."""
    if tau <= rows[0]["tau"]:
        return rows[0][key]
    for lo, hi in zip(rows, rows[1:]):
        if tau <= hi["tau"]:
            w = (math.log(tau) - math.log(lo["tau"])) / (math.log(hi["tau"]) - math.log(lo["tau"]))
            return (1 - w) * lo[key] + w * hi[key]
    return rows[-1][key]


def visited(cfg: SearchRunConfig, steps_per_epoch: int) -> list[list[float]]:
    """The temperature of every architecture step, per architecture epoch."""
    start, end = cfg.search.arch_start_epoch, cfg.search.epochs
    return [
        [tau_at(cfg.tau, e, end, s, steps_per_epoch) for s in range(steps_per_epoch)]
        for e in range(start, end)
    ]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("ablation")
    p.add_argument("gradchecks", nargs="+", help="SAMPLER=GRADCHECK.json")
    p.add_argument("--steps-per-epoch", type=int, default=None, help="null: from the search's data split")
    p.add_argument("-o", "--out")
    args = p.parse_args(argv)
    measured = dict(g.split("=", 1) for g in args.gradchecks)
    spec = load_ablation(args.ablation)
    lines = ["| tau.schedule | sampler | taus visited (first arch epoch) | " + " | ".join(
        f"{m} (all / first epoch)" for m in METRICS) + " |", "|" + " --- |" * (3 + len(METRICS))]  # fmt: skip
    seen = set()
    for run in searches(plan(spec)):
        cfg = load_config(SearchRunConfig, spec.base, run.search_args)
        key = (cfg.tau.schedule, cfg.sampler.name)
        if key in seen or cfg.tau.schedule == "learned" or cfg.sampler.name not in measured:
            continue
        seen.add(key)
        per = args.steps_per_epoch or math.ceil(
            cfg.data.subset * cfg.data.train_portion / cfg.data.batch_size
        )
        taus = visited(cfg, per)
        rows = rows_of(measured[cfg.sampler.name], cfg.sampler.name)
        flat = [t for epoch in taus for t in epoch]
        cells = []
        for m in METRICS:
            everything = sum(interpolate(rows, t, m) for t in flat) / len(flat)
            first = sum(interpolate(rows, t, m) for t in taus[0]) / len(taus[0])
            cells.append(f"{everything:.3g} / {first:.3g}")
        lines.append(
            f"| {key[0]} | {key[1]} | {min(taus[0]):.3g}-{max(taus[0]):.3g} | " + " | ".join(cells) + " |"
        )
    text = "\n".join(lines) + "\n"
    if args.out:
        Path(args.out).write_text(text)
    print(text, end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
