"""`nas bench` and the speed changes it measured: the command runs end to end on tiny settings and reports
what it promises; the fast paths it motivated are bitwise equal to the code they replace. No timing
assertions (DESIGN: speed is measured by `nas bench`, never asserted in a test)."""

import json

import pytest
import torch

import search_spaces  # noqa: F401  (registers the spaces)
from nas.arch.genotype import save_genotype
from nas.arch.mixed_op import times_one
from nas.arch.space import SPACES
from nas.bench.report import expand_compare, human_duration, split_values
from nas.bench.run import MemoryProbe, PhaseTimer
from nas.cli import main
from nas.config import SearchRunConfig, load_config
from nas.core.errors import UserError
from nas.search.runner import SearchRunner
from tests.conftest import ROOT, TINY_SEARCH, TINY_TRAIN

TINY_CONFIG = str(ROOT / "configs" / "search" / "tiny_synthetic.yaml")
FAST = ["--steps", "2", "--warmup", "1", "--rounds", "2"]


# --- the command ---------------------------------------------------------------------------------------


def test_search_bench_compares_settings_side_by_side(tmp_path, capsys):
    out = tmp_path / "bench.json"
    args = ["bench", "--config", TINY_CONFIG, *TINY_SEARCH, "--compare", "sampler.name=softmax,gdas"]
    assert main([*args, *FAST, "-o", str(out)]) == 0
    report = json.loads(out.read_text())
    table = capsys.readouterr().out
    assert report["kind"] == "search" and report["machine"]["torch"] == torch.__version__
    assert [r["setting"] for r in report["results"]] == ["sampler.name=softmax", "sampler.name=gdas"]
    for r in report["results"]:
        assert r["setting"] in table
        assert r["steps"] == 2 and len(r["images_per_s_rounds"]) == 2
        assert r["images_per_s"] > 0 and r["peak_memory_mb"] > 0 and r["projected_s"] > 0
        assert set(r["phase_ms"]) == {"data", "arch", "weights", "other"}
        assert sum(r["phase_ms"].values()) == pytest.approx(r["ms_per_step"])
        assert r["steps_per_epoch"] == 4 and r["epochs"] == 2  # the configured run the projection is for
    assert report["results"][0]["speedup_vs_first"] == 1.0


def test_train_bench_runs_a_genotype_file(tmp_path):
    space = SPACES.get("darts")
    alphas = {name: torch.randn(14, len(space.primitives)) for name in space.cell_types}
    save_genotype(tmp_path / "g.json", space.derive(alphas))
    out = tmp_path / "train.json"
    args = ["bench", "--train", "--genotype", str(tmp_path / "g.json"), *TINY_TRAIN, "model.auxiliary=false"]
    assert main([*args, "--compare", "channels_last=false,true", *FAST, "-o", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["kind"] == "train" and report["genotype"]["space"] == "darts"
    assert [set(r["phase_ms"]) for r in report["results"]] == [{"data", "step"}] * 2


@pytest.mark.parametrize(
    "argv",
    [
        ["--train"],  # no genotype
        ["--steps", "0"],
        ["--compare", "sampler.name"],  # no values
        ["--compare", "sampler.name=gdas,"],  # an empty value
        ["--compare", "no_such_key=1,2"],  # refused by the schema, before anything runs
    ],
)
def test_user_errors_stop_with_one_line_and_code_2(argv, tmp_path, capsys):
    out = tmp_path / "never.json"
    assert main(["bench", "--config", TINY_CONFIG, *TINY_SEARCH, *argv, "-o", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("nas: error:") and "\n" not in err
    assert not out.exists()


# --- pieces --------------------------------------------------------------------------------------------


def test_compare_specs_expand_to_every_combination():
    combos = expand_compare(["sampler.name=softmax,gdas", "channels_last=false,true", "amp=bf16"])
    assert len(combos) == 4 and len({tuple(c) for c in combos}) == 4
    assert all(c[2] == "amp=bf16" for c in combos)
    assert split_values("a,[1,2],{x: 1, y: 2},'p,q'") == ["a", "[1,2]", "{x: 1, y: 2}", "'p,q'"]
    with pytest.raises(UserError):
        expand_compare(["=a,b"])


def test_phase_timer_accumulates_until_collected():
    timer = PhaseTimer(torch.device("cpu"))
    for name in ("data", "arch", "data"):
        with timer(name):
            pass
    first = timer.collect()
    assert set(first) == {"data", "arch"} and all(v >= 0 for v in first.values())
    assert timer.collect() == {}


def test_memory_probe_peak_covers_an_allocation():
    probe = MemoryProbe(torch.device("cpu"))
    probe.reset_peak()
    before = probe.current()
    block = torch.ones(64 * 2**20, dtype=torch.uint8)  # 64 MiB, touched
    assert probe.peak() >= before + block.numel() // 2
    assert probe.current() > 0


def test_human_duration_picks_a_readable_unit():
    assert [human_duration(s) for s in (42, 750, 3 * 3600, 5 * 86400)] == [
        "42 s",
        "12.5 min",
        "3.0 h",
        "5.0 d",
    ]


# --- the speed changes are exact -----------------------------------------------------------------------


def _tiny_runner(tmp_path, *overrides):
    cfg = load_config(SearchRunConfig, None, [*TINY_SEARCH, f"out_dir={tmp_path}", *overrides])
    return SearchRunner(cfg, SPACES.get(cfg.space.name), tmp_path)


def test_runner_phase_hook_sees_every_phase_and_changes_nothing(tmp_path):
    plain, timed = _tiny_runner(tmp_path / "a"), _tiny_runner(tmp_path / "b")
    calls = []

    def timer(name):
        calls.append(name)
        return PhaseTimer(torch.device("cpu"))(name)

    timed.timer = timer
    plain.run_epoch(0, max_steps=3)
    timed.run_epoch(0, max_steps=3)
    assert calls == ["data", "arch", "weights"] * 3
    for p, q in zip(plain.model.parameters(), timed.model.parameters()):
        assert torch.equal(p, q)


@pytest.mark.parametrize("layout", ["contiguous", "channels_last", "channel_slice"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_times_one_is_bitwise_the_product_with_one(layout, dtype):
    g = torch.Generator().manual_seed(0)
    base = torch.randn(4, 6, 5, 5, generator=g).to(dtype)
    grad = torch.randn(4, 12, 5, 5, generator=g).to(dtype)
    grad = {"contiguous": grad[:, :6].contiguous(), "channel_slice": grad[:, 3:9]}.get(
        layout, grad[:, :6].contiguous(memory_format=torch.channels_last)
    )
    results = []
    for fn in (lambda o, w: o * w, times_one):
        out = base.clone().requires_grad_()
        w = torch.ones((), requires_grad=True)  # the straight-through weight of the chosen op: exactly 1.0
        y = fn(out, w)
        y.backward(grad)
        results.append((y.detach(), out.grad, out.grad.stride(), w.grad))
    (y0, g0, s0, w0), (y1, g1, s1, w1) = results
    assert torch.equal(y0, y1) and torch.equal(g0, g1) and s0 == s1
    assert w0.dtype == w1.dtype == torch.float32 and torch.equal(w0, w1)


def test_times_one_keeps_the_products_second_derivatives():
    """The exact second-order hypergradient differentiates the backward pass itself (double backward)."""
    p0 = torch.randn(3, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    results = []
    for fn in (lambda o, w: o * w, times_one):
        p = p0.clone().requires_grad_()
        w = torch.ones((), dtype=torch.float64, requires_grad=True)
        loss = fn(p.tanh(), w).pow(2).sum()
        (grad_p,) = torch.autograd.grad(loss, p, create_graph=True)
        results.append(torch.autograd.grad(grad_p.sin().sum(), (p, w)))
    for plain, fast in zip(*results):
        torch.testing.assert_close(fast, plain, rtol=1e-12, atol=0)
