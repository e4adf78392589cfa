"""Tables for the write-up, from the files profile.sh and sweep.sh wrote (no measuring here).

python experiments/resource_aware/report.py latency experiments/resource_aware/table_*_cpu_b1.json
python experiments/resource_aware/report.py sweep runs/resource_aware/lambda_*
"""

from __future__ import annotations

import json
import sys
from itertools import combinations
from pathlib import Path

from omegaconf import OmegaConf


def latency(paths: list[str]) -> None:
    """Per table: every distinct (op, input shape) site with FLOPs, params and latency; per input shape,
    whether FLOPs and latency order the ops the same way (pairs ordered the same / pairs compared)."""
    for path in paths:
        data = json.loads(Path(path).read_text())
        net, meta = data["network"], data["latency"]
        print(f"\n### {net['space']}: {net['init_channels']} channels x {net['layers']} layers, "
              f"{net['image_size']}x{net['image_size']} input ({Path(path).name})\n")  # fmt: skip
        print(f"latency: {meta['device']}, torch {meta['torch']}, {meta['threads']} thread(s), batch {meta['batch']}, "
              f"median of {meta['repeats']} after {meta['warmup']} warm-up calls\n")  # fmt: skip
        print("| input (C, H, W) | stride | op | MFLOPs | params | latency ms | ms per GFLOP |")
        print("| --- | --- | --- | ---: | ---: | ---: | ---: |")
        by_shape: dict[tuple, list[dict]] = {}
        for site in sorted(
            data["sites"], key=lambda s: (-s["input"][1], s["input"][0], s["stride"], s["flops"])
        ):
            if site["op"] == "none":
                continue
            key = (tuple(site["input"]), site["stride"])
            by_shape.setdefault(key, []).append(site)
            per = f"{site['latency'] / (site['flops'] / 1e9):.1f}" if site["flops"] else "-"
            print(f"| {tuple(site['input'])} | {site['stride']} | {site['op']} | {site['flops'] / 1e6:.2f} | "
                  f"{site['params']:,} | {site['latency']:.3f} | {per} |")  # fmt: skip
        same = total = 0
        for sites in by_shape.values():
            for a, b in combinations(sites, 2):
                if a["flops"] != b["flops"]:  # a FLOPs tie says nothing about order
                    total += 1
                    same += (a["flops"] < b["flops"]) == (a["latency"] < b["latency"])
        print(
            f"\nop pairs at the same input whose FLOPs differ: latency orders {same} of {total} the same way"
        )
        print(
            f"fixed part: {data['fixed']['flops'] / 1e6:.1f} MFLOPs, {data['fixed']['latency']:.2f} ms (estimated)"
        )


def sweep(runs: list[str]) -> None:
    """Per run: lambda, the last epoch's val accuracy, expected and derived cost, the derived cell; and
    over every epoch with alpha moving, how far the expected cost was from the derived cell's cost."""
    print(
        "| lambda | val acc (last epoch) | expected MFLOPs | derived MFLOPs | derived cell | mean abs(expected - derived) / derived, epochs with alpha moving |"
    )
    print("| --- | ---: | ---: | ---: | --- | ---: |")
    for run in runs:
        records = [json.loads(line) for line in (Path(run) / "metrics.jsonl").read_text().splitlines()]
        lam = OmegaConf.load(Path(run) / "config.yaml").search.cost.weight
        moving = [r for r in records if r["val_acc"] is not None]
        err = sum(abs(r["expected_flops"] - r["derived_flops"]) / r["derived_flops"] for r in moving) / max(
            1, len(moving)
        )
        last = records[-1]
        print(f"| {lam} | {last['val_acc']:.2f} | {last['expected_flops'] / 1e6:.1f} | {last['derived_flops'] / 1e6:.1f} "
              f"| `{last['genotype']}` | {100 * err:.0f} % |")  # fmt: skip
    print("\nper epoch (expected / derived MFLOPs):")
    for run in runs:
        records = [json.loads(line) for line in (Path(run) / "metrics.jsonl").read_text().splitlines()]
        pairs = " ".join(f"{r['expected_flops'] / 1e6:.0f}/{r['derived_flops'] / 1e6:.0f}" for r in records)
        print(f"- {Path(run).name}: {pairs}")


def cells(paths: list[str], n: int = 500) -> None:
    """Whole cells: n uniform random cells per table (the random baseline's draw), their table FLOPs and
    latency; Kendall tau between the two, and whether the cheapest by one is cheapest by the other."""
    import random

    import numpy as np

    import search_spaces  # noqa: F401
    from nas.arch.space import SPACES
    from nas.cost.table import load_table

    print(
        "| table | cells | Kendall tau (FLOPs, latency) | latency of the 10 % lowest-FLOPs cells, ms | of the 10 % highest |"
    )
    print("| --- | ---: | ---: | ---: | ---: |")
    for path in paths:
        table = load_table(path)
        space = SPACES.get(table.net.space)
        rng = random.Random(0)
        drawn = [space.sample_random(rng, table.net.space_config(space)) for _ in range(n)]
        f = np.array([table.cost_of(g, space, "flops") for g in drawn])
        t = np.array([table.cost_of(g, space, "latency") for g in drawn])
        df, dt = np.sign(f[:, None] - f[None, :]), np.sign(t[:, None] - t[None, :])
        tau = (df * dt).sum() / np.sqrt((df != 0).sum() * (dt != 0).sum())
        order = np.argsort(f)
        k = n // 10
        print(
            f"| {Path(path).name} | {n} | {tau:.2f} | {t[order[:k]].mean():.1f} | {t[order[-k:]].mean():.1f} |"
        )


if __name__ == "__main__":
    {"latency": latency, "sweep": sweep, "cells": cells}[sys.argv[1]](sys.argv[2:])
