"""Does a longer proxy retrain lose the short one's preference for parameter-free edges? (issue 24)

Each argument names a proxy and a folder holding one `nas train` run directory per cell (e.g. an ablation's
`proxy/` folder, or the folder a longer retrain wrote into). Prints, for the cells every proxy retrained, a
markdown table: the normal cell's parameter-free edges, the parameters (of the first proxy's network), each
proxy's final test accuracy, rank and training minutes (summed epoch time, test evaluation not included), and
the longest proxy's test accuracy at every epoch of its cosine schedule (a curve, not a shorter proxy: the
learning rate is still high mid-way). Then, per proxy, the Kendall tau between final accuracy and
parameter-free edges, and between every pair of proxies; and per proxy the judge's check of
proxy_check.py: the published (`zoo-*`) and searched (`seed-*`) cells against the random ones (`random-*`),
percentile, median and one-sided Mann-Whitney. `-o OUT.csv` writes one row per cell, proxy and epoch.

    python experiments/search_vs_random/proxy_length.py e4=runs/ablations/X/proxy e12=runs/proxy_length/e12 \
        [-o OUT.csv]
"""

from __future__ import annotations

import argparse
import csv
import io
import re
import sys
from itertools import combinations
from pathlib import Path

from proxy_check import table  # this folder is on the path when the script runs

import search_spaces  # noqa: F401  (registers the spaces)
from nas.arch.diagnostics import parameter_free_ops
from nas.arch.space import SPACES, resolve_genotype
from nas.core.atomic import atomic_write_text, read_json_object
from nas.core.errors import UserError
from nas.core.stats import kendall_tau
from nas.run.runlog import read_metrics

REPEAT = re.compile(r"\.seed-\d+$")  # proxy_train.seeds: N's further retrains of a cell (nas.ablate.launch)


def finished_runs(folder: Path) -> dict[str, dict]:
    """Every finished run below `folder` by directory name: final accuracy, parameters, per-epoch test accuracy
    and the normal cell's parameter-free edges. Unfinished runs (no metrics.json) are left out."""
    runs = {}
    for run in sorted(p for p in folder.iterdir() if (p / "metrics.json").is_file()):
        result = read_json_object(run / "metrics.json", "metrics")
        genotype = resolve_genotype(str(run))
        space = SPACES.get(genotype.space)
        # a resumed run repeats epochs: keep the last record of each
        by_epoch = {r["epoch"]: r for r in read_metrics(run / "metrics.jsonl")}
        curve = [by_epoch[e]["test_acc"] for e in sorted(by_epoch)]
        minutes = sum(r["epoch_time"] for r in by_epoch.values()) / 60
        runs[run.name] = {"acc": float(result["test_acc"]), "params": int(result["params"]), "curve": curve,
                          "minutes": minutes, "epochs": int(result["epochs"]),
                          "free": parameter_free_ops(genotype, "normal", space.parameter_free)}  # fmt: skip
    return runs


def ranks(values: list[float]) -> list[int]:
    order = sorted(range(len(values)), key=lambda i: -values[i])
    out = [0] * len(values)
    for rank, i in enumerate(order, 1):
        out[i] = rank
    return out


def report(proxies: dict[str, dict[str, dict]]) -> list[str]:
    cells = sorted(set.intersection(*(set(runs) for runs in proxies.values())))
    if not cells:
        return ["no cell was retrained (to the end) by every proxy"]
    names = list(proxies)
    longest = max(names, key=lambda n: max(proxies[n][c]["epochs"] for c in cells))
    epochs = max(len(proxies[longest][c]["curve"]) for c in cells)
    first = proxies[names[0]]
    order = sorted(cells, key=lambda c: -proxies[longest][c]["acc"])
    rank = {n: dict(zip(cells, ranks([proxies[n][c]["acc"] for c in cells]))) for n in names}
    head = ["cell", "param-free normal edges", "params"] + [f"{n} acc (rank)" for n in names]
    head += [f"{n} train min" for n in names]
    head += [f"{longest} epoch {e + 1}" for e in range(epochs)]
    out = ["| " + " | ".join(head) + " |", "| --- |" + " ---: |" * (len(head) - 1)]
    for c in order:
        row = [c, str(first[c]["free"]), f"{first[c]['params']:,}"]
        row += [f"{proxies[n][c]['acc']:.2f} ({rank[n][c]})" for n in names]
        row += [f"{proxies[n][c]['minutes']:.0f}" for n in names]
        row += [f"{a:.2f}" for a in proxies[longest][c]["curve"]]
        out.append("| " + " | ".join(row) + " |")
    out.append("")
    free = [first[c]["free"] for c in cells]
    for n in names:
        tau = kendall_tau([proxies[n][c]["acc"] for c in cells], free) if len(set(free)) > 1 else float("nan")
        out.append(f"{n}: Kendall tau, final accuracy vs parameter-free normal edges over {len(cells)} cells: "
                   f"{tau:+.2f}")  # fmt: skip
    for a, b in combinations(names, 2):
        tau = kendall_tau([proxies[a][c]["acc"] for c in cells], [proxies[b][c]["acc"] for c in cells])
        out.append(f"Kendall tau between {a} and {b}: {tau:+.2f}")
    # the judge's check per proxy: published (zoo-*) and searched (seed-*) against random-*, first retrains
    # only (an ablation's repeats, `<cell>.seed-N`, would count one cell twice)
    firsts = [c for c in cells if not REPEAT.search(c)]
    for n in names:
        out += ["", *table(n, {c: proxies[n][c] for c in firsts})]
    return out


def write_rows(path: str, proxies: dict[str, dict[str, dict]]) -> None:
    """The csv, written atomically: a failed write leaves an earlier file at `path` whole."""
    text = io.StringIO()
    writer = csv.writer(text)
    writer.writerow(["cell", "proxy", "epochs", "epoch", "test_acc", "param_free_normal", "params"])
    for name, runs in proxies.items():
        for cell, r in sorted(runs.items()):
            for epoch, acc in enumerate(r["curve"], 1):
                writer.writerow([cell, name, r["epochs"], epoch, f"{acc:.2f}", r["free"], r["params"]])
    atomic_write_text(path, text.getvalue())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("proxies", nargs="+", metavar="NAME=FOLDER")
    parser.add_argument("-o", "--out", help="one row per cell, proxy and epoch")
    args = parser.parse_args()
    proxies = {}
    for item in args.proxies:
        name, sep, folder = item.partition("=")
        if not sep or not Path(folder).is_dir():
            print(f"error: expected NAME=FOLDER with an existing folder, got {item!r}", file=sys.stderr)
            sys.exit(2)
        if name in proxies:
            print(f"error: proxy name {name!r} given twice", file=sys.stderr)
            sys.exit(2)
        try:
            proxies[name] = finished_runs(Path(folder))
        except (
            UserError,
            OSError,
            ValueError,
            KeyError,
            TypeError,
        ) as e:  # a missing genotype, a record's key
            print(
                f"error: {folder}: a run directory there is not a finished `nas train` run ({e!r})",
                file=sys.stderr,
            )
            sys.exit(2)
    if args.out:
        try:
            write_rows(args.out, proxies)
        except UserError as e:
            print(f"error: {e}", file=sys.stderr)
            sys.exit(2)
        except OSError as e:
            print(f"error: cannot write {args.out}: {e.strerror}", file=sys.stderr)
            sys.exit(2)
    print("\n".join(report(proxies)))


if __name__ == "__main__":
    main()
