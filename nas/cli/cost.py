"""`nas cost table|profile` and the budget options of `nas derive` (wired into `nas.cli`)."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

from nas.arch.space import SPACES
from nas.core.errors import UserError
from nas.core.limits import BUDGET, COST_RANGES, PROFILE_RANGES, check_flags
from nas.core.rundir import COST_TABLE_FILE
from nas.cost.table import METRICS, UNITS, CostTable, NetworkSpec, count_table, load_table


def add_parsers(sub) -> None:
    """`nas cost table` (FLOPs, parameters) and `nas cost profile` (the same plus measured latency)."""
    g = sub.add_parser("cost", help="cost tables for resource-aware search (FLOPs, parameters, latency)")
    g = g.add_subparsers(dest="cost_command", required=True, parser_class=sub._parser_class)
    for name, help_ in [("table", "count FLOPs and parameters of every op at every edge of a retrain network"),
                        ("profile", "the same plus measured latency of every op on a device")]:  # fmt: skip
        p = g.add_parser(name, help=help_)
        p.add_argument("--space", required=True, help=f"search space: {' | '.join(SPACES.names())}")
        p.add_argument("--init-channels", type=int, help="default: the space's standard network (36 | 16)")
        p.add_argument("--layers", type=int, help="default: the space's standard network (20 | 5)")
        p.add_argument("--nodes", type=int, help="DARTS: intermediate nodes per cell (default 4)")
        p.add_argument("--classes", type=int, default=10)
        p.add_argument("--in-channels", type=int, default=3)
        p.add_argument("--image-size", type=int, default=32)
        p.add_argument(
            "-o", "--output", required=True, help="the table (JSON) for search.cost.table / derive"
        )
        if name == "profile":
            p.add_argument("--device", default="cpu", help="cpu | cuda | cuda:N (default cpu)")
            p.add_argument("--batch", type=int, default=1, help="batch size timed (default 1)")
            p.add_argument("--warmup", type=int, default=5, help="untimed calls per op (default 5)")
            p.add_argument("--repeats", type=int, default=20, help="timed calls per op, median (default 20)")
            p.add_argument("--cache", default=str(Path.home() / ".cache" / "nas" / "latency.json"),
                           help="op timings cache, keyed by device, torch version, threads, batch, shapes")  # fmt: skip
        p.set_defaults(func=cmd_cost)


def add_budget_args(p: argparse.ArgumentParser) -> None:
    for metric in METRICS:
        p.add_argument(f"--max-{metric}", type=float, metavar="X",
                       help=f"the best cell by the derive rule whose {metric} ({UNITS[metric]}) is <= X")  # fmt: skip
    p.add_argument("--table", help="cost table for the budget (default: the run's cost_table.json)")


def cmd_cost(args: argparse.Namespace) -> int:
    from nas.arch.space import SPACES

    check_flags(vars(args), COST_RANGES | (PROFILE_RANGES if args.cost_command == "profile" else {}))
    space = SPACES.get(args.space)
    sizes = space.networks["cifar"]  # the space's standard CIFAR network
    if args.nodes is not None and not hasattr(space.Options, "nodes"):
        raise UserError(f"--nodes: the {args.space} space's cell has a fixed number of nodes")
    given = {} if args.nodes is None else {"nodes": args.nodes}  # else the spec's default, as `standard_spec`
    spec = NetworkSpec(args.space, "cifar", args.init_channels or sizes["init_channels"], args.layers or sizes["layers"],
                       classes=args.classes, in_channels=args.in_channels, image_size=args.image_size, **given)  # fmt: skip
    timer = None
    if args.cost_command == "profile":
        from nas.cost.latency import LatencyTimer

        check_device(args.device)
        timer = LatencyTimer(args.device, args.batch, args.warmup, args.repeats, args.cache)
    table = count_table(space, spec, timer)
    table.save(args.output)
    print(summary(table))
    if timer is not None:
        print(f"latency: {timer.measured} ops measured, {timer.hits} from the cache {args.cache}")
    print(f"-> {args.output}")
    return 0


def check_device(device: str) -> None:
    """`--device`: cpu, cuda or cuda:N of a GPU this machine has; anything else in one line."""
    import torch

    if not re.fullmatch(r"cpu|cuda(:\d{1,3})?", device):
        raise UserError(f"--device must be cpu, cuda or cuda:N, got {device[:40]!r}")
    if device.startswith("cuda"):
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        index = int(device.partition(":")[2] or 0)
        if index >= count:
            raise UserError(f"--device {device}: this machine has {count} CUDA device(s)")


def summary(table: CostTable) -> str:
    """Per metric: the fixed part, and per op its mean cost per table entry (one cell's edge)."""
    net = table.net
    lines = [f"space {net.space}: {net.init_channels} channels, {net.layers} layers, {net.classes} classes, "
             f"{net.in_channels}x{net.image_size}x{net.image_size} input"]  # fmt: skip
    for metric in table.cells:
        lines.append(f"{metric} ({UNITS[metric]}): fixed {table.fixed[metric]:,.4g}")
        for ct, rows in table.cells[metric].items():
            means = [sum(r[k] for r in rows) / len(rows) for k in range(len(table.primitives))]
            ops = ", ".join(f"{op} {m:,.4g}" for op, m in zip(table.primitives, means))
            lines.append(f"  {ct}, mean per edge: {ops}")
    return "\n".join(lines)


def budget_of(args: argparse.Namespace) -> tuple[str, float] | None:
    """(metric, X) of the one `--max-METRIC X` given, None without any; UserError for several."""
    given = [(m, getattr(args, f"max_{m}")) for m in METRICS if getattr(args, f"max_{m}") is not None]
    if len(given) > 1:
        raise UserError("nas derive takes one budget at a time (--max-flops, --max-params or --max-latency)")
    for metric, limit in given:
        if limit not in BUDGET:  # NaN is in no range
            raise UserError(f"--max-{metric} must be finite and {BUDGET}, got {limit}")
    return given[0] if given else None


def budget_table(args: argparse.Namespace, run_dir: Path) -> CostTable:
    path = Path(args.table) if args.table else run_dir / COST_TABLE_FILE
    if not args.table and not path.is_file():
        raise UserError(f"{run_dir} has no cost_table.json (searched without search.cost): pass --table FILE "
                        "(made by `nas cost table` or `nas cost profile`)")  # fmt: skip
    return load_table(path)
