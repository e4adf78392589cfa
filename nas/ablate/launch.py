"""The stages of an ablation's runs (`nas ablate`): what each runs, when it is skipped or resumed, and
`run_point`, which every executor (`nas.ablate.executors`: local processes, Ray tasks) runs a point with.

Each grid point runs `python -m nas search` into `out_dir/runs/<id>`; with baselines,
`python -m nas rank` (its supernet's accuracy of every baseline and of its own cell) into
`out_dir/rank/<id>.json`; then `python -m nas train --genotype` (the proxy retrain) into
`out_dir/proxy/<id>` (with `proxy_train.seeds: N`, N retrains: stages `proxy-2`... into
`out_dir/proxy/<id>.seed-2`...). A baseline runs the proxy retrains only. A stage that finished (its last file exists)
is skipped, one with a checkpoint resumes with `--resume`, and one killed before its first checkpoint
starts over, so an interrupted ablation loses at most one epoch per run, whichever executor ran it.
"""

from __future__ import annotations

import os
import shlex
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

from nas.ablate.spec import (
    BASE_SEARCH,
    BASE_TRAIN,
    DONE,
    AblationConfig,
    Run,
    base_search_config,
    baseline_genotype,
    baseline_runs,
    plan,
    proxy_dir,
    proxy_overrides,
    proxy_stages,
)
from nas.config import SearchRunConfig, load_config
from nas.core.lifeline import lifeline_env
from nas.core.rundir import CONFIG_FILE
from nas.run.checkpoint import CHECKPOINT


def stages(spec: AblationConfig, run: Run) -> list[str]:
    proxy = proxy_stages(spec)
    if run.is_baseline:  # judged by its proxy retrain, or only looked up in the ground truth
        return proxy
    rank = spec.baselines is not None and spec.baselines.rank
    return ["search"] + ["rank"] * rank + proxy


def rank_file(out: Path, run_id: str) -> Path:
    return out / "rank" / f"{run_id}.json"


def rank_genotypes(spec: AblationConfig, run: Run, out: Path) -> dict[str, str]:
    """What `nas rank` evaluates in `run`'s supernet: its own cell, then every baseline (id -> spec)."""
    own = {"searched": str(out / "runs" / run.id)}
    return own | {b.id: baseline_genotype(spec, b, out) for b in baseline_runs(spec)}


def stage_command(spec: AblationConfig, run: Run, stage: str, out: Path) -> tuple[str, list[str]] | None:
    """(what happens, `nas` arguments) for the next step of a stage; None when it has finished already.

    A directory without a checkpoint belongs to a run killed in its first epoch: the command starts it over.
    """
    if stage == "rank":
        if rank_file(out, run.id).is_file():
            return None
        return "started", ["rank", str(out / "runs" / run.id), *rank_genotypes(spec, run, out).values(),
                           "-o", str(rank_file(out, run.id))]  # fmt: skip
    search = stage == "search"
    run_dir = out / "runs" / run.id if search else proxy_dir(out, run.id, stage)
    if (run_dir / DONE["search" if search else "proxy"]).is_file():
        return None
    if (run_dir / CHECKPOINT).is_file():
        return "resumed", ["search" if search else "train", "--resume", str(run_dir)]
    # a directory without a checkpoint (killed in its first epoch) is cleared by the command itself, once it
    # holds the directory's lock: never while another process may be running there
    if search:
        return "started", [
            "search",
            "--config",
            str(out / BASE_SEARCH),
            *run.search_args,
            f"out_dir={run_dir}",
        ]
    if run.is_baseline:
        search_cfg = base_search_config(spec, plan(spec), out)
        genotype = baseline_genotype(spec, run, out)
    else:
        search_cfg = load_config(SearchRunConfig, out / "runs" / run.id / CONFIG_FILE)
        genotype = str(out / "runs" / run.id)
    args = proxy_overrides(spec, run, out, search_cfg, stage)
    return "started", ["train", "--genotype", genotype, "--config", str(out / BASE_TRAIN), *args]


class StageKilled(RuntimeError):
    """A stage's process was killed by a signal (a lost worker, the OOM killer, a pre-empted job): worth
    retrying, unlike a stage that exited with an error of its own. Its retry resumes from the checkpoint."""


def run_point(
    spec: AblationConfig,
    run: Run,
    out: Path,
    say: Callable[[str], None],
    env: dict[str, str] | None = None,
    stop: threading.Event | None = None,
) -> str | None:
    """Runs one grid point's (or baseline's) unfinished stages as `python -m nas` subprocesses, one after
    another, each logged to `out/logs/<id>.<stage>.log`. Every executor runs a point through this function,
    so what a stage runs and when it is skipped or resumed is decided here only.

    Returns None when every stage finished, else a failure message; raises `StageKilled` when a stage's
    process was killed by a signal. `env` is the stages' environment (None: this process's); once `stop` is
    set, no further stage starts. Each stage dies with this process (nas/core/lifeline.py): a killed driver
    leaves no orphan holding the run directory's lock.
    """
    for stage in stages(spec, run):
        if stop is not None and stop.is_set():
            return f"{run.id}: interrupted"
        step = stage_command(spec, run, stage, out)
        if step is None:
            say(f"{run.id}: {stage} finished before, skipped")
            continue
        what, args = step
        gpu = (env or {}).get("CUDA_VISIBLE_DEVICES")
        say(f"{run.id}: {stage} {what}" + (f" on GPU {gpu}" if gpu else ""))
        log = out / "logs" / f"{run.id}.{stage}.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        start = time.perf_counter()
        with open(log, "a") as f:
            cmd = [sys.executable, "-m", "nas", *args]
            f.write(f"# {socket.gethostname()}, pid {os.getpid()}\n$ {shlex.join(cmd)}\n")
            f.flush()
            rc = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, env=lifeline_env(env)).returncode
        if rc < 0:
            raise StageKilled(f"{run.id}: {stage} was killed by signal {-rc}; see {log}")
        if rc != 0:
            return f"{run.id}: {stage} exited with code {rc}; see {log}"
        say(f"{run.id}: {stage} finished in {time.perf_counter() - start:.0f}s")
    return None
