"""`nas ablate` executors: the registry and its checks, the progress line, and the Ray executor for real on a
local Ray instance, with one task's worker killed mid-run (Ray retries the point, which resumes from its
checkpoint and ends exactly where the untouched point ends)."""

from __future__ import annotations

import contextlib
import importlib.util
import io
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from nas.ablate import executors
from nas.ablate import spec as ablate
from nas.cli import main
from tests.conftest import ROOT
from tests.test_ablate import ENV, TINY, nas, read_csv, write_ablation

needs_ray = pytest.mark.skipif(
    importlib.util.find_spec("ray") is None, reason='Ray is not installed (pip install -e ".[ray]")'
)


def test_every_executor_is_registered_and_local_is_the_default():
    assert executors.EXECUTORS.names() == ["local", "ray"]
    assert ablate.AblationConfig().executor.name == "local"
    assert isinstance(executors.open_executor(ablate.AblationConfig(jobs=2)), executors.LocalExecutor)


def test_progress_counts_points_done_running_failed():
    stream = io.StringIO()  # not a terminal: one line per change
    progress = executors.Progress(3, stream)
    progress.started(0)
    progress.started(1)
    progress.started(1)  # a retried task starts again: still one point running
    progress.say(1, "b: search started")
    progress.finished(0, None)
    progress.finished(1, "b: search exited with code 1")
    assert stream.getvalue().splitlines() == [
        "ablate: 0/3 points done, 1 running, 0 failed",
        "ablate: 0/3 points done, 2 running, 0 failed",
        "[2/3] b: search started",
        "ablate: 1/3 points done, 1 running, 0 failed",
        "ablate: 1/3 points done, 0 running, 1 failed",
    ]


def test_progress_on_a_terminal_keeps_the_counts_on_one_line_under_the_messages():
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    stream = Terminal()
    progress = executors.Progress(2, stream)
    progress.started(0)
    progress.say(0, "a: search started")
    progress.finished(0, None)
    progress.close()
    clear = "\r\033[K"
    assert stream.getvalue() == (
        f"{clear}ablate: 0/2 points done, 1 running, 0 failed"
        f"{clear}[1/2] a: search started\nablate: 0/2 points done, 1 running, 0 failed"
        f"{clear}ablate: 1/2 points done, 0 running, 0 failed\n"
    )


@pytest.mark.parametrize(
    "overrides,message",
    [
        (["executor.name=slurm"], "unknown executor 'slurm' (known: local, ray)"),
        (["executor.address=auto"], "executor.address is a Ray cluster's: set executor.name=ray too"),
        (
            ["executor.name=ray"],
            'executor.name=ray needs Ray, which is not installed: pip install -e ".[ray]"',
        ),
    ],
)
def test_bad_executor_stops_before_any_work_with_one_line(tmp_path, capsys, monkeypatch, overrides, message):
    monkeypatch.setitem(sys.modules, "ray", None)  # as if Ray were not installed: `import ray` fails
    path = write_ablation(tmp_path / "a.yaml", tmp_path / "out")
    assert main(["ablate", "--config", str(path), *overrides]) == 2
    err = capsys.readouterr().err
    assert err == f"nas: error: {message}\n"
    assert not (tmp_path / "out").exists()


@needs_ray
@pytest.mark.parametrize(
    "overrides,message",
    [
        (["executor.cpus=0"], "executor.cpus must be finite and in (0, 1024], got 0.0"),
        (["executor.gpus=-1"], "executor.gpus must be finite and in [0, 64], got -1.0"),
        (["executor.retries=-1"], "executor.retries must be in [0, 100], got -1"),
        (
            ["executor.address=127.0.0.1:1"],
            "cannot reach the Ray cluster at 127.0.0.1:1 (Connection refused)",
        ),
    ],
)
def test_bad_ray_options_stop_before_any_work_with_one_line(tmp_path, capsys, overrides, message):
    path = write_ablation(tmp_path / "a.yaml", tmp_path / "out")
    assert main(["ablate", "--config", str(path), "executor.name=ray", *overrides]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"nas: error: {message}") and err.count("\n") == 1
    assert not (tmp_path / "out").exists()


@needs_ray
def test_a_point_that_failed_for_good_is_one_line():
    import ray

    from nas.ablate.launch import StageKilled
    from nas.ablate.ray_executor import _failure

    run = ablate.Run("p", {}, "p", [])
    killed = StageKilled("p: search was killed by signal 9; see out/logs/p.search.log")
    wrapped = ray.exceptions.RayTaskError("_point_task", "Traceback ...\nStageKilled: ...", killed)
    assert _failure(run, wrapped) == str(killed)
    lost = _failure(run, ray.exceptions.WorkerCrashedError())
    assert lost.startswith("p: WorkerCrashedError: ") and "\n" not in lost


def _attempts(log: Path) -> list[tuple[int, str]]:
    """(worker pid, nas command) of every attempt at a stage, from its log's headers."""
    text = log.read_text() if log.is_file() else ""
    return [(int(pid), cmd) for pid, cmd in re.findall(r"^# .*, pid (\d+)\n\$ (.*)$", text, re.MULTILINE)]


@needs_ray
def test_ray_executor_retries_a_killed_worker_and_its_point_resumes_to_the_same_result(tmp_path):
    """Two grid points that compute the same thing (`name` changes no number) on a local Ray instance; the
    worker running `killed` is SIGKILLed after its first epoch's checkpoint. Ray retries that point, its
    search resumes, and both points end with the same alphas, metrics and proxy accuracy; a rerun then
    skips every finished stage."""
    out = tmp_path / "out"
    overrides = {**TINY["overrides"], "search.epochs": 2}
    path = write_ablation(tmp_path / "a.yaml", out, grid={"name": ["kept", "killed"]}, baselines=None,
                          overrides=overrides, executor={"name": "ray", "retries": 2})  # fmt: skip
    killed = out / "runs" / "name-killed"
    log = open(tmp_path / "ablate.log", "w")
    cmd = [sys.executable, "-m", "nas", "ablate", "--config", str(path)]
    proc = subprocess.Popen(cmd, cwd=ROOT, env=ENV, stdout=log, stderr=log, start_new_session=True)
    try:
        deadline = time.monotonic() + 600  # generous: a loaded 2-core machine runs this 5-10x slower
        while not (killed / "checkpoints" / "last.pt").is_file():
            assert proc.poll() is None, (tmp_path / "ablate.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "the killed point wrote no checkpoint within 600 s"
            time.sleep(0.01)
        assert not (killed / "alphas.json").is_file()
        [(worker, _)] = _attempts(out / "logs" / "name-killed.search.log")
        os.kill(worker, signal.SIGKILL)  # the Ray worker process running the point: a lost worker
        proc.wait(timeout=600)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        log.close()
    stderr = (tmp_path / "ablate.log").read_text()
    assert proc.returncode == 0, stderr[-3000:]
    assert (
        "name-killed: search resumed" in stderr and "ablate: 2/2 points done, 0 running, 0 failed" in stderr
    )
    (_, first), (retry, again) = _attempts(out / "logs" / "name-killed.search.log")
    assert retry != worker and "--resume" not in first and again.endswith(f"search --resume {killed}")

    kept = out / "runs" / "name-kept"
    assert json.loads((killed / "alphas.json").read_text()) == json.loads((kept / "alphas.json").read_text())

    def numbers(run_dir: Path) -> list[dict]:  # every epoch's metrics but its timing
        lines = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
        return [{k: v for k, v in m.items() if k not in ("epoch_time", "images_per_s")} for m in lines]

    assert len(numbers(killed)) == 2 and numbers(killed) == numbers(kept)
    rows = read_csv(out / "results.csv")
    assert [(r["search"], r["proxy"]) for r in rows] == [("done", "done")] * 2
    assert rows[0]["proxy_test_acc"] == rows[1]["proxy_test_acc"] != ""

    files = {p: p.stat().st_mtime_ns for d in ("runs", "proxy") for p in (out / d).rglob("*") if p.is_file()}
    again = nas("ablate", "--config", str(path), timeout=600)
    assert again.returncode == 0, again.stderr[-3000:]
    for point in ("kept", "killed"):
        for stage in ("search", "proxy"):
            assert f"name-{point}: {stage} finished before, skipped" in again.stderr
    assert {p: p.stat().st_mtime_ns for p in files} == files
    assert yaml.safe_load((out / "ablation.yaml").read_text())["executor"]["name"] == "ray"
