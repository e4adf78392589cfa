"""Every searched cell of an NB201 ablation judged by NAS-Bench-201's ground truth, per sampler, against
uniform random cells of the space.

    python experiments/search_vs_random/ground_truth_table.py RESULTS.csv [RESULTS.csv ...] \
        -o OUT.csv [--random N] [--seed S] [--dataset cifar10]

Reads `nas ablate` results files (one row per run, a `genotype` column), adds the derived cell's ground truth
(`gt_<dataset>`, `gt_<dataset>_pct`) where a row lacks it, and writes OUT.csv with one row per search, the
sampler in the first column. Prints a markdown table per sampler: each seed's accuracy and percentile in the
space, mean +- sd, and a one-sided Mann-Whitney test (exact) that the sampler's cells beat the random cells:
the results files' own random baseline rows (setting `random`, judged by the same ground truth) where they
have them, else `--random` cells drawn uniformly from all 15,625 cells with `--seed`.
"""

from __future__ import annotations

import argparse
import csv
import random
import statistics
from pathlib import Path

from nas.arch.genotype import parse_genotype_text
from nas.arch.ground_truth import ground_truth_of
from nas.arch.space import SPACES
from nas.core.stats import mann_whitney_greater


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("results", nargs="+")
    p.add_argument("-o", "--out", required=True)
    p.add_argument("--random", type=int, default=30)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--dataset", default="cifar10")
    args = p.parse_args()
    gt = ground_truth_of(SPACES.get("nb201"))
    acc, pct = f"gt_{args.dataset}", f"gt_{args.dataset}_pct"
    rows, baseline = [], []
    for path in args.results:
        for row in csv.DictReader(Path(path).open()):
            if row.get("kind", "search") != "search":
                if row.get("setting") == "random":
                    baseline.append(gt.accuracy(parse_genotype_text(row["genotype"]))[args.dataset])
                continue
            if not row.get(acc):
                row.update(
                    {k: f"{v:.4f}" for k, v in gt.record(parse_genotype_text(row["genotype"])).items()}
                )
            rows.append({"sampler": row["sampler.name"], "source": path, **row})
    keys = list(dict.fromkeys(k for row in rows for k in row))
    with Path(args.out).open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=keys)
        writer.writeheader()
        writer.writerows(rows)
    space = sorted(gt.values(args.dataset))
    draw = random.Random(args.seed)
    randoms = baseline or [space[draw.randrange(len(space))] for _ in range(args.random)]
    where = "the results' random baseline" if baseline else f"uniform draws, seed {args.seed}"
    print(
        f"| sampler | seeds | {args.dataset} accuracy of each cell (%) | percentile in the space | mean +- sd | "
        f"one-sided Mann-Whitney p (> {len(randoms)} random cells) |"
    )
    print("| --- | --- | --- | --- | --- | --- |")
    for sampler in dict.fromkeys(r["sampler"] for r in rows):
        mine = [r for r in rows if r["sampler"] == sampler]
        values = [float(r[acc]) for r in mine]
        sd = statistics.stdev(values) if len(values) > 1 else float("nan")
        _, p_value, method = mann_whitney_greater(values, randoms)
        print(
            f"| {sampler} | {', '.join(r['seed'] for r in mine)} | {', '.join(f'{v:.2f}' for v in values)} | "
            f"{', '.join(f'{float(r[pct]):.0f}' for r in mine)} | {statistics.mean(values):.2f} +- {sd:.2f} | "
            f"{p_value:.3g} ({method}) |"
        )
    print(
        f"| random cells | {len(randoms)} ({where}) | median {statistics.median(randoms):.2f} | - | "
        f"{statistics.mean(randoms):.2f} +- {statistics.stdev(randoms):.2f} | - |"
    )


if __name__ == "__main__":
    main()
