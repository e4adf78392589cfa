"""The bilevel loop: each step moves only its own parameters; same seed, same result; resume is exact."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest
import torch

import search_spaces  # noqa: F401
from nas.arch.space import SPACES
from nas.cli import main
from nas.config import SearchRunConfig, load_config
from nas.search.runner import SearchRunner
from tests.conftest import ROOT, TINY_SEARCH


def _runner(tmp_path, *overrides, resume=False):
    cfg = load_config(SearchRunConfig, None, TINY_SEARCH + [f"out_dir={tmp_path}", *overrides])
    return SearchRunner(cfg, SPACES.get(cfg.space.name), tmp_path, resume=resume)


def _snapshot(params):
    return [p.detach().clone() for p in params]


@pytest.mark.parametrize("sampler", ["softmax", "gumbel", "gumbel_st", "gdas"])
def test_architecture_step_moves_only_alpha(tmp_path, sampler):
    r = _runner(tmp_path, f"sampler.name={sampler}")
    train, val = next(iter(zip(r.train_loader, r.val_loader)))
    w0, a0 = _snapshot(r.model.weight_parameters()), _snapshot(r.model.arch_parameters())
    r.architect.step(val, train, 1.0, 0.025, r.w_opt)
    assert all(torch.equal(p, q) for p, q in zip(r.model.weight_parameters(), w0))
    assert all(p.grad is None for p in r.model.weight_parameters())
    assert any(not torch.equal(p, q) for p, q in zip(r.model.arch_parameters(), a0))


@pytest.mark.parametrize("sampler", ["softmax", "gdas"])
def test_weight_step_moves_only_w(tmp_path, sampler):
    r = _runner(tmp_path, f"sampler.name={sampler}")
    x, y = next(iter(r.train_loader))
    w0, a0 = _snapshot(r.model.weight_parameters()), _snapshot(r.model.arch_parameters())
    r.weight_step(x, y)
    assert all(torch.equal(p, q) for p, q in zip(r.model.arch_parameters(), a0))
    assert all(p.grad is None for p in r.model.arch_parameters())
    assert any(not torch.equal(p, q) for p, q in zip(r.model.weight_parameters(), w0))


def test_arch_start_epoch_keeps_alpha_fixed(tmp_path):
    r = _runner(tmp_path, "search.arch_start_epoch=1", "search.epochs=1")
    a0 = _snapshot(r.model.arch_parameters())
    record = r.run()
    assert all(torch.equal(p, q) for p, q in zip(r.model.arch_parameters(), a0))
    assert record["val_acc"] is None


def test_same_seed_same_alphas_and_different_seed_differs(tmp_path):
    runs = [_runner(tmp_path / name, f"seed={seed}") for name, seed in (("a", 0), ("b", 0), ("c", 1))]
    for r in runs:
        r.run()
    a, b, c = (torch.cat([p.flatten() for p in r.model.arch_parameters()]) for r in runs)
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_run_directory_contents(tmp_path):
    _runner(tmp_path).run()
    assert {"config.yaml", "genotype.json", "alphas.json", "metrics.jsonl", "checkpoints", "tb"} <= {
        p.name for p in tmp_path.iterdir()
    }
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [row["epoch"] for row in rows] == [0, 1]
    assert rows[0]["tau"] == 10.0 and rows[1]["tau"] == pytest.approx(0.1)  # linear 10 -> 0.1 over 2 epochs
    assert {
        "train_loss",
        "val_acc",
        "entropy_normal",
        "entropy_reduce",
        "param_free_normal",
        "genotype",
    } <= set(rows[0])
    genotype = json.loads((tmp_path / "genotype.json").read_text())
    assert genotype["provenance"]["epoch"] == 1 and genotype["provenance"]["seed"] == 0
    assert len(genotype["provenance"]["probabilities"]["normal"]) == 14
    alphas = json.loads((tmp_path / "alphas.json").read_text())
    assert len(alphas["alphas"]["normal"]) == 14 and len(alphas["alphas"]["normal"][0]) == 8
    config = (tmp_path / "config.yaml").read_text()
    assert "_meta" in config and "torch" in config


def test_a_search_and_nas_derive_write_the_same_provenance(finished_search, tmp_path):
    """One writer (`nas.search.provenance`): the genotype.json a search leaves and the one `nas derive`
    rewrites from its last checkpoint hold the same fields, and from the same checkpoint the same values."""
    run = tmp_path / "run"
    shutil.copytree(finished_search, run)
    searched = json.loads((run / "genotype.json").read_text())["provenance"]
    assert main(["derive", str(run)]) == 0
    derived = json.loads((run / "genotype.json").read_text())["provenance"]
    assert {"run", "epoch", "seed", "sampler", "tau", "probabilities", "config"} <= set(searched)
    assert set(derived) == set(searched)
    assert derived == searched


def test_resume_in_process_equals_uninterrupted(tmp_path):
    full = _runner(tmp_path / "full", "search.epochs=3")
    full.run()
    part = _runner(tmp_path / "part", "search.epochs=3")
    part.run_epoch(0)
    part.end_epoch(
        0, {"epoch": 0, "tau": part.tau, "lr": 0.0, "train_acc": 0.0, "val_acc": 0.0, "epoch_time": 0.0}
    )
    del part
    resumed = _runner(tmp_path / "part", "search.epochs=3", resume=True)
    assert resumed.start_epoch == 1
    resumed.run()
    for p, q in zip(full.model.state_dict().values(), resumed.model.state_dict().values()):
        assert torch.equal(p, q)


def test_resume_with_more_epochs_follows_the_longer_lr_schedule(tmp_path):
    """A run resumed with `search.epochs` raised anneals the weight lr over the new length, like tau."""
    _runner(tmp_path / "run", "search.epochs=1").run()
    _runner(tmp_path / "run", "search.epochs=3", resume=True).run()
    _runner(tmp_path / "fresh", "search.epochs=3").run()

    def lrs(run):
        return [
            json.loads(line)["lr"] for line in (tmp_path / run / "metrics.jsonl").read_text().splitlines()
        ]

    resumed, fresh = lrs("run"), lrs("fresh")
    assert len(resumed) == 3 and resumed == pytest.approx(fresh)
    assert fresh[1] > fresh[2]  # the schedule anneals over the three epochs


def _search_cmd(out_dir, *extra):
    return [sys.executable, "-m", "nas", "search", "--config", str(ROOT / "configs/search/tiny_synthetic.yaml"),
            *TINY_SEARCH, f"out_dir={out_dir}", *extra]  # fmt: skip


def test_sigkill_then_resume_is_bitwise_equal_to_uninterrupted(tmp_path):
    """Kill a real `nas search` process with SIGKILL after its second epoch's checkpoint, resume it, and
    compare alphas.json with an uninterrupted run of the same seed."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    extra = ["search.epochs=4", "data.synthetic.train_size=256"]
    subprocess.run(_search_cmd(tmp_path / "full", *extra), check=True, env=env, capture_output=True)
    out = tmp_path / "killed"
    proc = subprocess.Popen(
        _search_cmd(out, *extra), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        metrics = out / "metrics.jsonl"
        if metrics.is_file() and len(metrics.read_text().splitlines()) >= 2:
            break
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (out / "alphas.json").exists(), "the run finished before it was killed; make it longer"
    resumed = subprocess.run(
        [sys.executable, "-m", "nas", "search", "--resume", str(out)], env=env, capture_output=True, text=True
    )
    assert resumed.returncode == 0, resumed.stderr
    full = json.loads((tmp_path / "full" / "alphas.json").read_text())
    again = json.loads((out / "alphas.json").read_text())
    assert full == again
    epochs = [json.loads(line)["epoch"] for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert epochs == [0, 1, 2, 3]


@pytest.mark.parametrize("sampler", ["softmax", "gumbel", "drnas"])
def test_one_hot_weight_sample_trains_only_the_drawn_path(tmp_path, sampler):
    """`search.weight_sample=one_hot` with a relaxed sampler: the weight step's ops off the drawn path get no
    gradient (their own sample gives every op one), and the step still moves only w."""
    from nas.arch.mixed_op import MixedOp

    def grads(*overrides):
        r = _runner(tmp_path / "-".join(overrides), f"sampler.name={sampler}", *overrides)
        drawn = []
        draw = r.architect.sample_for_weights
        r.architect.sample_for_weights = lambda tau: drawn.append(draw(tau)) or drawn[-1]
        x, y = next(iter(r.train_loader))
        a0 = _snapshot(r.model.arch_parameters())
        r.weight_step(x, y)
        assert all(torch.equal(p, q) for p, q in zip(r.model.arch_parameters(), a0))
        edges = []  # (cell type, edge index, MixedOp) in the DARTS supernet's cells
        for cell in r.model.cells:
            mixed = [m for m in cell.modules() if isinstance(m, MixedOp)]
            edges += [("reduce" if cell.reduction else "normal", e, m) for e, m in enumerate(mixed)]
        trained = [[any(p.grad is not None for p in op.parameters()) for op in m.ops] for _, _, m in edges]
        has_params = [[any(True for _ in op.parameters()) for op in m.ops] for _, _, m in edges]
        return edges, trained, has_params, drawn[0]

    _, trained, has_params, _ = grads()
    assert trained == has_params  # the mixture: every op with parameters is trained
    edges, trained, has_params, sample = grads("search.weight_sample=one_hot")
    for (name, e, _), row, params in zip(edges, trained, has_params):
        chosen = sample[name].choices[e]
        assert row == [params[k] and k == chosen for k in range(len(row))], (name, e)
    assert any(any(row) for row in trained)


def test_one_hot_weight_sample_is_idle_for_a_one_hot_sampler(tmp_path):
    """A one-hot sampler's weight step trains one path already: the option changes nothing, bit for bit."""
    runs = [_runner(tmp_path / str(i), "sampler.name=gumbel_st", *o) for i, o in
            enumerate([(), ("search.weight_sample=one_hot",)])]  # fmt: skip
    for r in runs:
        r.run()
    for p, q in zip(runs[0].model.parameters(), runs[1].model.parameters()):
        assert torch.equal(p, q)
