"""The commands that run or read one run: `nas search`, `nas derive`, `nas rank`, `nas train`, `nas export`."""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

from nas.arch.genotype import Genotype, describe, save_genotype
from nas.arch.ground_truth import ground_truth_of
from nas.arch.space import SPACES, resolve_genotype
from nas.cli.cost import budget_of, budget_table
from nas.cli.genotype import ground_truth_config
from nas.config.idle import warn_idle
from nas.core.atomic import check_output_path
from nas.core.errors import ENVIRONMENT_ERRNOS, UserError
from nas.core.rundir import ALPHAS_FILE, CONFIG_FILE, GENOTYPE_FILE, RESULT_FILE


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
