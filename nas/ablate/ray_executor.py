"""The `ray` executor: each grid point (its search, rank and proxy stages; a baseline's retrain) is one Ray
task that asks for `executor.cpus` CPUs and `executor.gpus` GPUs, so Ray, not `nas`, decides where and how
many run at once: on a Ray instance started for the run (`executor.address` null, a laptop with no setup) or
on a cluster (`auto`: the one this node belongs to, or RAY_ADDRESS; `HOST:6379`).

A task runs `nas.ablate.launch.run_point` on its worker, the same function the local executor runs, so a
finished stage is skipped and a checkpointed one resumed there too. Ray retries a task whose worker was
lost (node died, OOM, pre-emption) or whose stage was killed by a signal up to `executor.retries` times,
and the retry resumes from the last checkpoint. When a worker dies, its stage subprocess dies with it
(nas/core/lifeline.py), so a retry never finds the run directory still held. The workers read and write the
run directories at the same paths as this process (relative paths from its working directory): on a
cluster `out_dir`, the configs and the data must be on a file system that every node mounts at one path.

Stage messages and the start of each task reach this process through a small actor (`_Tracker`); the
progress line counts points done / running / failed as the local executor's does.
"""

from __future__ import annotations

import contextlib
import os
import socket
from pathlib import Path
from typing import Any

from nas.ablate.executors import EXECUTORS, Progress
from nas.ablate.launch import StageKilled, run_point
from nas.ablate.spec import AblationConfig, Run
from nas.core.errors import UserError

INSTALL = 'pip install -e ".[ray]"'


class _Tracker:
    """Collects (point index, message) events from the tasks; message None = the task started."""

    def __init__(self) -> None:
        self.events: list[tuple[int, str | None]] = []

    def post(self, index: int, message: str | None) -> None:
        self.events.append((index, message))

    def drain(self) -> list[tuple[int, str | None]]:
        events, self.events = self.events, []
        return events


def _point_task(spec: AblationConfig, run: Run, out: Path, cwd: str, index: int, gpus: float, tracker: Any):
    """One point on a Ray worker: `run_point` from the driver's working directory, with the environment
    of the resources Ray gave the task."""
    import ray

    host = socket.gethostname()
    if not os.path.isdir(cwd):
        raise RuntimeError(
            f"{cwd} does not exist on {host}: the ablation's directories must be on a file system that every "
            "Ray node mounts at the same path"
        )
    # the posts are waited for only at the end: a task blocked in ray.get hands its CPUs back and Ray may
    # start another; at the end that costs nothing, and the driver then sees every message before the result
    posts = [tracker.post.remote(index, None)]
    env = dict(os.environ, OMP_NUM_THREADS=str(max(1, int(spec.executor.cpus))))
    if not gpus:  # Ray leaves CUDA_VISIBLE_DEVICES alone for a task that asked for no GPU
        env["CUDA_VISIBLE_DEVICES"] = ""
    before = os.getcwd()
    os.chdir(cwd)  # one task at a time per worker; restored for the next task
    try:
        say = lambda m: posts.append(tracker.post.remote(index, f"{m} [{host}]"))  # noqa: E731
        return run_point(spec, run, out, say, env)
    finally:
        os.chdir(before)
        with contextlib.suppress(ray.exceptions.RayError):  # a lost tracker loses messages, not the point
            ray.get(posts)


def _check_reachable(address: str) -> None:
    """A `HOST:PORT` address that refuses connections stops the command in one line: `ray.init` would
    retry it for minutes."""
    host, _, port = address.rpartition(":")
    if "://" in address or not port.isdigit() or not host:
        return  # `auto`, `ray://...`: Ray's own checks answer quickly
    try:
        socket.create_connection((host, int(port)), timeout=10).close()
    except OSError as exc:
        raise UserError(
            f"cannot reach the Ray cluster at {address} ({exc.strerror or exc}); start its head with "
            "`ray start --head` or set executor.address"
        ) from None


def _failure(run: Run, exc: Exception) -> str:
    """One line for a task that failed for good (after Ray's retries)."""
    cause = getattr(exc, "cause", None)
    if isinstance(cause, StageKilled):
        return str(cause)
    what = cause if isinstance(cause, Exception) else exc
    text = (str(what).strip().splitlines() or [""])[0]
    return f"{run.id}: {type(what).__name__}: {text}"


@EXECUTORS.register("ray")
class RayExecutor:
    """Each point a Ray task; see the module docstring."""

    def __init__(self, spec: AblationConfig):
        try:
            import ray  # noqa: F401
        except ImportError:
            raise UserError(f"executor.name=ray needs Ray, which is not installed: {INSTALL}") from None
        ex = spec.executor
        if not ex.cpus > 0:
            raise UserError(f"executor.cpus must be > 0, got {ex.cpus}")
        if ex.gpus is not None and ex.gpus < 0:
            raise UserError(f"executor.gpus must be >= 0 (or null), got {ex.gpus}")
        if ex.retries < 0:
            raise UserError(f"executor.retries must be >= 0, got {ex.retries}")
        if ex.address:
            _check_reachable(ex.address)
        self.spec = spec

    def _connect(self) -> None:
        import ray

        # "local": a new instance even where `ray start` left one on this machine (which ray.init() would join);
        # log_to_driver off: the stages log to out_dir/logs, their messages come through the tracker
        address = self.spec.executor.address or "local"
        try:
            ray.init(address=address, include_dashboard=False, log_to_driver=False)
        except ConnectionError as exc:
            raise UserError(f"cannot connect to Ray at {address}: {exc}") from None

    def run(self, runs: list[Run], out: Path) -> list[str]:
        import ray

        self._connect()
        pending: dict[Any, int] = {}  # task -> index of its point
        try:
            ex = self.spec.executor
            gpus = ex.gpus if ex.gpus is not None else float(ray.cluster_resources().get("GPU", 0) >= 1)
            # restarted (empty) if Ray kills it, e.g. its memory monitor when the node runs short
            tracker = ray.remote(_Tracker).options(num_cpus=0, max_restarts=-1, max_task_retries=-1).remote()
            task = ray.remote(_point_task).options(
                num_cpus=ex.cpus, num_gpus=gpus, max_retries=ex.retries, retry_exceptions=[StageKilled]
            )
            cwd = os.getcwd()
            pending.update(
                {task.remote(self.spec, r, out, cwd, i, gpus, tracker): i for i, r in enumerate(runs)}
            )
            return self._wait(pending, runs, tracker)
        except (KeyboardInterrupt, SystemExit):  # Ctrl-C; SIGTERM (ray.init makes it a SystemExit)
            for ref in pending:
                ray.cancel(ref, force=True)  # kills the worker, and its stage with it (the death signal)
            raise
        finally:
            ray.shutdown()

    def _wait(self, pending: dict[Any, int], runs: list[Run], tracker: Any) -> list[str]:
        """Prints the tasks' messages and the progress line until every task has ended."""
        import ray

        progress, failures = Progress(len(runs)), []
        try:
            while pending:
                ready, _ = ray.wait(list(pending), num_returns=1, timeout=0.5)
                try:
                    events = ray.get(tracker.drain.remote())
                except ray.exceptions.RayError:  # the tracker is being restarted: its messages are lost
                    events = []
                for index, message in events:
                    if message is None:
                        progress.started(index)
                    else:
                        progress.say(index, message)
                for ref in ready:
                    index = pending.pop(ref)
                    try:
                        failure = ray.get(ref)
                    except ray.exceptions.RayError as exc:
                        failure = _failure(runs[index], exc)
                    progress.finished(index, failure)
                    failures += [failure] if failure else []
        finally:
            progress.close()
        return failures
