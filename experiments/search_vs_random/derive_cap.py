"""What the derive cap (`search.derive_cap`, `nas derive --derive-cap N`) does to finished NB201 searches, judged
by NAS-Bench-201's ground truth: every search's last checkpoint re-derived under each cap, nothing rewritten.

    python experiments/search_vs_random/derive_cap.py RUNS_DIR [--caps 1 2 3] [-o OUT.csv]

RUNS_DIR holds search run directories (e.g. an ablation's `runs/`). Writes one row per search and cap (the
sampler first, then seed, cap, the count of capped ops before the cap, the cell and its ground truth) and prints
a markdown table per sampler: ground truth per seed without a cap and under each cap.
"""

from __future__ import annotations

import argparse
import csv
import statistics
from pathlib import Path

import search_spaces  # noqa: F401  (registers the spaces)
from nas.config import SearchRunConfig, load_config
from nas.diagnostics import genotype_string
from nas.ground_truth import ground_truth_of
from nas.rundir import CONFIG_FILE
from nas.search.load import load_architecture
from nas.search.provenance import derive_genotype


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("runs_dir")
    p.add_argument("--caps", type=int, nargs="+", default=[1, 2, 3])
    p.add_argument("--dataset", default="cifar10")
    p.add_argument("-o", "--out")
    args = p.parse_args()
    rows = []
    for run in sorted(d for d in Path(args.runs_dir).iterdir() if (d / CONFIG_FILE).is_file()):
        cfg = load_config(SearchRunConfig, run / CONFIG_FILE)
        arch = load_architecture(run, cfg)
        truth = ground_truth_of(arch.space, cfg.ground_truth)
        for cap in [None, *args.caps]:
            cfg.search.derive_cap.max_ops = cap
            genotype = derive_genotype(cfg, arch.space, arch.logits, arch.betas, arch.epoch, arch.tau)
            record = truth.record(genotype)
            before = genotype.provenance.get("derive_cap", {}).get("before", "")
            rows.append({"sampler": cfg.sampler.name, "seed": cfg.seed, "run": run.name,
                         "cap": "off" if cap is None else cap, "capped_before": before,
                         "genotype": genotype_string(genotype), **{k: f"{v:.4f}" for k, v in record.items()}})  # fmt: skip
    if args.out:
        with Path(args.out).open("w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
    acc = f"gt_{args.dataset}"
    caps = ["off", *args.caps]
    print(f"| sampler | seeds | {' | '.join(f'cap {c}: {args.dataset} % per seed (mean)' for c in caps)} |")
    print("| --- | --- |" + " --- |" * len(caps))
    for sampler in dict.fromkeys(r["sampler"] for r in rows):
        mine = [r for r in rows if r["sampler"] == sampler]
        seeds = sorted({r["seed"] for r in mine})
        cells = []
        for cap in caps:
            values = [float(r[acc]) for s in seeds for r in mine if r["seed"] == s and r["cap"] == cap]
            cells.append(f"{', '.join(f'{v:.2f}' for v in values)} ({statistics.mean(values):.2f})")
        print(f"| {sampler} | {', '.join(map(str, seeds))} | {' | '.join(cells)} |")


if __name__ == "__main__":
    main()
