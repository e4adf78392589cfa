"""Running an ablation's stages (`nas ablate`): one subprocess per stage, `jobs` runs at once.

Each grid point runs `python -m nas search` into `out_dir/runs/<id>`; with baselines,
`python -m nas rank` (its supernet's accuracy of every baseline and of its own cell) into
`out_dir/rank/<id>.json`; then `python -m nas train --genotype` (the proxy retrain) into
`out_dir/proxy/<id>`. A baseline runs the proxy retrain only. A stage that finished (its last file exists) is skipped,
one with a checkpoint resumes with `--resume`, and one killed before its first checkpoint starts over, so
an interrupted ablation loses at most one epoch per run. Where CUDA GPUs exist each job gets its own
(round robin over CUDA_VISIBLE_DEVICES or all devices); on a CPU the cores are shared between the jobs.
"""

from __future__ import annotations

import os
import queue
import shlex
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
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
    proxy_args,
)
from nas.checkpoint import CHECKPOINT
from nas.config import SearchRunConfig, load_config
from nas.rundir import CONFIG_FILE


def stages(spec: AblationConfig, run: Run) -> list[str]:
    proxy = ["proxy"] * (spec.proxy_train is not None)
    if run.is_baseline:  # judged by its proxy retrain, or only looked up in the ground truth
        return proxy
    return ["search"] + ["rank"] * (spec.baselines is not None) + proxy


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
    run_dir = out / ("runs" if stage == "search" else "proxy") / run.id
    if (run_dir / DONE[stage]).is_file():
        return None
    if (run_dir / CHECKPOINT).is_file():
        return "resumed", [stage if stage == "search" else "train", "--resume", str(run_dir)]
    # a directory without a checkpoint (killed in its first epoch) is cleared by the command itself, once it
    # holds the directory's lock: never while another process may be running there
    if stage == "search":
        return "started", [
            "search",
            "--config",
            str(out / BASE_SEARCH),
            *run.search_args,
            f"out_dir={run_dir}",
        ]
    if run.is_baseline:
        search_cfg, seed = base_search_config(spec, plan(spec), out), spec.baselines.seed
        genotype = baseline_genotype(spec, run, out)
    else:
        search_cfg, seed = load_config(SearchRunConfig, out / "runs" / run.id / CONFIG_FILE), None
        genotype = str(out / "runs" / run.id)
    args = [*proxy_args(spec, search_cfg, seed), f"out_dir={run_dir}"]
    return "started", ["train", "--genotype", genotype, "--config", str(out / BASE_TRAIN), *args]


class _Launcher:
    """Runs each run's stages as subprocesses, `jobs` at once, one GPU per job where GPUs exist."""

    def __init__(self, spec: AblationConfig, out: Path, total: int):
        import torch

        self.spec, self.out, self.total = spec, out, total
        visible = os.environ.get("CUDA_VISIBLE_DEVICES")
        gpus = [g for g in visible.split(",") if g] if visible is not None else []
        if visible is None and torch.cuda.is_available():
            gpus = [str(i) for i in range(torch.cuda.device_count())]
        self.gpus: queue.Queue[str] = queue.Queue()
        for i in range(spec.jobs):
            self.gpus.put(gpus[i % len(gpus)] if gpus else "")
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.threads = str(max(1, (os.cpu_count() or 1) // spec.jobs))

    def say(self, index: int, message: str) -> None:
        with self.lock:
            print(f"[{index + 1}/{self.total}] {message}", file=sys.stderr, flush=True)

    def env(self, gpu: str) -> dict[str, str]:
        env = dict(os.environ)
        if gpu:
            env["CUDA_VISIBLE_DEVICES"] = gpu
        if self.spec.jobs > 1 and "OMP_NUM_THREADS" not in env:  # share the CPU cores between the jobs
            env["OMP_NUM_THREADS"] = self.threads
        return env

    def __call__(self, index: int, run: Run) -> str | None:
        """Runs one grid point's stages; returns a failure message, or None."""
        gpu = self.gpus.get()
        try:
            for stage in stages(self.spec, run):
                if self.stop.is_set():
                    return f"{run.id}: interrupted"
                step = stage_command(self.spec, run, stage, self.out)
                if step is None:
                    self.say(index, f"{run.id}: {stage} finished before, skipped")
                    continue
                what, args = step
                self.say(index, f"{run.id}: {stage} {what}" + (f" on GPU {gpu}" if gpu else ""))
                log = self.out / "logs" / f"{run.id}.{stage}.log"
                log.parent.mkdir(parents=True, exist_ok=True)
                start = time.perf_counter()
                with open(log, "a") as f:
                    cmd = [sys.executable, "-m", "nas", *args]
                    f.write("$ " + shlex.join(cmd) + "\n")
                    f.flush()
                    rc = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, env=self.env(gpu)).returncode
                if rc != 0:
                    return f"{run.id}: {stage} exited with code {rc}; see {log}"
                self.say(index, f"{run.id}: {stage} finished in {time.perf_counter() - start:.0f}s")
            return None
        finally:
            self.gpus.put(gpu)


def execute(spec: AblationConfig, runs: list[Run], out: Path) -> list[str]:
    """Run every stage that has not finished; returns the failure messages."""
    launcher = _Launcher(spec, out, len(runs))
    pool = ThreadPoolExecutor(max_workers=spec.jobs)
    futures = [pool.submit(launcher, i, run) for i, run in enumerate(runs)]
    try:
        failures = [msg for msg in (f.result() for f in futures) if msg]
    except KeyboardInterrupt:
        launcher.stop.set()  # the subprocesses got the same SIGINT; start no new ones
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    pool.shutdown()
    return failures
