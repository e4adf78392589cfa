"""The `nas` command line: search | derive | rank | train | genotype | export | ablate | gradcheck | bench |
cost.

Every command that runs takes `--config FILE` plus `key=value` overrides (OmegaConf dotlist). User
errors print one line and exit with code 2.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

from nas.arch.genotype import Genotype, describe, save_genotype
from nas.arch.ground_truth import ground_truth_of
from nas.arch.space import SPACES, resolve_genotype
from nas.cli.cost import add_budget_args, budget_of, budget_table
from nas.cli.cost import add_parsers as add_cost_parsers
from nas.cli.genotype import add_ground_truth_args, ground_truth_config
from nas.cli.genotype import add_parsers as add_genotype_parsers
from nas.config.idle import warn_idle
from nas.core.atomic import check_output_path
from nas.core.errors import UserError, printable
from nas.core.rundir import ALPHAS_FILE, CONFIG_FILE, GENOTYPE_FILE, RESULT_FILE

# errors of the file system or the machine that a user fixes (space, permissions, paths), reported in one line
ENVIRONMENT_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM,
                                errno.ENOTDIR, errno.EISDIR, errno.ENAMETOOLONG, errno.ENOENT, errno.EIO})  # fmt: skip


class _Parser(argparse.ArgumentParser):
    """argparse that reports a usage mistake in one line (exit code 2), without the usage block."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def _run_dir(path: str) -> Path:
    run_dir = Path(path)
    if not (run_dir / CONFIG_FILE).is_file():
        raise UserError(f"{run_dir} is not a run directory (no config.yaml)")
    return run_dir


# --- search / derive -----------------------------------------------------------------------------------


def _run_config(schema: type, args: argparse.Namespace, command: str):
    """(config, what a resume's overrides changed or None) of `nas search|train --config/--resume`."""
    from nas.config import load_config
    from nas.run.resume import resume_config

    if args.resume:
        return resume_config(schema, _run_dir(args.resume), args.overrides)
    if args.config is None and command == "search":
        raise UserError("nas search needs --config FILE (or --resume RUN_DIR)")
    return load_config(schema, args.config, args.overrides), None


def _start(cfg, args: argparse.Namespace):
    """The process group (None for one process) and whether the run asks to resume; refuses a device that
    does not exist before the run directory is touched."""
    from nas.run import distributed
    from nas.run.checkpoint import CHECKPOINT
    from nas.run.runtime import pick_device

    if not distributed.launched_by_torchrun():
        pick_device(cfg.device)
    dist = distributed.init_distributed(cfg.device)  # None unless torchrun started several processes
    return dist, bool(args.resume) or distributed.elastic_resume(cfg, CHECKPOINT, dist)


@contextlib.contextmanager
def _running(command: str, path: Path) -> Iterator[None]:
    """A run that the machine stops (disk full, permissions) ends in one line that says how to go on."""
    from nas.run.checkpoint import CheckpointWriteError

    hint = f"resume with nas {command} --resume {path} once fixed"
    try:
        yield
    except CheckpointWriteError as exc:
        raise UserError(f"{exc}; {hint}") from None
    except OSError as exc:
        if exc.errno not in ENVIRONMENT_ERRNOS:
            raise
        raise UserError(f"the run stopped: cannot write {exc.filename}: {exc.strerror}; its last checkpoint "
                        f"is kept: {hint}") from None  # fmt: skip


def _sharpness(space, record: dict) -> str:
    """How far the search sharpened: each cell type's mean op entropy against uniform (ln K)."""
    import math

    entropies = ", ".join(
        f"{k[len('entropy_') :]} {v:.3f}" for k, v in record.items() if k.startswith("entropy_")
    )
    if not entropies:
        return ""
    K = len(space.primitives)
    return f" (mean op entropy {entropies}; uniform = ln {K} = {math.log(K):.3f})"


def _run(
    command: str,
    args: argparse.Namespace,
    schema: type,
    runner: type,
    done: str,
    inputs: Callable[..., tuple],
    notices: Callable[..., None],
) -> tuple:
    """The one path of `nas search` and `nas train`, fresh or resumed: the config (--config or --resume),
    the process group, the claimed run directory, the runner, the resume's accepted overrides written into
    config.yaml, the run. Returns the runner and what its `run` returned.

    Args:
        runner: `SearchRunner` or `Trainer`, built as runner(cfg, *inputs(cfg, resume), out_dir, ...).
        done: the file a finished run leaves (`nas.core.rundir.decide`).
        notices: notices(cfg, *inputs) says what the user should know (warning lines) once the run is set
            up, so that a refused command still says only its one line.
    """
    from nas.run import distributed
    from nas.run.resume import record_resume

    cfg, changed = _run_config(schema, args, command)
    dist, resume = _start(cfg, args)
    extra = inputs(cfg, resume)  # before the run directory is claimed: a bad input leaves nothing behind
    with distributed.run_dir(cfg.out_dir, resume, dist, done, schema) as run:
        with run.setup():
            job = runner(cfg, *extra, run.path, resume=run.resume, dist=dist)
        notices(cfg, *extra)
        if changed and run.resume and (dist is None or dist.rank == 0):
            record_resume(run.path, cfg, changed)
        with _running(command, run.path):
            result = job.run()
    distributed.destroy(dist)
    return job, result


def cmd_search(args: argparse.Namespace) -> int:
    from nas.config import SearchRunConfig
    from nas.search.runner import SearchRunner

    def inputs(cfg: SearchRunConfig, resume: bool) -> tuple:
        space = SPACES.get(cfg.space.name)
        ground_truth_of(space, cfg.ground_truth)  # a bad ground_truth section: refused before any work
        return (space,)

    runner, record = _run("search", args, SearchRunConfig, SearchRunner, ALPHAS_FILE, inputs, warn_idle)
    if runner.rank == 0:
        print(f"search finished: {runner.out_dir / GENOTYPE_FILE}{_sharpness(runner.space, record)}")
        if runner.truth is not None:
            print(runner.truth.summary(runner.genotype(runner.cfg.search.epochs - 1)))
    return 0


def cmd_derive(args: argparse.Namespace) -> int:
    from nas.core.rundir import holding

    run_dir = _run_dir(args.run_dir)
    with holding(run_dir):  # a search still writing the run: refused, nothing rewritten
        return _derive(args, run_dir)


def _derive(args: argparse.Namespace, run_dir: Path) -> int:
    from nas.arch.space import exclude_ops
    from nas.config import SearchRunConfig, load_config
    from nas.core.limits import RANGES, check_flags
    from nas.search.load import load_architecture
    from nas.search.provenance import derive_genotype
    from nas.search.runner import write_alphas

    budget = budget_of(args)  # a bad budget: refused before any work
    cfg = load_config(SearchRunConfig, run_dir / CONFIG_FILE)
    if args.derive_cap is not None:
        check_flags({"derive_cap": args.derive_cap}, {"--derive-cap": RANGES["search.derive_cap.max_ops"]})
        cfg.search.derive_cap.max_ops = args.derive_cap
    if budget is not None and cfg.search.derive_cap.max_ops is not None:
        raise UserError("nas derive takes a budget (--max-...) or a derive cap (--derive-cap, "
                        "search.derive_cap.max_ops), not both")  # fmt: skip
    arch = load_architecture(run_dir, cfg)
    space, logits, betas, alphas = arch.space, arch.logits, arch.betas, arch.alphas
    genotype = derive_genotype(cfg, space, logits, betas, arch.epoch, arch.tau)
    prov = genotype.provenance
    if budget is not None:  # the best cell by the derive rule under the budget (nas.cost.budget)
        from nas.cost.budget import derive_within

        metric, limit = budget
        genotype, cost = derive_within(  # derive_exclude's ops stay out of a budgeted cell too
            space, exclude_ops(logits, space.primitives, cfg.search.derive_exclude), budget_table(args, run_dir),
            metric, limit, betas or None,
        )  # fmt: skip
        prov["budget"] = {"metric": metric, "max": limit, "cost": cost}
    genotype = Genotype(genotype.space, genotype.cells, prov)
    save_genotype(run_dir / GENOTYPE_FILE, genotype)
    write_alphas(run_dir / ALPHAS_FILE, alphas, space.primitives, betas)
    print(describe(genotype, space.input_states))
    if budget is not None:
        print(f"{metric} {cost:,.6g} <= {limit:,.6g} (budget)")
    return 0


def cmd_rank(args: argparse.Namespace) -> int:
    import json

    from nas.arch.diagnostics import genotype_string
    from nas.config import SearchRunConfig, load_config
    from nas.core.atomic import atomic_write_text
    from nas.core.limits import RANK_RANGES, check_flags
    from nas.core.stats import kendall_tau
    from nas.search.rank import random_cells, supernet_accuracies

    run_dir = _run_dir(args.run_dir)
    if args.output:
        check_output_path(args.output)
    if not args.genotypes and not args.random:
        raise UserError("nas rank needs genotypes to rank, or --random N")
    check_flags(vars(args), RANK_RANGES)
    cfg = load_config(SearchRunConfig, run_dir / CONFIG_FILE)
    space = SPACES.get(cfg.space.name)
    truth = ground_truth_of(space, ground_truth_config(args)) if args.random else None
    if args.random and truth is None:
        raise UserError(f"--random ranks against a ground truth, and space {space.name} has none")
    specs = list(args.genotypes)
    genotypes = [resolve_genotype(spec) for spec in specs]
    drawn = random_cells(space, cfg.space, args.random, args.random_seed)
    specs += [genotype_string(g) for g in drawn]
    accuracies = supernet_accuracies(run_dir, genotypes + drawn, device=args.device)
    rows = [{"genotype": spec, "supernet_acc": acc} for spec, acc in zip(specs, accuracies)]
    if truth is not None:
        dataset = args.dataset or truth.datasets[0]
        for row, genotype in zip(rows, genotypes + drawn):
            row["ground_truth"] = truth.accuracy(genotype)[dataset] if dataset in truth.datasets else None
    for row in rows:
        gt = f"  {row['ground_truth']:6.2f}" if row.get("ground_truth") is not None else ""
        print(f"{row['supernet_acc']:7.2f}{gt}  {row['genotype']}")
    result = {"run": str(run_dir), "results": rows}
    if drawn:  # the supernet's ranking of random cells against the truth
        sampled = rows[len(genotypes) :]
        tau = kendall_tau([r["supernet_acc"] for r in sampled], [r["ground_truth"] for r in sampled])
        result |= {
            "random": args.random,
            "random_seed": args.random_seed,
            "dataset": dataset,
            "kendall_tau": tau,
        }
        print(f"Kendall tau, supernet accuracy vs {truth.name} {dataset} accuracy, {args.random} random cells "
              f"(seed {args.random_seed}): {tau:.3f}")  # fmt: skip
    if args.output:
        atomic_write_text(args.output, json.dumps(result, indent=1) + "\n")
    return 0


# --- train ---------------------------------------------------------------------------------------------


def cmd_train(args: argparse.Namespace) -> int:
    from nas.config import TrainRunConfig
    from nas.train.trainer import Trainer

    if not args.resume and args.genotype is None:
        raise UserError("nas train needs --genotype FILE|RUN_DIR|zoo:NAME (or --resume RUN_DIR)")
    recipe_note = None
    if not args.resume and args.config is None:  # the recipe of the genotype's space, said in one line
        from nas.train.recipe import ROOT, default_recipe

        space = SPACES.get(resolve_genotype(args.genotype).space)
        recipe = default_recipe(space)
        args.config = str(recipe)
        recipe_note = (f"nas: no --config: retraining with space {space.name}'s recipe "
                       f"{recipe.relative_to(ROOT)} (pass --config FILE to choose another)")  # fmt: skip

    def inputs(cfg: TrainRunConfig, resume: bool) -> tuple:
        if resume:  # the genotype the run started with
            saved = Path(cfg.out_dir) / GENOTYPE_FILE
            if not saved.is_file():
                raise UserError(f"cannot resume {cfg.out_dir}: it stopped before saving genotype.json; start it "
                                f"again with nas train --genotype ... out_dir={cfg.out_dir}")  # fmt: skip
            genotype = resolve_genotype(str(saved))
        else:
            genotype = resolve_genotype(args.genotype)
        return genotype, SPACES.get(genotype.space)

    def notices(cfg: TrainRunConfig, genotype, space) -> None:
        # said once the run is set up, so that a refused command still says only its one line
        if recipe_note and os.environ.get("RANK", "0") == "0":
            print(recipe_note, file=sys.stderr, flush=True)
        warn_idle(cfg, space)

    trainer, result = _run("train", args, TrainRunConfig, Trainer, RESULT_FILE, inputs, notices)
    if trainer.rank == 0:
        print(
            f"test accuracy {result['test_acc']:.2f}%  params {result['params']:,}  -> {trainer.out_dir / RESULT_FILE}"
        )
    return 0


# --- export --------------------------------------------------------------------------------------------


def cmd_export(args: argparse.Namespace) -> int:
    from nas.train.export import check_format, export, run_metadata

    check_format(args.output)  # before any work: a bad name or a missing package
    network, meta = run_metadata(_run_dir(args.run_dir))
    diff = export(network, meta, args.output)
    data = meta["data"]
    print(f"wrote {args.output}: {meta['genotype']['space']} {meta['config']['model']['network']} network, "
          f"{data['num_classes']} classes, input {data['in_channels']}x{data['image_size']}x{data['image_size']}")  # fmt: skip
    print(f"check: max abs difference from the eager network on a batch of 4: {diff:.3g}")
    return 0


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
