"""`nas ablate`: search every point of a grid of settings x seeds, retrain what each finds, compare it with
baseline architectures retrained the same way.

- `spec`: the ablation file, its runs (grid points and baselines), their configs, all checked first;
- `launch`: the stages of a point, one subprocess each (`nas search`, `nas rank`, `nas train`), skipped
  when finished, resumed from a checkpoint;
- `executors`: who runs the points: `local` processes, `jobs` at once (default), or `ray` tasks on a local
  Ray instance or a cluster (`ray_executor`);
- `report`: tables (`results.csv`, `results.md`: per setting, and searched against random), from whatever
  run directories exist; `plots`: the figures.

Every stage is idempotent, so re-running the same command after a kill loses at most one epoch per run:
a finished stage is skipped, one with a checkpoint resumes (`--resume`), one killed before its first
checkpoint starts over. A run directory made from a different config is refused rather than mixed in.
A sweep split over many machines (`--print-commands`, one `--run` each) is aggregated with
`--aggregate OUT_DIR`.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from nas.ablate.spec import (
    ABLATION_FILE,
    check_plan,
    load_ablation,
    plan,
    print_commands,
    select,
    write_snapshots,
)
from nas.core.errors import UserError


def main(
    config: str | None,
    overrides: list[str],
    commands: bool = False,
    aggregate: str | None = None,
    only: list[str] | None = None,
) -> int:
    """`nas ablate`: run (or print, or aggregate) an ablation. Returns the exit code."""
    from nas.ablate.executors import open_executor
    from nas.ablate.report import write_report

    if aggregate is not None:
        out = Path(aggregate)
        spec = load_ablation(out / ABLATION_FILE, overrides)
        for path in write_report(spec, plan(spec), out):
            print(path)
        return 0
    if config is None:
        raise UserError("nas ablate needs --config FILE (or --aggregate OUT_DIR)")
    spec = load_ablation(config, overrides)
    out = Path(spec.out_dir)
    runs = select(plan(spec), only) if only else plan(spec)
    executor = None if commands else open_executor(spec)  # its options and packages, before any work
    check_plan(spec, runs, out, data=not commands)
    if executor is None:
        print_commands(config, overrides, runs)
        return 0
    out.mkdir(parents=True, exist_ok=True)
    write_snapshots(spec, out)
    start = time.perf_counter()
    failures = executor.run(runs, out)
    seconds = time.perf_counter() - start
    print(f"{len(runs) - len(failures)}/{len(runs)} runs finished in {seconds:.0f}s", file=sys.stderr)
    for message in failures:
        print(f"nas ablate: failed: {message}", file=sys.stderr)
    if not only:  # runs is the whole plan
        for path in write_report(spec, runs, out):
            print(path)
    return 1 if failures else 0
