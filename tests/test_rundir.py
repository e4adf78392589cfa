"""Run directories: one run per directory (a lock held for the run's life, stale locks broken), no dead
ends (a run that died before its first checkpoint is started over), resumes that may change only what
keeps the run the same, and faults (NaN loss, full disk) that stop a run in one line, keeping its last
good checkpoint."""

import errno
import json
import os
import shutil
import socket
import subprocess
import sys
import time

import pytest
import torch
import yaml

import nas.run.checkpoint
from nas.cli import main
from nas.config import SearchRunConfig, TrainRunConfig
from nas.core.errors import UserError
from nas.core.rundir import LOCK, acquire, claim, decide, release
from nas.run.checkpoint import CHECKPOINT, load_checkpoint
from nas.search.runner import SearchRunner
from tests.conftest import ROOT, TINY_SEARCH

TINY_CONFIG = str(ROOT / "configs/search/tiny_synthetic.yaml")
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def _copy(finished_search, tmp_path, name="run"):
    shutil.copytree(finished_search, tmp_path / name)
    return tmp_path / name


def _epochs(run):
    return [json.loads(line)["epoch"] for line in (run / "metrics.jsonl").read_text().splitlines()]


# --- one run per directory ----------------------------------------------------------------------------------


def test_a_directory_in_use_is_refused_and_left_alone(tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    lock = acquire(out)
    try:
        code = main(["search", "--config", TINY_CONFIG, *TINY_SEARCH, f"out_dir={out}"])
        err = capsys.readouterr().err
        assert code == 2 and err.count("\n") == 1
        assert f"is in use by pid {os.getpid()} on {socket.gethostname()}" in err
        assert sorted(p.name for p in out.iterdir()) == [LOCK]
    finally:
        release(lock)
    assert not any(out.iterdir())


def test_derive_from_a_run_still_being_written_is_refused_and_rewrites_nothing(
    finished_search, tmp_path, capsys
):
    run = _copy(finished_search, tmp_path)
    before = {p: p.read_bytes() for p in run.rglob("*") if p.is_file()}
    lock = acquire(run)  # as the search still writing the run holds it
    try:
        code = main(["derive", str(run)])
        err = capsys.readouterr().err
        assert code == 2 and err.count("\n") == 1 and "Traceback" not in err
        assert f"run {run} is in use by pid {os.getpid()}" in err
    finally:
        release(lock)
    assert {p: p.read_bytes() for p in run.rglob("*") if p.is_file()} == before
    assert main(["derive", str(run)]) == 0  # once the run has stopped: derived, and the lock let go
    assert not (run / LOCK).exists()


def test_a_lock_of_a_dead_process_is_broken_one_of_another_host_is_not(tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    out = tmp_path / "run"
    out.mkdir()
    stale = {"pid": dead.pid, "host": socket.gethostname(), "since": "earlier", "command": "nas search"}
    (out / LOCK).write_text(json.dumps(stale))
    with claim(out, resume=False, done="alphas.json", schema=SearchRunConfig) as run:
        assert json.loads((out / LOCK).read_text())["pid"] == os.getpid() and not run.resume
    assert not (out / LOCK).exists()

    elsewhere = {**stale, "host": "another-host", "pid": 1}
    (out / LOCK).write_text(json.dumps(elsewhere))
    with pytest.raises(UserError, match="in use by pid 1 on another-host.*delete"):
        acquire(out)
    assert json.loads((out / LOCK).read_text()) == elsewhere


RACER = """
import sys, time
from pathlib import Path
from nas.core.errors import UserError
from nas.core.rundir import acquire, release
time.sleep(max(0.0, float(sys.argv[2]) - time.time()))
try:
    lock = acquire(Path(sys.argv[1]))
except UserError:
    sys.exit(2)
time.sleep(1.5)
release(lock)
"""


def test_processes_claiming_at_the_same_moment_get_one_winner(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    start = time.time() + 1.0
    procs = [
        subprocess.Popen([sys.executable, "-c", RACER, str(out), str(start)], cwd=ROOT) for _ in range(6)
    ]
    codes = sorted(p.wait(timeout=60) for p in procs)
    assert codes == [0, 2, 2, 2, 2, 2]
    assert not any(out.iterdir())


@pytest.mark.slow  # two processes importing torch and searching: the claim itself is tested above, in seconds
def test_two_searches_started_together_on_one_directory_do_not_mix(tmp_path):
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "nas", "search", "--config", TINY_CONFIG, *TINY_SEARCH, f"out_dir={out}",
           "search.epochs=1"]  # fmt: skip
    procs = [subprocess.Popen([*cmd, f"seed={seed}"], cwd=ROOT, env=ENV, stderr=subprocess.PIPE, text=True)
             for seed in (1, 2)]  # fmt: skip
    results = [(p.wait(timeout=300), p.stderr.read()) for p in procs]
    assert sorted(code for code, _ in results) == [0, 2], results
    winner = 1 + [code for code, _ in results].index(0)
    loser = next(err for code, err in results if code == 2)
    assert "is in use by pid" in loser or "holds a run" in loser
    assert yaml.safe_load((out / "config.yaml").read_text())["seed"] == winner
    assert _epochs(out) == [0]


# --- no dead ends ---------------------------------------------------------------------------------------------


def _kill_before_first_checkpoint(run):
    """What a run killed in its first epoch leaves: config, partial logs, a torn temp file, no checkpoint."""
    for name in ("alphas.json", "genotype.png", CHECKPOINT):
        (run / name).unlink()
    (run / ".genotype.json.0badc0de.tmp").write_bytes(b"torn")


def test_a_run_killed_before_its_first_checkpoint_can_be_resumed(finished_search, tmp_path, capsys):
    run = _copy(finished_search, tmp_path)
    _kill_before_first_checkpoint(run)
    assert main(["search", "--resume", str(run)]) == 0
    assert "stopped before its first checkpoint: starting it over" in capsys.readouterr().err
    assert _epochs(run) == [0] and (run / "alphas.json").is_file() and (run / CHECKPOINT).is_file()
    assert not list(run.glob(".*.tmp")) and not (run / LOCK).exists()


def test_what_a_directory_holds_decides_how_a_run_starts(finished_search, tmp_path):
    dead = _copy(finished_search, tmp_path, "dead")
    _kill_before_first_checkpoint(dead)
    assert (
        decide(dead, resume=False, done="alphas.json", schema=SearchRunConfig) is False
    )  # new run: starts over
    assert not any(dead.iterdir())
    dead_train = _copy(finished_search, tmp_path, "dead_train")
    _kill_before_first_checkpoint(dead_train)
    with pytest.raises(UserError, match="another command's run"):  # a search is never cleared by a retrain
        decide(dead_train, resume=False, done="metrics.json", schema=TrainRunConfig)
    (dead_train / "notes.txt").write_text("mine")
    with pytest.raises(UserError, match="files no run wrote: notes.txt"):
        decide(dead_train, resume=False, done="alphas.json", schema=SearchRunConfig)
    finished = _copy(finished_search, tmp_path, "finished")
    (finished / CHECKPOINT).unlink()
    with pytest.raises(UserError, match="holds a finished run"):
        decide(finished, resume=False, done="alphas.json", schema=SearchRunConfig)
    assert (finished / "alphas.json").is_file() and (dead_train / "config.yaml").is_file()


def test_a_resume_records_its_overrides_clears_torn_files_and_stops_on_nan(
    finished_search, tmp_path, capsys, monkeypatch
):
    """Resumed with more epochs: a temp file torn by a kill during the checkpoint write is removed, the
    accepted overrides are written into config.yaml; epoch 1 runs, epoch 2's loss is NaN: the run stops in
    one line before logging or checkpointing it, and epoch 1's checkpoint stays."""
    run = _copy(finished_search, tmp_path)
    torn = run / "checkpoints" / ".last.pt.1234abcd.tmp"
    torn.write_bytes(b"half a checkpoint")
    run_epoch = SearchRunner.run_epoch

    def nan_in_epoch_2(self, epoch, max_steps=None):
        record = run_epoch(self, epoch, max_steps)
        return {**record, "train_loss": float("nan")} if epoch == 2 else record

    monkeypatch.setattr(SearchRunner, "run_epoch", nan_in_epoch_2)
    same_dir = f"out_dir={os.path.relpath(run)}"  # its own directory, spelled another way: accepted
    assert main(["search", "--resume", str(run), "search.epochs=3", "progress_every=7", same_dir]) == 2
    err = capsys.readouterr().err
    assert err.count("nas: error:") == 1 and "Traceback" not in err
    assert "diverged in epoch 2: train_loss is nan" in err and "the last good checkpoint" in err
    assert _epochs(run) == [0, 1] and load_checkpoint(run / CHECKPOINT)["epoch"] == 2 and not torn.exists()
    saved = yaml.safe_load((run / "config.yaml").read_text())
    assert saved["search"]["epochs"] == 3 and saved["progress_every"] == 7 and saved["out_dir"] == str(run)
    assert saved["_meta"]["resumed"][0]["changed"]["search.epochs"] == [1, 3]
    first = yaml.safe_load((finished_search / "config.yaml").read_text())["_meta"]
    assert saved["_meta"]["git_commit"] == first["git_commit"]


def test_a_full_disk_keeps_the_previous_checkpoint_and_says_so(
    finished_search, tmp_path, capsys, monkeypatch
):
    run = _copy(finished_search, tmp_path)
    good = (run / CHECKPOINT).read_bytes()

    def full_disk(path, write):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))

    monkeypatch.setattr(nas.run.checkpoint, "atomic_write", full_disk)
    assert main(["search", "--resume", str(run), "search.epochs=2"]) == 2
    err = capsys.readouterr().err
    assert err.count("nas: error:") == 1 and "Traceback" not in err  # after the epoch's console line
    assert "No space left on device; the previous checkpoint is kept" in err
    assert f"resume with nas search --resume {run}" in err
    assert (run / CHECKPOINT).read_bytes() == good and load_checkpoint(run / CHECKPOINT)["epoch"] == 1
    assert not list((run / "checkpoints").glob(".*.tmp"))


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only directories")
def test_a_read_only_out_dir_is_one_line(tmp_path, capsys):
    out = tmp_path / "ro"
    out.mkdir()
    out.chmod(0o555)
    try:
        assert main(["search", "--config", TINY_CONFIG, *TINY_SEARCH, f"out_dir={out}"]) == 2
        assert "cannot write in out_dir" in capsys.readouterr().err
    finally:
        out.chmod(0o755)


def test_config_yaml_names_the_cpu_and_threads_that_produced_the_run(finished_search):
    """Another CPU model, vector ISA or thread count sums floats in another order (the same seed can derive
    another cell), so the run records them beside the library versions."""
    meta = yaml.safe_load((finished_search / "config.yaml").read_text())["_meta"]
    cpu = meta["cpu"]
    assert cpu["capability"] == torch.backends.cpu.get_cpu_capability()
    assert cpu["threads"] == torch.get_num_threads() and cpu["threads"] >= 1
    assert cpu["model"] is None or (isinstance(cpu["model"], str) and cpu["model"])
