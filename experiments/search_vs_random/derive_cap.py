"""What the derive cap (`search.derive_cap`, `nas derive --derive-cap N`) does to finished NB201 searches, judged
by NAS-Bench-201's ground truth: every search's last checkpoint re-derived under each cap, nothing rewritten.

    python experiments/search_vs_random/derive_cap.py RUNS_DIR [--caps 1 2 3] [--with EARLIER.csv] [--by KEY] [-o OUT.csv]

RUNS_DIR holds search run directories (e.g. an ablation's `runs/`); `--with` adds the rows of an earlier
output (searches whose directories are elsewhere or gone; a run found in RUNS_DIR replaces its earlier rows); `--by KEY`
(a config key, e.g. search.weight_sample) splits each sampler's rows by that key's value, its own column. Writes one row per search and cap (the
sampler first, then seed, cap, the count of capped ops before the cap, the cell and its ground truth) and prints
a markdown table per sampler: ground truth per seed without a cap and under each cap, and, since a cap alone
moves the odds (cells with few parameter-free ops are better on average), where the searched cells fall among
the cells derive can produce under the same constraints (`search.derive_exclude` and the cap): each cell's
percentile in that constrained space, and a one-sided Mann-Whitney test against `--random` uniform draws
from it. Also one line per cap with that space's size, mean and median.
"""

from __future__ import annotations

import argparse
import csv
import itertools
import random
import statistics
import sys
from pathlib import Path

import torch

import search_spaces  # noqa: F401  (registers the spaces)
from nas.arch.diagnostics import genotype_string
from nas.arch.ground_truth import ground_truth_of
from nas.arch.space import SPACES
from nas.config import SearchRunConfig, flat, load_config, to_dict
from nas.core.rundir import ALPHAS_FILE, CONFIG_FILE
from nas.core.stats import mann_whitney_greater, percentile
from nas.search.load import load_architecture
from nas.search.provenance import derive_genotype


def constrained_space(
    space, truth, dataset: str, exclude: list[str], capped: frozenset[str], cap: int | None
):
    """The ground truth of every cell of a space whose cells keep every edge (NB201) that derive can produce
    without the `exclude`d ops and with at most `cap` edges of `capped` (None: no cap)."""
    cell = space.cell_types[0]
    edges = len(space.cell_rule(cell, 6).groups)  # NB201: 6 edges, each its own group
    allowed = [k for k, op in enumerate(space.primitives) if op not in exclude]
    out = []
    for ops in itertools.product(allowed, repeat=edges):
        if cap is not None and sum(space.primitives[k] in capped for k in ops) > cap:
            continue
        weights = torch.zeros(edges, len(space.primitives))
        weights[range(edges), list(ops)] = 1.0
        out.append(truth.accuracy(space.from_one_hot({cell: weights}))[dataset])
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("runs_dir")
    p.add_argument("--caps", type=int, nargs="+", default=[1, 2, 3])
    p.add_argument("--dataset", default="cifar10")
    p.add_argument("--random", type=int, default=30, help="random cells per constrained space (default 30)")
    p.add_argument("--seed", type=int, default=0, help="draws the random cells (default 0)")
    p.add_argument(
        "--with",
        dest="earlier",
        action="append",
        default=[],
        metavar="CSV",
        help="rows of an earlier output of this script, for runs not in RUNS_DIR (repeatable)",
    )
    p.add_argument(
        "--by", metavar="KEY", help="a config key whose value splits each sampler's rows (a column)"
    )
    p.add_argument("-o", "--out")
    args = p.parse_args()
    rows = []
    for run in sorted(d for d in Path(args.runs_dir).iterdir() if (d / CONFIG_FILE).is_file()):
        cfg = load_config(SearchRunConfig, run / CONFIG_FILE)
        # a search writes its alphas file last, once finished (or stopped by its guard)
        if not (run / ALPHAS_FILE).is_file():
            print(f"skipped {run.name}: not finished", file=sys.stderr)
            continue
        arch = load_architecture(run, cfg)
        truth = ground_truth_of(arch.space, cfg.ground_truth)
        by = {args.by: flat(to_dict(cfg)).get(args.by, "")} if args.by else {}
        for cap in [None, *args.caps]:
            cfg.search.derive_cap.max_ops = cap
            genotype = derive_genotype(cfg, arch.space, arch.logits, arch.betas, arch.epoch, arch.tau)
            record = truth.record(genotype)
            before = genotype.provenance.get("derive_cap", {}).get("before", "")
            rows.append({"sampler": cfg.sampler.name, **by, "seed": cfg.seed, "run": run.name, "path": str(run),
                         "cap": "off" if cap is None else cap, "capped_before": before,
                         "genotype": genotype_string(genotype), **{k: f"{v:.4f}" for k, v in record.items()}})  # fmt: skip
    live = {r["run"] for r in rows}
    if not rows:
        sys.exit(f"{args.runs_dir}: no finished search to read the space's derive settings from")
    first_live = Path(rows[0]["path"])
    for path in args.earlier:
        with Path(path).open() as f:
            rows += [
                r
                for r in csv.DictReader(f)
                if r["run"] not in live and r["cap"] in {"off", *map(str, args.caps)}
            ]

    def group(r: dict) -> str:
        return r["sampler"] if not args.by else f"{r['sampler']} {args.by}={r.get(args.by, '')}"

    rows.sort(key=lambda r: (group(r), int(r["seed"]), r["cap"] != "off", str(r["cap"])))
    if args.out:
        with Path(args.out).open("w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
    acc = f"gt_{args.dataset}"
    caps = ["off", *args.caps]
    cfg0 = load_config(SearchRunConfig, first_live / CONFIG_FILE)
    space = SPACES.get(cfg0.space.name)
    truth = ground_truth_of(space, cfg0.ground_truth)
    capped = frozenset(cfg0.search.derive_cap.ops or space.parameter_free)
    population = {c: constrained_space(space, truth, args.dataset, cfg0.search.derive_exclude, capped,
                                       None if c == "off" else c) for c in caps}  # fmt: skip
    # each cap its own stream, so a cap's random cells (and its p) do not depend on which other caps are asked for
    streams = {c: random.Random(f"{args.seed}-{c}") for c in population}
    randoms = {c: [streams[c].choice(v) for _ in range(args.random)] for c, v in population.items()}
    print(
        f"cells derive can produce (derive_exclude {cfg0.search.derive_exclude}, capped ops {sorted(capped)}):"
    )
    for c, values in population.items():
        print(f"- cap {c}: {len(values)} cells, {args.dataset} mean {statistics.mean(values):.2f}, "
              f"median {statistics.median(values):.2f}")  # fmt: skip
    print()
    print("| sampler | cap | seeds | ground truth (%) per seed | mean | percentile among the cells of the same "
          f"constraints | one-sided Mann-Whitney p (> {args.random} random such cells) |")  # fmt: skip
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for sampler in dict.fromkeys(group(r) for r in rows):
        for cap in caps:
            mine = sorted(
                (r for r in rows if group(r) == sampler and str(r["cap"]) == str(cap)),
                key=lambda r: int(r["seed"]),
            )
            values = [float(r[acc]) for r in mine]
            pcts = [percentile(v, population[cap]) for v in values]
            _, p_value, method = mann_whitney_greater(values, randoms[cap])
            print(f"| {sampler} | {cap} | {', '.join(str(r['seed']) for r in mine)} | "
                  f"{', '.join(f'{v:.2f}' for v in values)} | {statistics.mean(values):.2f} | "
                  f"{', '.join(f'{q:.0f}' for q in pcts)} | {p_value:.3g} ({method}) |")  # fmt: skip


if __name__ == "__main__":
    main()
