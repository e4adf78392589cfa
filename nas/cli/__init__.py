"""The `nas` command line: search | derive | rank | train | genotype | export | ablate | gradcheck | bench |
cost.

Every command that runs takes `--config FILE` plus `key=value` overrides (OmegaConf dotlist). User
errors print one line and exit with code 2.
"""

from __future__ import annotations

import argparse
import sys

from nas.arch.space import resolve_genotype
from nas.cli.cost import add_budget_args
from nas.cli.cost import add_parsers as add_cost_parsers
from nas.cli.genotype import add_ground_truth_args
from nas.cli.genotype import add_parsers as add_genotype_parsers
from nas.cli.run import cmd_derive, cmd_export, cmd_rank, cmd_search, cmd_train
from nas.core.atomic import check_output_path
from nas.core.errors import ENVIRONMENT_ERRNOS, UserError, printable


class _Parser(argparse.ArgumentParser):
    """argparse that reports a usage mistake in one line (exit code 2), without the usage block."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


# --- ablate --------------------------------------------------------------------------------------------


def cmd_ablate(args: argparse.Namespace) -> int:
    from nas.ablate import main as ablate_main

    return ablate_main(args.config, args.overrides, commands=args.print_commands, aggregate=args.aggregate,
                       only=args.run)  # fmt: skip


# --- gradcheck -----------------------------------------------------------------------------------------


def cmd_gradcheck(args: argparse.Namespace) -> int:
    from nas.gradcheck import main as gradcheck_main

    return gradcheck_main(args.config, args.overrides)


# --- bench ---------------------------------------------------------------------------------------------


def cmd_bench(args: argparse.Namespace) -> int:
    from nas.bench.report import format_table, write_report
    from nas.bench.run import bench
    from nas.core.limits import BENCH_RANGES, check_flags

    check_flags(vars(args), BENCH_RANGES)
    if args.train != (args.genotype is not None):
        raise UserError("nas bench: --train and --genotype FILE|RUN_DIR|zoo:NAME go together")
    if args.output:
        check_output_path(args.output)
    genotype = resolve_genotype(args.genotype) if args.train else None
    report = bench(config=args.config, overrides=args.overrides, compare=args.compare or [], steps=args.steps,
                   warmup=args.warmup, rounds=args.rounds, genotype=genotype)  # fmt: skip
    print(format_table(report))
    print(f"-> {write_report(report, args.output)}")
    return 0


# --- parser --------------------------------------------------------------------------------------------


def _add_run_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", help="YAML config file (see configs/)")
    p.add_argument("--resume", metavar="RUN_DIR", help="continue the run in RUN_DIR from its last checkpoint")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides (OmegaConf dotlist)")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="nas", description="Differentiable architecture search with Gumbel-softmax.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    p = sub.add_parser("search", help="search an architecture (supernet + bilevel loop)")
    _add_run_args(p)
    p.set_defaults(func=cmd_search)

    p = sub.add_parser("derive", help="re-derive genotype.json and alphas.json from a run's last checkpoint")
    p.add_argument("run_dir")
    add_budget_args(p)
    p.add_argument(
        "--derive-cap",
        type=int,
        metavar="N",
        help="at most N edges of search.derive_cap.ops (default: the space's parameter-free ops) in the first "
        "cell, the derive rule's best such cell (overrides the run's search.derive_cap.max_ops)",
    )
    p.set_defaults(func=cmd_derive)

    p = sub.add_parser("rank", help="accuracy of genotypes inside a search run's final supernet (one-hot)")
    p.add_argument("run_dir")
    p.add_argument(
        "genotypes", nargs="*", metavar="GENOTYPE", help="genotype file, run directory or zoo:NAME"
    )
    p.add_argument(
        "--random",
        type=int,
        default=0,
        metavar="N",
        help="also rank N uniform random cells of the space against its ground truth (Kendall tau)",
    )
    p.add_argument("--random-seed", type=int, default=0, help="draws the random cells (default 0)")
    p.add_argument("--dataset", help="the ground truth's dataset (default: its first, e.g. cifar10)")
    add_ground_truth_args(p)
    p.add_argument("--device", help="default: the run's device setting")
    p.add_argument("-o", "--output", help="also write the accuracies as JSON here")
    p.set_defaults(func=cmd_rank)

    p = sub.add_parser("train", help="retrain a genotype from scratch")
    p.add_argument("--genotype", help="genotype file, search run directory, or zoo:NAME")
    _add_run_args(p)
    p.set_defaults(func=cmd_train)

    add_genotype_parsers(sub)

    p = sub.add_parser("export", help="a retrained network as .pt2 (torch.export), .onnx or .safetensors")
    p.add_argument("run_dir", help="a nas train run directory")
    p.add_argument("-o", "--output", required=True, help="model.pt2, model.onnx or model.safetensors")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("ablate", help="search a grid of settings x seeds, retrain each result, compare")
    p.add_argument("--config", help="ablation YAML file (see configs/ablations/)")
    p.add_argument("--print-commands", action="store_true", help="print one command per run, run nothing")
    p.add_argument("--aggregate", metavar="OUT_DIR", help="only build the tables and plots of OUT_DIR")
    p.add_argument("--run", action="append", metavar="RUN_ID", help="run only this grid point (repeatable)")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="ablation overrides (OmegaConf dotlist)")
    p.set_defaults(func=cmd_ablate)

    p = sub.add_parser(
        "gradcheck", help="bias and variance of every estimator's alpha gradient vs the exact one"
    )
    p.add_argument("--config", help="gradcheck YAML file (see configs/gradcheck/)")
    p.add_argument(
        "overrides", nargs="*", metavar="key=value", help="gradcheck overrides (OmegaConf dotlist)"
    )
    p.set_defaults(func=cmd_gradcheck)

    p = sub.add_parser("bench", help="images/s, ms per phase and peak memory of the search (or retrain) loop")
    p.add_argument("--config", help="search (or, with --train, retrain) YAML config")
    p.add_argument("--compare", action="append", metavar="KEY=A,B",
                   help="run each value side by side in one process (repeatable: every combination)")  # fmt: skip
    p.add_argument("--steps", type=int, default=10, help="timed steps per setting (default 10)")
    p.add_argument("--warmup", type=int, default=3, help="untimed steps per setting first (default 3)")
    p.add_argument("--rounds", type=int, default=5, help="interleaved rounds the steps are split into")
    p.add_argument("--train", action="store_true", help="benchmark retraining --genotype instead of search")
    p.add_argument("--genotype", help="genotype file, search run directory, or zoo:NAME (with --train)")
    p.add_argument("-o", "--output", help="JSON report path (default runs/bench/<kind>-<time>.json)")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides (OmegaConf dotlist)")
    p.set_defaults(func=cmd_bench)

    add_cost_parsers(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except UserError as exc:
        print(f"nas: error: {printable(exc)}", file=sys.stderr)
        return 2
    except OSError as exc:  # the machine refused (disk full, read-only, no permission): not a bug
        if exc.errno not in ENVIRONMENT_ERRNOS:
            raise
        where = f"cannot write {exc.filename}: " if exc.filename else ""
        print(f"nas: error: {printable(where)}{exc.strerror}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("nas: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
