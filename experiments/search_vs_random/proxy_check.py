"""Does a proxy retrain tell good cells from bad? The check before any search time is spent (issue 24).

Reads the `results.csv` of one or more ablations (`nas ablate --aggregate OUT`) and prints, per proxy, a
markdown table of every published (zoo) cell's proxy test accuracy, its percentile among the random cells
retrained by the same proxy and whether it lies above their median, with each cell's parameter-free edges in
the normal cell, and the one-sided Mann-Whitney test that the published cells beat the random ones. With two proxies, also the Kendall tau between their accuracies on
the cells both retrained. `-o OUT.csv` writes one row per cell and proxy.

    python experiments/search_vs_random/proxy_check.py NAME=runs/ablations/X/results.csv [NAME=...] [-o OUT.csv]
"""

from __future__ import annotations

import argparse
import csv
import statistics
from itertools import combinations

import search_spaces  # noqa: F401  (registers the spaces)
from nas.arch.diagnostics import parameter_free_ops
from nas.arch.space import SPACES, resolve_genotype
from nas.core.stats import kendall_tau, mann_whitney_greater, percentile


def load(path: str) -> dict[str, dict]:
    """Finished baseline rows of a results.csv by run id, with `acc` (float) and `free` (normal cell)."""
    darts = SPACES.get("darts")
    rows = {}
    with open(path) as f:
        for row in csv.DictReader(f):
            if row["kind"] != "baseline" or not row["proxy_test_acc"]:
                continue
            genotype = resolve_genotype(row["genotype"])
            row["acc"] = float(row["proxy_test_acc"])
            row["free"] = parameter_free_ops(genotype, "normal", darts.parameter_free)
            rows[row["run"]] = row
    return rows


def table(name: str, rows: dict[str, dict]) -> list[str]:
    randoms = [r["acc"] for k, r in rows.items() if k.startswith("random-")]
    median = statistics.median(randoms) if randoms else float("nan")
    out = [f"### {name}: {len(randoms)} random cells, median {median:.2f} %, range "
           f"{min(randoms, default=float('nan')):.2f}-{max(randoms, default=float('nan')):.2f} %", "",
           "| cell | proxy test acc (%) | percentile among random | above random median | param-free normal edges |",
           "| --- | ---: | ---: | --- | ---: |"]  # fmt: skip
    zoo = sorted((k for k in rows if k.startswith("zoo-")), key=lambda k: -rows[k]["acc"])
    for key in zoo:
        acc = rows[key]["acc"]
        out.append(f"| {key[4:]} | {acc:.2f} | {percentile(acc, randoms):.0f} | {'yes' if acc > median else 'no'} "
                   f"| {rows[key]['free']} |")  # fmt: skip
    for key in sorted((k for k in rows if k.startswith("random-")), key=lambda k: -rows[k]["acc"]):
        out.append(f"| {key} | {rows[key]['acc']:.2f} | | | {rows[key]['free']} |")
    searched = sorted((k for k in rows if k.startswith("seed-")), key=lambda k: -rows[k]["acc"])
    for key in searched:  # the searches' own cells, where the folder holds them (proxy_length.py)
        acc = rows[key]["acc"]
        out.append(f"| searched {key} | {acc:.2f} | {percentile(acc, randoms):.0f} | "
                   f"{'yes' if acc > median else 'no'} | {rows[key]['free']} |")  # fmt: skip
    out.append("")
    for label, keys in (("published", zoo), ("searched", searched)):
        if not keys:
            continue
        above = sum(rows[k]["acc"] > median for k in keys)
        out.append(f"{label} cells above the random median: {above} of {len(keys)}")
        if randoms:
            u, p, method = mann_whitney_greater([rows[k]["acc"] for k in keys], randoms)
            out.append(f"{label} > random, one-sided Mann-Whitney: U = {u:g} of {len(keys) * len(randoms)}, "
                       f"p = {p:.2g} ({method})")  # fmt: skip
    free = [r["free"] for r in rows.values()]
    if len(set(free)) > 1:
        out.append(f"Kendall tau, proxy accuracy vs parameter-free normal edges (all {len(rows)} cells): "
                   f"{kendall_tau([r['acc'] for r in rows.values()], free):.2f}")  # fmt: skip
    return out


def write_rows(path: str, loaded: dict[str, dict[str, dict]]) -> None:
    """One row per cell and proxy: the cell, whether it is published or random, its proxy test accuracy, its
    percentile among the same proxy's random cells, its parameter-free normal edges, parameters and genotype."""
    rows = []
    for name, cells in loaded.items():
        randoms = [r["acc"] for k, r in cells.items() if k.startswith("random-")]
        for key, r in sorted(cells.items(), key=lambda kv: -kv[1]["acc"]):
            rows.append({"cell": key.removeprefix("zoo-"), "kind": "published" if key.startswith("zoo-") else "random",
                         "proxy": name, "proxy_test_acc": f"{r['acc']:.2f}",
                         "percentile_among_random": f"{percentile(r['acc'], randoms):.1f}",
                         "param_free_normal": r["free"], "params": r["params"], "genotype": r["genotype"]})  # fmt: skip
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", nargs="+", metavar="NAME=CSV")
    parser.add_argument("-o", "--out", help="one row per cell and proxy")
    args = parser.parse_args()
    proxies = dict(item.split("=", 1) for item in args.results)
    loaded = {name: load(path) for name, path in proxies.items()}
    if args.out:
        write_rows(args.out, loaded)
    for name, rows in loaded.items():
        print("\n".join(table(name, rows)), end="\n\n")
    for (a, ra), (b, rb) in combinations(loaded.items(), 2):
        common = sorted(set(ra) & set(rb))
        if len(common) > 1:
            tau = kendall_tau([ra[k]["acc"] for k in common], [rb[k]["acc"] for k in common])
            print(f"Kendall tau between {a} and {b} over their {len(common)} common cells: {tau:.2f}")


if __name__ == "__main__":
    main()
