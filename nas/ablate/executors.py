"""Who runs an ablation's grid points: an executor registry (`executor.name` in the ablation file).

- `local` (default): threads here, each running a point's stages as subprocesses, `jobs` points at once, one
  GPU per job where GPUs exist (round robin over CUDA_VISIBLE_DEVICES or all devices); on a CPU the cores
  are shared between the jobs. Needs nothing beyond `nas`.
- `ray` (`nas.ablate.ray_executor`, `pip install -e ".[ray]"`): one Ray task per point, on a local Ray
  instance or a cluster.

An executor only schedules: every one runs a point with `nas.ablate.launch.run_point`, so the stages, their
commands and the skip / resume rules are the same whichever runs them. `Progress` is the live line they
share (points done / running / failed) with each stage's message above it.
"""

from __future__ import annotations

import os
import queue
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Protocol, TextIO

from nas.ablate.launch import StageKilled, run_point
from nas.ablate.spec import AblationConfig, Run
from nas.core.errors import UserError
from nas.core.registry import Registry


class Executor(Protocol):
    """Built from the ablation before any work (so a bad executor option or a missing package stops the
    command first), then `run` every given point; returns the failure messages."""

    def __init__(self, spec: AblationConfig) -> None: ...

    def run(self, runs: list[Run], out: Path) -> list[str]: ...


EXECUTORS: Registry[type[Executor]] = Registry("executor", plugins="nas.ablate.ray_executor")


def open_executor(spec: AblationConfig) -> Executor:
    """The ablation's executor, its options checked; raises UserError (unknown name, bad option, missing
    package)."""
    return EXECUTORS.get(spec.executor.name)(spec)


class Progress:
    """Points done / running / failed, and each stage's message, on stderr. On a terminal the counts are one
    line rewritten in place under the messages; elsewhere (a log file) a line is printed when they change."""

    def __init__(self, total: int, stream: TextIO | None = None):
        self.total, self.stream = total, stream or sys.stderr
        self.tty = self.stream.isatty()
        self.running: set[int] = set()
        self.done = self.failed = 0
        self.lock = threading.Lock()

    def line(self) -> str:
        return (
            f"ablate: {self.done}/{self.total} points done, {len(self.running)} running, {self.failed} failed"
        )

    def _write(self, message: str | None) -> None:
        if self.tty:  # clear the counts line, print the message above it, redraw the counts
            text = "\r\033[K" + (message + "\n" if message else "") + self.line()
        else:
            text = (message or self.line()) + "\n"
        self.stream.write(text)
        self.stream.flush()

    def say(self, index: int, message: str) -> None:
        with self.lock:
            self._write(f"[{index + 1}/{self.total}] {message}")

    def started(self, index: int) -> None:
        with self.lock:
            if index not in self.running:
                self.running.add(index)
                self._write(None)

    def finished(self, index: int, failure: str | None) -> None:
        with self.lock:
            self.running.discard(index)
            self.done += failure is None
            self.failed += failure is not None
            self._write(None)

    def close(self) -> None:
        if self.tty:
            self.stream.write("\n")
            self.stream.flush()


@EXECUTORS.register("local")
class LocalExecutor:
    """Each point's stages as subprocesses of this process, `jobs` points at once, one GPU per job where
    GPUs exist."""

    def __init__(self, spec: AblationConfig):
        import torch

        if spec.executor.address is not None:
            raise UserError("executor.address is a Ray cluster's: set executor.name=ray too")
        self.spec = spec
        visible = os.environ.get("CUDA_VISIBLE_DEVICES")
        gpus = [g for g in visible.split(",") if g] if visible is not None else []
        if visible is None and torch.cuda.is_available():
            gpus = [str(i) for i in range(torch.cuda.device_count())]
        self.gpus: queue.Queue[str] = queue.Queue()
        for i in range(spec.jobs):
            self.gpus.put(gpus[i % len(gpus)] if gpus else "")
        self.stop = threading.Event()
        self.threads = str(max(1, (os.cpu_count() or 1) // spec.jobs))

    def env(self, gpu: str) -> dict[str, str]:
        env = dict(os.environ)
        if gpu:
            env["CUDA_VISIBLE_DEVICES"] = gpu
        if self.spec.jobs > 1 and "OMP_NUM_THREADS" not in env:  # share the CPU cores between the jobs
            env["OMP_NUM_THREADS"] = self.threads
        return env

    def _point(self, progress: Progress, index: int, run: Run, out: Path) -> str | None:
        gpu = self.gpus.get()
        progress.started(index)
        failure: str | None = f"{run.id}: stopped by an error"
        try:
            failure = run_point(
                self.spec, run, out, lambda m: progress.say(index, m), self.env(gpu), self.stop
            )
        except StageKilled as exc:  # here nobody retries: a rerun resumes it
            failure = str(exc)
        finally:
            self.gpus.put(gpu)
            progress.finished(index, failure)
        return failure

    def run(self, runs: list[Run], out: Path) -> list[str]:
        progress = Progress(len(runs))
        pool = ThreadPoolExecutor(max_workers=self.spec.jobs)
        futures = [pool.submit(self._point, progress, i, run, out) for i, run in enumerate(runs)]
        try:
            failures = [msg for msg in (f.result() for f in futures) if msg]
        except KeyboardInterrupt:
            self.stop.set()  # the subprocesses got the same SIGINT; start no new ones
            pool.shutdown(wait=False, cancel_futures=True)
            raise
        finally:
            progress.close()
        pool.shutdown()
        return failures
