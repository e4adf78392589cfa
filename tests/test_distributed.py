"""Scale-out under torchrun (gloo, 2 CPU processes, tiny settings): search, retrain, a worker killed by
SIGKILL, and the collective helpers of `nas.run.distributed` on their own."""

import json
import os
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import pytest
import torch
import torch.distributed as tdist
import torch.multiprocessing as mp
import torch.nn as nn

from nas.config import SearchRunConfig, load_config, to_yaml
from nas.core.errors import UserError
from nas.run import distributed
from tests.conftest import ROOT, TINY_SEARCH, TINY_TRAIN

ENV = {**os.environ, "GLOO_SOCKET_IFNAME": "lo", "OMP_NUM_THREADS": "1"}
for _var in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "TORCHELASTIC_RESTART_COUNT"):
    ENV.pop(_var, None)
# 2 processes x 8 images (the tiny one-process batch of 16), 4 epochs of 8 steps
SEARCH = [*TINY_SEARCH, "device=cpu", "data.batch_size=8", "data.synthetic.train_size=256", "search.epochs=4"]
# runs `nas` like `-m nas` does, and afterwards every rank saves the alphas it holds
PROBE = """
import sys, torch
from nas.cli import main
from nas.search.runner import SearchRunner
run = SearchRunner.run
def probed(self):
    out = run(self)
    torch.save({k: v.detach().clone() for k, v in self.model.alphas.items()}, self.out_dir / f"rank{self.rank}.pt")
    return out
SearchRunner.run = probed
sys.exit(main(sys.argv[1:]))
"""


def _torchrun(*args: str, restarts: int = 0) -> list[str]:
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    return [*launcher, "--max-restarts", str(restarts), *args]


def _search_args(out_dir: Path) -> list[str]:
    return [
        "search",
        "--config",
        str(ROOT / "configs/search/tiny_synthetic.yaml"),
        *SEARCH,
        f"out_dir={out_dir}",
    ]


def _epochs(out_dir: Path) -> list[int]:
    return [json.loads(line)["epoch"] for line in (out_dir / "metrics.jsonl").read_text().splitlines()]


def _valid_genotype(out_dir: Path) -> None:
    from nas.arch.space import resolve_genotype  # validates against its space; raises on a bad file

    assert resolve_genotype(str(out_dir)).space == "darts"


@pytest.fixture(scope="module")
def search_run(tmp_path_factory) -> Path:
    """An uninterrupted 2-process search; each rank saved its final alphas as rank{r}.pt."""
    tmp = tmp_path_factory.mktemp("dist_search")
    (tmp / "probe.py").write_text(PROBE)
    out = tmp / "run"
    done = subprocess.run(_torchrun(str(tmp / "probe.py"), *_search_args(out)), cwd=ROOT, env=ENV,
                          capture_output=True, text=True, timeout=600)  # fmt: skip
    assert done.returncode == 0, done.stderr[-4000:]
    return out


# --- end to end under torchrun ----------------------------------------------------------------------------


@pytest.mark.slow
def test_two_process_search_ranks_hold_bitwise_identical_alphas(search_run):
    ranks = [torch.load(search_run / f"rank{r}.pt") for r in (0, 1)]
    assert set(ranks[0]) == {"normal", "reduce"}
    for name in ranks[0]:
        assert torch.equal(ranks[0][name], ranks[1][name]), name
        assert not torch.equal(ranks[0][name], torch.zeros_like(ranks[0][name]))
    saved = json.loads((search_run / "alphas.json").read_text())["alphas"]
    for name, alpha in ranks[0].items():
        assert torch.equal(torch.tensor(saved[name], dtype=torch.float32), alpha)
    assert _epochs(search_run) == [0, 1, 2, 3]
    _valid_genotype(search_run)
    assert len(list((search_run / "tb").iterdir())) == 1  # rank 0 alone writes TensorBoard events


@pytest.mark.slow
def test_two_process_retrain_finishes(tmp_path):
    args = ["-m", "nas", "train", "--genotype", "zoo:DARTS_V2", *TINY_TRAIN, "device=cpu", "data.batch_size=8",
            "train.epochs=2", f"out_dir={tmp_path}"]  # fmt: skip
    done = subprocess.run(_torchrun(*args), cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-4000:]
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert 0.0 <= metrics["test_acc"] <= 100.0 and metrics["epochs"] == 2
    assert _epochs(tmp_path) == [0, 1]
    assert done.stdout.count("test accuracy") == 1  # only rank 0 reports


def _worker_pid(parent: int, rank: int) -> int | None:
    """The pid of torchrun's child process that has RANK=rank in its environment (Linux /proc)."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            if ppid == parent and f"RANK={rank}".encode() in (entry / "environ").read_bytes().split(b"\0"):
                return int(entry.name)
        except (OSError, IndexError, ValueError):
            continue
    return None


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="finds the worker through /proc")
def test_sigkilled_worker_group_restarts_resumes_and_matches_uninterrupted(tmp_path, search_run):
    out = tmp_path / "run"
    proc = subprocess.Popen(_torchrun("-m", "nas", *_search_args(out), restarts=1), cwd=ROOT, env=ENV,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
    deadline = time.time() + 300
    while not (out / "checkpoints" / "last.pt").is_file() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    if proc.poll() is not None:
        pytest.fail(f"the run ended before its first checkpoint:\n{proc.communicate()[1][-4000:]}")
    victim = _worker_pid(proc.pid, rank=0)  # rank 0: the one that writes checkpoints
    assert victim is not None, "no rank-0 worker found"
    os.kill(victim, signal.SIGKILL)
    _, stderr = proc.communicate(timeout=600)
    assert proc.returncode == 0, stderr[-4000:]
    assert "elastic restart 1: resuming" in stderr, "the kill came too late: make the run longer"
    assert _epochs(out) == [0, 1, 2, 3]
    _valid_genotype(out)
    # resumed from the checkpoint with every rank's own data streams: bitwise the uninterrupted run
    assert (out / "alphas.json").read_text() == (search_run / "alphas.json").read_text()


# --- collectives, in two spawned gloo processes -----------------------------------------------------------


def _check_collectives(dist: distributed.Distributed) -> None:
    distributed.BUCKET_BYTES = 32  # force several buckets
    k = float(dist.rank + 1)
    grads = [
        torch.full((3, 2), k),
        torch.full((5,), 10 * k, dtype=torch.float64),
        k * torch.arange(6.0).view(2, 3).t(),
    ]
    dist.all_reduce_grads(grads)
    assert torch.equal(grads[0], torch.full((3, 2), 1.5))
    assert grads[1].dtype == torch.float64 and torch.equal(
        grads[1], torch.full((5,), 15.0, dtype=torch.float64)
    )
    assert torch.equal(grads[2], 1.5 * torch.arange(6.0).view(2, 3).t())
    assert dist.all_reduce_sum(torch.tensor([k])).item() == 3.0
    torch.manual_seed(dist.rank)
    net = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4))
    net[1].running_mean.fill_(k)
    dist.broadcast_module(net)
    dist.check_identical(list(net.state_dict().values()), "weights and buffers")  # rank 0's everywhere
    assert net[1].running_mean[0].item() == 1.0
    with pytest.raises(RuntimeError, match="ranks hold different alphas"):
        dist.check_identical([torch.tensor([k])], "alphas")
    assert dist.broadcast_object({"rank": dist.rank}) == {"rank": 0}
    distributed.BUCKET_BYTES = 64 * 2**20


def _identity(self, x):
    return x


# no augmentation (its streams differ per rank) and BatchNorm as the identity (its statistics are per rank):
# what is left of a 1-process vs 2-process difference is float rounding
EQUIVALENT = [*TINY_SEARCH, "device=cpu", "data.crop_padding=0", "data.flip=false", "search.epochs=1"]


def _search(out_dir: Path, batch_size: int, dist: distributed.Distributed | None = None) -> None:
    import search_spaces  # noqa: F401
    from nas.arch.space import SPACES
    from nas.search.runner import SearchRunner

    cfg = load_config(
        SearchRunConfig, None, [*EQUIVALENT, f"data.batch_size={batch_size}", f"out_dir={out_dir}"]
    )
    SearchRunner(cfg, SPACES.get(cfg.space.name), out_dir, dist=dist).run()


def _worker(rank: int, init_file: str, out_dir: Path) -> None:
    torch.set_num_threads(1)
    tdist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=2)
    dist = distributed.Distributed(rank=rank, world_size=2, local_rank=rank, device=torch.device("cpu"),
                                   backend="gloo")  # fmt: skip
    _check_collectives(dist)
    nn.BatchNorm2d.forward = _identity  # this child process only
    _search(out_dir, 8, dist)
    dist.destroy()


@pytest.mark.slow
def test_collectives_and_two_process_search_equal_one_process_up_to_rounding(tmp_path, monkeypatch):
    (tmp_path / "p2").mkdir()
    mp.spawn(_worker, args=(str(tmp_path / "init"), tmp_path / "p2"), nprocs=2, join=True)
    monkeypatch.setattr(nn.BatchNorm2d, "forward", _identity)
    (tmp_path / "p1").mkdir()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as each worker: on a small shared CPU spinning threads slow a run 10x
    try:
        _search(tmp_path / "p1", 16)
    finally:
        torch.set_num_threads(threads)
    one, two = ({k: torch.tensor(v) for k, v in json.loads((tmp_path / p / "alphas.json").read_text())["alphas"].items()}
                for p in ("p1", "p2"))  # fmt: skip
    for name in one:
        assert one[name].abs().max() > 1e-4  # the alphas did move
        # two half-batch means summed round differently from one mean: close, not bitwise
        torch.testing.assert_close(two[name], one[name], rtol=0, atol=1e-6)
    genotype = [json.loads((tmp_path / p / "genotype.json").read_text())["cells"] for p in ("p1", "p2")]
    assert genotype[0] == genotype[1]


# --- one-process units ------------------------------------------------------------------------------------


def test_single_process_means_no_process_group(monkeypatch):
    monkeypatch.delenv("RANK", raising=False)
    assert distributed.init_distributed("cpu") is None
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("WORLD_SIZE", "1")
    assert distributed.init_distributed("cpu") is None  # torchrun --nproc_per_node 1: the plain path


def test_lr_scaling_rules_and_config_check():
    assert distributed.lr_scale("none", 8) == 1.0
    assert distributed.lr_scale("linear", 8) == 8.0
    assert distributed.lr_scale("sqrt", 4) == 2.0
    with pytest.raises(UserError, match="lr_scaling"):
        load_config(SearchRunConfig, None, ["lr_scaling=cubic"])


def test_buckets_split_by_dtype_and_size_and_keep_every_tensor():
    ts = [
        torch.zeros(4),
        torch.zeros(4, dtype=torch.float64),
        torch.zeros(4),
        torch.zeros(100),
        torch.zeros(1),
    ]
    buckets = list(distributed._buckets(ts, limit=32))
    assert sorted(id(t) for b in buckets for t in b) == sorted(id(t) for t in ts)
    assert all(len({t.dtype for t in b}) == 1 for b in buckets)
    assert [len(b) for b in buckets if b[0].dtype == torch.float32] == [2, 1, 1]  # 100 floats: alone


def test_sync_bn_needs_gpus():
    dist = distributed.Distributed(
        rank=0, world_size=2, local_rank=0, device=torch.device("cpu"), backend="gloo"
    )
    with pytest.raises(UserError, match="sync_bn"):
        dist.wrap(nn.Sequential(nn.Conv2d(1, 2, 1), nn.BatchNorm2d(2)), sync_bn=True)


def test_own_rank_state_picks_this_ranks_streams():
    state = {
        "data": "r0",
        "rng": "g0",
        "ranks": [{"data": "r0", "rng": torch.ones(2)}, {"data": "r1", "rng": "g1"}],
    }
    assert distributed.own_rank_state(state, 1, 2) == {"data": "r1", "rng": "g1"}
    assert distributed.own_rank_state({"data": "d", "rng": "g", "ranks": None}, 0, 1) == {
        "data": "d",
        "rng": "g",
    }
    with pytest.warns(UserWarning, match="resumed by 4"):
        assert distributed.own_rank_state(state, 0, 4)["data"] == "r0"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert distributed.own_rank_state(state, 3, 4)["data"] == "r1"  # only rank 0 warns


def _run_dir(tmp_path: Path, seed: int) -> SearchRunConfig:
    cfg = load_config(SearchRunConfig, None, [*TINY_SEARCH, f"out_dir={tmp_path}", f"seed={seed}"])
    tmp_path.mkdir(exist_ok=True)
    (tmp_path / "config.yaml").write_text(to_yaml(cfg, meta={"note": "provenance is ignored"}))
    (tmp_path / "tb").mkdir()
    (tmp_path / "metrics.jsonl").write_text('{"epoch": 0}\n')
    return cfg


def test_elastic_restart_resumes_own_run_only(tmp_path, monkeypatch):
    cfg = _run_dir(tmp_path, seed=0)
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / "last.pt").write_bytes(b"x")
    (tmp_path / "checkpoints" / ".last.pt.abc.tmp").write_bytes(b"torn")
    assert distributed.elastic_resume(cfg, "checkpoints/last.pt", None) is False  # first attempt
    monkeypatch.setenv("TORCHELASTIC_RESTART_COUNT", "1")
    assert distributed.elastic_resume(cfg, "checkpoints/last.pt", None) is True
    with distributed.run_dir(cfg.out_dir, True, None, "alphas.json", SearchRunConfig) as run:  # the claim
        assert run.resume
        assert not (tmp_path / "checkpoints" / ".last.pt.abc.tmp").exists()  # torn writes cleared
        assert (tmp_path / "checkpoints" / "last.pt").read_bytes() == b"x"
    other = load_config(SearchRunConfig, None, [*TINY_SEARCH, f"out_dir={tmp_path}", "seed=1"])
    with pytest.raises(UserError, match="different config"):
        distributed.elastic_resume(other, "checkpoints/last.pt", None)


def test_elastic_restart_before_first_checkpoint_starts_afresh(tmp_path, monkeypatch):
    cfg = _run_dir(tmp_path, seed=0)
    (tmp_path / ".genotype.json.k3j2.tmp").write_text("{")  # a worker killed inside an atomic write
    monkeypatch.setenv("TORCHELASTIC_RESTART_COUNT", "2")
    assert distributed.elastic_resume(cfg, "checkpoints/last.pt", None) is False
    (tmp_path / "notes.txt").write_text(
        "not ours"
    )  # a file no run writes: the claim refuses, deletes nothing
    with pytest.raises(UserError, match="not empty"):
        with distributed.run_dir(cfg.out_dir, False, None, "alphas.json", SearchRunConfig):
            pass
    assert (tmp_path / "metrics.jsonl").is_file() and (tmp_path / ".genotype.json.k3j2.tmp").is_file()
    (tmp_path / "notes.txt").unlink()
    with distributed.run_dir(cfg.out_dir, False, None, "alphas.json", SearchRunConfig) as run:  # the claim
        assert not run.resume
        # the dead attempt's outputs and its torn write are gone
        assert [p.name for p in tmp_path.iterdir() if p.name != ".nas.lock"] == []
