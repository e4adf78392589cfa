"""`nas ablate`: the grid and run ids, validation before any work, the tiny ablation end to end through the
CLI, partial aggregation, and a real kill half-way followed by a re-run that redoes no finished work."""

from __future__ import annotations

import contextlib
import csv
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from nas.ablate import executors
from nas.ablate import launch as ablate_run
from nas.ablate import spec as ablate
from nas.arch.genotype import load_genotype_file
from nas.cli import main
from nas.config import SearchRunConfig, load_config
from nas.core.errors import UserError
from tests.conftest import ROOT

TINY = {
    "name": "tiny",
    "base": str(ROOT / "configs/search/tiny_synthetic.yaml"),
    "overrides": {"search.epochs": 1, "data": {"synthetic": {"train_size": 64, "test_size": 32}}},
    "grid": {"tau.schedule": ["constant", "linear"], "seed": [0, 1]},
    "jobs": 2,
    "proxy_train": {
        "overrides": {
            "train.epochs": 1,
            "model": {"init_channels": 4, "layers": 3, "auxiliary": False},
            "data": {"batch_size": 16, "cutout": 0},
        },
    },
    "baselines": {"random": 3, "seed": 5, "zoo": ["DARTS_V2"]},
}
PNG = b"\x89PNG\r\n\x1a\n"


def write_ablation(path: Path, out_dir: Path, **changes) -> Path:
    spec = {**TINY, "out_dir": str(out_dir), **changes}
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


# one thread per process: on a small shared CPU, torch's spinning worker threads can make a run 10x slower
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def nas(*args: str, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "nas", *args], capture_output=True, text=True, cwd=ROOT, env=ENV, **kw
    )


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path) as f:
        return list(csv.DictReader(f))


# --- the grid ----------------------------------------------------------------------------------------


def test_runs_are_the_grid_product_seed_outermost_with_readable_ids(tmp_path):
    spec = ablate.load_ablation(write_ablation(tmp_path / "a.yaml", tmp_path / "out"))
    runs = ablate.plan(spec)
    ids = [
        "schedule-constant_seed-0",
        "schedule-linear_seed-0",
        "schedule-constant_seed-1",
        "schedule-linear_seed-1",
    ]
    baselines = ["random-00", "random-01", "random-02", "zoo-DARTS_V2"]  # after every grid point
    assert [r.id for r in runs] == ids + baselines
    assert [r.label for r in runs] == [
        "constant",
        "linear",
        "constant",
        "linear",
        *["random"] * 3,
        "zoo:DARTS_V2",
    ]
    assert [r.is_baseline for r in runs] == [False] * 4 + [True] * 4
    cfg = ablate.search_config(spec, runs[1], tmp_path / "out")
    assert (cfg.tau.schedule, cfg.seed, cfg.search.epochs, cfg.data.synthetic.train_size) == (
        "linear",
        0,
        1,
        64,
    )
    assert cfg.out_dir == str(tmp_path / "out" / "runs" / "schedule-linear_seed-0")


def test_colliding_short_keys_use_the_whole_key_and_duplicate_ids_are_refused(tmp_path):
    spec = ablate.AblationConfig(grid={"search.weights.lr": [0.1], "search.arch.lr": [0.01, 0.001]})
    ids = ["search-weights-lr-0.1_search-arch-lr-0.01", "search-weights-lr-0.1_search-arch-lr-0.001"]
    assert [r.id for r in ablate.plan(spec)] == ids
    with pytest.raises(UserError, match="share the id"):
        ablate.plan(ablate.AblationConfig(grid={"name": ["a/b", "a b"]}))
    with pytest.raises(UserError, match="grid.seed must be a non-empty list"):
        ablate.plan(ablate.AblationConfig(grid={"seed": 3}))


@pytest.mark.parametrize(
    "value",
    [None, True, 3, 0.001, 1e-7, "linear", "1", "true", "a b", [0.5, 0.999], "it's", "{a", "${x}", "[1",
     "c:\\dir", 'it\'s "both"'],
)  # fmt: skip
def test_dotlist_values_read_back_unchanged(value):
    from omegaconf import OmegaConf

    assert OmegaConf.from_dotlist([f"k={ablate.dotlist_value(value)}"])["k"] == value


def test_flatten_merges_nested_and_dotted_keys():
    assert ablate.flatten({"a.b": 1, "a": {"c": {"d": 2}}, "e": []}) == {"a.b": 1, "a.c.d": 2, "e": []}


@pytest.mark.parametrize(
    "changes,overrides,message",
    [
        ({"bogus": 1}, [], "bogus: unknown key (the top level takes: "),
        ({}, ["grid.tau.schedul=[linear]"], "tau.schedul: unknown key (tau takes: schedule, start"),
        ({}, ["grid.tau.schedule=[linear,sawtooth]"], "unknown tau schedule 'sawtooth'"),
        ({}, ["grid.tau.end=[0.0]"], "tau.end must be finite and in [0.01, 10000]"),
        ({}, ["proxy_train.overrides.train.epoch=2"], "train.epoch: unknown key (train takes: "),
        ({}, ["jobs=0"], "jobs must be in [1, 1024]"),
        ({}, ["proxy_train.seeds=0"], "proxy_train.seeds must be in [1, 100]"),
        ({"base": "nowhere.yaml"}, [], "config file not found: nowhere.yaml"),
    ],
)
def test_bad_ablation_stops_before_any_work_with_one_line(tmp_path, capsys, changes, overrides, message):
    path = write_ablation(tmp_path / "a.yaml", tmp_path / "out", **changes)
    assert main(["ablate", "--config", str(path), *overrides]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and err.startswith("nas: error:")
    assert not (tmp_path / "out").exists()


def test_print_commands_one_self_contained_line_per_run(tmp_path, capsys):
    path = write_ablation(tmp_path / "a.yaml", tmp_path / "out")
    assert main(["ablate", "--config", str(path), "--print-commands", "jobs=1"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines == [
        f"nas ablate --config {path} --run {r.id} jobs=1" for r in ablate.plan(ablate.load_ablation(path))
    ]
    assert not (tmp_path / "out").exists()


def test_more_proxy_seeds_later_keep_the_first_retrains_and_score_the_mean(tiny_ablation, tmp_path):
    """An ablation run with one proxy seed, then asked for two: only the second retrains run (each with
    the next seed), and a cell is scored by the mean once both have finished."""
    import json

    out = tmp_path / "copy"
    shutil.copytree(tiny_ablation, out)
    first = out / "proxy" / "random-00" / "metrics.json"
    before = first.read_bytes(), first.stat().st_mtime_ns
    proxy = {**TINY["proxy_train"], "seeds": 2}
    path = write_ablation(tmp_path / "a.yaml", out, proxy_train=proxy)
    result = nas("ablate", "--config", str(path), "--run", "random-00", timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "random-00: proxy finished before, skipped" in result.stderr
    assert (first.read_bytes(), first.stat().st_mtime_ns) == before
    second = out / "proxy" / "random-00.seed-2"
    assert load_config(ablate.TrainRunConfig, second / "config.yaml").seed == 6  # baselines.seed 5, + 1
    accs = [json.loads((d / "metrics.json").read_text())["test_acc"] for d in (first.parent, second)]
    assert main(["ablate", "--aggregate", str(out)]) == 0
    rows = {r["run"]: r for r in read_csv(out / "results.csv")}
    assert rows["random-00"]["proxy"] == "done"
    assert float(rows["random-00"]["proxy_test_acc"]) == pytest.approx(sum(accs) / 2)
    assert rows["random-00"]["proxy_test_accs"] == " ".join(f"{a:.2f}" for a in accs)
    for other in ("random-01", "zoo-DARTS_V2", "schedule-linear_seed-0"):  # one of two retrains: no score
        assert (rows[other]["proxy"], rows[other]["proxy_test_acc"]) == ("partial", "")
    text = (out / "results.md").read_text()
    assert "each cell's mean over its 2 retrains" in text and "1/4 baselines retrained" in text


def test_stage_command_skips_finished_resumes_checkpointed_restarts_killed(tmp_path):
    spec = ablate.load_ablation(write_ablation(tmp_path / "a.yaml", tmp_path))
    run = ablate.plan(spec)[0]
    run_dir = tmp_path / "runs" / run.id
    (run_dir / "checkpoints").mkdir(parents=True)
    (run_dir / "config.yaml").write_text("name: x\n")  # killed before the first checkpoint
    what, args = ablate_run.stage_command(spec, run, "search", tmp_path)
    assert what == "started" and args[:3] == ["search", "--config", str(tmp_path / ablate.BASE_SEARCH)]
    assert (run_dir / "config.yaml").is_file()  # cleared by `nas search` under the directory's lock, not here
    (run_dir / "checkpoints" / "last.pt").write_bytes(b"")
    assert ablate_run.stage_command(spec, run, "search", tmp_path) == (
        "resumed",
        ["search", "--resume", str(run_dir)],
    )
    (run_dir / "alphas.json").write_text("{}")
    assert ablate_run.stage_command(spec, run, "search", tmp_path) is None


def test_baselines_rank_false_drops_only_the_rank_stage(tmp_path):
    ranked = ablate.load_ablation(write_ablation(tmp_path / "a.yaml", tmp_path))
    unranked = ablate.load_ablation(
        write_ablation(tmp_path / "b.yaml", tmp_path, baselines={**TINY["baselines"], "rank": False})
    )
    search, baseline = ablate.plan(ranked)[0], next(r for r in ablate.plan(ranked) if r.is_baseline)
    assert ablate_run.stages(ranked, search) == ["search", "rank", "proxy"]
    assert ablate_run.stages(unranked, search) == ["search", "proxy"]
    assert ablate_run.stages(ranked, baseline) == ablate_run.stages(unranked, baseline) == ["proxy"]


def test_proxy_seeds_add_one_stage_per_retrain_each_with_the_next_seed(tmp_path):
    proxy = {**TINY["proxy_train"], "seeds": 3}
    spec = ablate.load_ablation(write_ablation(tmp_path / "a.yaml", tmp_path, proxy_train=proxy))
    search = ablate.plan(spec)[1]  # schedule-linear_seed-0
    baseline = next(r for r in ablate.plan(spec) if r.is_baseline)
    assert ablate_run.stages(spec, search) == ["search", "rank", "proxy", "proxy-2", "proxy-3"]
    assert ablate_run.stages(spec, baseline) == ["proxy", "proxy-2", "proxy-3"]
    base = ablate.base_search_config(spec, ablate.plan(spec), tmp_path)
    for stage, seed, name in [("proxy", 5, "random-00"), ("proxy-2", 6, "random-00.seed-2"),
                              ("proxy-3", 7, "random-00.seed-3")]:  # fmt: skip
        what, args = ablate_run.stage_command(spec, baseline, stage, tmp_path)
        assert what == "started" and args[:2] == ["train", "--genotype"]
        assert f"seed={seed}" in args and args[-1] == f"out_dir={tmp_path / 'proxy' / name}"
        cfg = ablate.proxy_config(spec, baseline, tmp_path, base, stage)
        assert (cfg.seed, cfg.out_dir) == (seed, str(tmp_path / "proxy" / name))
    (tmp_path / "proxy" / "random-00.seed-2").mkdir(parents=True)
    (tmp_path / "proxy" / "random-00.seed-2" / "metrics.json").write_text("{}")
    assert ablate_run.stage_command(spec, baseline, "proxy-2", tmp_path) is None  # finished: skipped
    assert ablate_run.stage_command(spec, baseline, "proxy-3", tmp_path)[0] == "started"
    one = ablate.load_ablation(write_ablation(tmp_path / "b.yaml", tmp_path))
    assert ablate_run.stages(one, search)[-1] == "proxy" and one.proxy_train.seeds == 1  # the default


def test_jobs_get_their_own_gpu_and_share_the_cpu_threads(tmp_path, monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3,5")
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    launcher = executors.LocalExecutor(ablate.AblationConfig(jobs=2))
    gpus = [launcher.gpus.get(), launcher.gpus.get()]
    assert sorted(gpus) == ["3", "5"]
    env = launcher.env(gpus[0])
    assert env["CUDA_VISIBLE_DEVICES"] == gpus[0]
    assert env["OMP_NUM_THREADS"] == str(max(1, (os.cpu_count() or 1) // 2))


# --- end to end ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_ablation(tmp_path_factory) -> Path:
    """2 schedules x 2 seeds, 1 search epoch and a 1-epoch proxy retrain each, through the CLI."""
    tmp = tmp_path_factory.mktemp("ablation")
    path = write_ablation(tmp / "a.yaml", tmp / "out")
    result = nas("ablate", "--config", str(path), timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    return tmp / "out"


def test_tiny_ablation_writes_csv_markdown_plots_and_hparams(tiny_ablation):
    rows = read_csv(tiny_ablation / "results.csv")
    searched = [r for r in rows if r["kind"] == "search"]
    baselines = [r for r in rows if r["kind"] == "baseline"]
    assert [r["run"] for r in baselines] == ["random-00", "random-01", "random-02", "zoo-DARTS_V2"]
    assert {r["search"] for r in searched} == {"done"} and {r["proxy"] for r in rows} == {"done"}
    assert {(r["tau.schedule"], r["seed"]) for r in searched} == {
        (s, n) for s in ("constant", "linear") for n in "01"
    }
    for row in rows:
        assert int(row["params"]) > 0 and int(row["flops"]) > 0
        assert row["guard_stop"] == ""  # no collapse guard here: no epoch at which it stopped a search
    for row in searched:
        assert 0 <= int(row["param_free_normal"]) <= 8 and row["genotype"].startswith("Genotype(normal=")
        assert 0 < float(row["entropy_normal"]) <= 2.08
    table = (tiny_ablation / "results.md").read_text().split("## Searched vs random")[0]
    settings = [line for line in table.splitlines() if line.startswith(("| constant |", "| linear |"))]
    assert len(settings) == 2 and all("| 2/2 |" in line and " ± " in line for line in settings)
    for name in (
        "tau.png",
        "entropy.png",
        "accuracy.png",
        "search_vs_random.png",
        "ranking.png",
        "pareto.png",
    ):
        assert (tiny_ablation / name).read_bytes()[:8] == PNG
    assert sorted(p.name for p in (tiny_ablation / "tb").iterdir() if p.is_dir()) == sorted(
        r["run"] for r in searched
    )


def test_tiny_ablation_compares_searched_with_random_cells(tiny_ablation):
    """The comparison's numbers are those of the retrained runs: percentiles, U test, Kendall tau."""
    import json

    from nas.arch.space import SPACES
    from nas.core.stats import kendall_tau, mann_whitney_greater, percentile

    rows = {r["run"]: r for r in read_csv(tiny_ablation / "results.csv")}
    random_ids = ["random-00", "random-01", "random-02"]
    random_acc = [float(rows[i]["proxy_test_acc"]) for i in random_ids]
    cells = set()
    for i in random_ids:  # drawn from the searched space (5 intermediate... here 4 nodes), under its rules
        genotype = load_genotype_file(tiny_ablation / "baselines" / f"{i}.json")
        SPACES.get("darts").validate(genotype)
        assert genotype.provenance["seed"] == 5
        cells.add(genotype.cells["normal"])
    assert len(cells) == 3
    comparison = {
        c["setting"]: c for c in json.loads((tiny_ablation / "comparison.json").read_text())["settings"]
    }
    for setting in ("constant", "linear"):
        searched = [float(r["proxy_test_acc"]) for r in rows.values() if r["setting"] == setting]
        got = comparison[setting]
        assert sorted(got["searched"]) == sorted(searched) and sorted(got["random"]) == sorted(random_acc)
        assert sorted(got["percentiles"]) == sorted(percentile(a, random_acc) for a in searched)
        assert (
            got["p"] == pytest.approx(mann_whitney_greater(searched, random_acc)[1])
            and got["method"] == "exact"
        )
    for run in (r for r in rows.values() if r["kind"] == "search"):
        rank = json.loads((tiny_ablation / "rank" / f"{run['run']}.json").read_text())["results"]
        assert (
            len(rank) == 5
            and rank[0]["genotype"].endswith(run["run"])
            and rank[4]["genotype"] == "zoo:DARTS_V2"
        )
        supernet = [r["supernet_acc"] for r in rank[1:4]]
        assert float(run["supernet_acc"]) == pytest.approx(rank[0]["supernet_acc"])
        expected = kendall_tau(supernet, random_acc)
        assert (
            (run["kendall_tau"] == "")
            if expected != expected
            else float(run["kendall_tau"]) == pytest.approx(expected)
        )
    text = (tiny_ablation / "results.md").read_text()
    assert "## Searched vs random cells" in text and "(n=3)" in text and "zoo-DARTS_V2" in text


def test_aggregate_works_on_partial_results(tiny_ablation, tmp_path, capsys):
    out = tmp_path / "copy"
    shutil.copytree(tiny_ablation, out)
    shutil.rmtree(out / "runs" / "schedule-linear_seed-1")  # never started
    shutil.rmtree(out / "proxy" / "schedule-linear_seed-1")
    shutil.rmtree(out / "proxy" / "schedule-constant_seed-1")
    (out / "results.csv").unlink()
    assert main(["ablate", "--aggregate", str(out)]) == 0
    rows = {r["run"]: r for r in read_csv(out / "results.csv")}
    assert (rows["schedule-linear_seed-1"]["search"], rows["schedule-linear_seed-1"]["val_acc"]) == (
        "missing",
        "",
    )
    assert (rows["schedule-constant_seed-1"]["search"], rows["schedule-constant_seed-1"]["proxy"]) == (
        "done",
        "missing",
    )
    text = (out / "results.md").read_text()
    assert "3/4 searches finished, 2/4 proxy retrains finished" in text
    assert "| linear | 1/2 |" in text
    assert str(out / "accuracy.png") in capsys.readouterr().out


def test_killed_half_way_the_rerun_redoes_no_finished_work(tmp_path):
    out = tmp_path / "out"
    grid = {"tau.schedule": ["linear"], "seed": [0, 1]}
    path = write_ablation(
        tmp_path / "a.yaml",
        out,
        grid=grid,
        jobs=1,
        proxy_train=None,
        baselines=None,
        overrides={"search.epochs": 4},
    )
    first, second = (out / "runs" / f"schedule-linear_seed-{s}" for s in (0, 1))
    cmd = [sys.executable, "-m", "nas", "ablate", "--config", str(path)]
    log = open(tmp_path / "ablate.log", "w")
    proc = subprocess.Popen(cmd, cwd=ROOT, env=ENV, stdout=log, stderr=log, start_new_session=True)
    try:
        deadline = time.monotonic() + 600  # generous: a loaded 2-core machine runs this 5-10x slower
        while not (second / "checkpoints" / "last.pt").is_file():  # the second run has finished an epoch
            assert proc.poll() is None, "the ablation ended before it was killed"
            assert time.monotonic() < deadline, "the second run wrote no checkpoint within 600 s"
            time.sleep(0.01)
    finally:
        with contextlib.suppress(ProcessLookupError):  # the whole group: ablate and its search subprocess
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        log.close()
    assert (first / "alphas.json").is_file() and not (second / "alphas.json").is_file()
    finished = {p: p.stat().st_mtime_ns for p in first.rglob("*") if p.is_file()}
    epoch0 = (second / "metrics.jsonl").read_text().splitlines()[0]

    result = nas("ablate", "--config", str(path), timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "schedule-linear_seed-0: search finished before, skipped" in result.stderr
    assert "schedule-linear_seed-1: search resumed" in result.stderr
    assert {p: p.stat().st_mtime_ns for p in first.rglob("*") if p.is_file()} == finished
    lines = (second / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == 4 and lines[0] == epoch0  # epoch 0 (its timing included) was kept, not redone
    assert load_config(SearchRunConfig, second / "config.yaml").search.epochs == 4
    assert [r["search"] for r in read_csv(out / "results.csv")] == ["done", "done"]


def _children(pid: int) -> list[int]:
    """The pids whose parent is `pid` (Linux /proc)."""
    kids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == pid:
                kids.append(int(stat.parent.name))
    return kids


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the death signal is Linux's prctl")
def test_a_stage_whose_driver_is_already_gone_exits_and_its_own_children_inherit_no_parent():
    from nas.core.lifeline import PARENT_ENV, lifeline_env

    code = (
        "from nas.core.lifeline import follow_parent; follow_parent(); import os; print(os.environ.get(%r))"
    )
    cmd = [sys.executable, "-c", code % PARENT_ENV]
    ours = subprocess.run(cmd, env=lifeline_env(ENV), cwd=ROOT, capture_output=True, text=True)
    assert (ours.returncode, ours.stdout.strip()) == (0, "None")  # the variable is not passed further down
    gone = subprocess.run(cmd, env={**ENV, PARENT_ENV: "999999999"}, cwd=ROOT, capture_output=True, text=True)
    assert gone.returncode == 1 and gone.stdout == ""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the death signal is Linux's prctl")
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL])
def test_a_killed_driver_leaves_no_stage_running(tmp_path, sig):
    """SIGTERM or SIGKILL to `nas ablate` alone (not its process group, as a scheduler or `kill PID` does):
    the stage's `nas search` dies with it instead of running on as an orphan that holds the run's lock."""
    out = tmp_path / "out"
    path = write_ablation(tmp_path / "a.yaml", out, grid={"seed": [0]}, jobs=1, proxy_train=None,
                          baselines=None, overrides={"search.epochs": 50})  # fmt: skip
    run_dir = out / "runs" / "seed-0"
    cmd = [sys.executable, "-m", "nas", "ablate", "--config", str(path)]
    proc = subprocess.Popen(cmd, cwd=ROOT, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)  # fmt: skip
    stages: list[int] = []
    try:
        deadline = time.monotonic() + 600
        while not (run_dir / "checkpoints" / "last.pt").is_file():  # the stage is up and working
            assert proc.poll() is None, "the ablation ended before it was killed"
            assert time.monotonic() < deadline, "the search wrote no checkpoint within 600 s"
            time.sleep(0.05)
        stages = _children(proc.pid)
        assert len(stages) == 1
        os.kill(proc.pid, sig)
        proc.wait(timeout=60)
        deadline = time.monotonic() + 30
        while _alive(stages[0]) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not _alive(stages[0]), "the stage outlived its driver"
    finally:
        for pid in stages:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


@pytest.mark.parametrize(
    "name,searches,baselines",
    [("tau_schedules", 15, 0), ("tau_fashion_mnist", 6, 0), ("search_vs_random_nb201", 9, 12),
     ("search_vs_random_darts", 2, 9), ("resource_aware_nb201", 8, 10), ("samplers_nb201", 21, 30),
     ("tau_schedules_nb201", 36, 0), ("tau_level_nb201", 18, 0), ("supernet_width_nb201", 6, 30),
     ("search_vs_random_darts_pc", 4, 17), ("weight_sample_nb201", 18, 30)],
)  # fmt: skip
def test_shipped_ablations_are_valid(name, searches, baselines, tmp_path, monkeypatch):
    monkeypatch.chdir(ROOT)  # their paths are relative to the repository root, like every preset's
    spec = ablate.load_ablation(ROOT / "configs/ablations" / f"{name}.yaml", [f"out_dir={tmp_path}"])
    plan = ablate.plan(spec)
    searched = [r for r in plan if not r.is_baseline]
    assert len(searched) == searches and len(plan) == searches + baselines
    assert len({r.label for r in searched}) == searches // len(spec.grid["seed"])
    ablate.check_plan(spec, plan, tmp_path, data=False)  # every run's search and proxy config loads


def test_every_shipped_ablation_is_checked():
    """A config added to configs/ablations/ gets its row in the test above (its plan's size, written down)."""
    marks = next(m for m in test_shipped_ablations_are_valid.pytestmark if m.name == "parametrize")
    checked = {name for name, _, _ in marks.args[1]}
    assert checked == {p.stem for p in (ROOT / "configs/ablations").glob("*.yaml")}


# --- judged by the ground truth -----------------------------------------------------------------------

TINY_NB201 = {
    "name": "tiny nb201",
    "base": str(ROOT / "configs/search/tiny_synthetic.yaml"),
    "overrides": {
        "search.epochs": 2,
        "space": {"name": "nb201", "init_channels": 4, "layers": 1},
        "data": {"synthetic": {"train_size": 64, "test_size": 32}},
        "sampler.name": "gumbel_st",
    },
    "grid": {"tau.schedule": ["constant", "linear"], "seed": [0, 1]},
    "jobs": 2,
    "evaluate": "ground_truth",
    "reference": "linear",
    "baselines": {"random": 6, "seed": 3, "zoo": ["NB201_RESNET"]},
}


@pytest.fixture(scope="module")
def truth_ablation(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("truth")
    path = tmp / "a.yaml"
    path.write_text(yaml.safe_dump({**TINY_NB201, "out_dir": str(tmp / "out")}, sort_keys=False))
    result = nas("ablate", "--config", str(path), timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    return tmp / "out"


def test_ground_truth_ablation_judges_every_cell_by_the_table_without_retraining(truth_ablation):
    import json

    from nas.arch.ground_truth import ground_truth_of
    from nas.arch.space import SPACES, resolve_genotype
    from nas.core.stats import mann_whitney_greater

    truth = ground_truth_of(SPACES.get("nb201"))
    rows = {r["run"]: r for r in read_csv(truth_ablation / "results.csv")}
    assert not (truth_ablation / "proxy").exists()  # nothing was retrained
    assert {r["proxy"] for r in rows.values()} == {"off"}
    for run, row in rows.items():
        source = (
            truth_ablation / "runs" / run
            if row["kind"] == "search"
            else truth_ablation / "baselines" / f"{run}.json"
        )
        genotype = resolve_genotype("zoo:NB201_RESNET" if run == "zoo-NB201_RESNET" else str(source))
        expected = truth.accuracy(genotype)
        assert float(row["score"]) == pytest.approx(expected["cifar10"])
        for dataset, acc in expected.items():
            assert float(row[f"gt_{dataset}"]) == pytest.approx(acc)
            assert float(row[f"gt_{dataset}_pct"]) == pytest.approx(truth.percentile(dataset, acc))
    assert float(rows["zoo-NB201_RESNET"]["score"]) == pytest.approx(93.91)
    random = [float(r["score"]) for r in rows.values() if r["setting"] == "random"]
    settings = {
        c["setting"]: c for c in json.loads((truth_ablation / "comparison.json").read_text())["settings"]
    }
    for setting, got in settings.items():
        searched = [float(r["score"]) for r in rows.values() if r["setting"] == setting]
        assert got["p"] == pytest.approx(mann_whitney_greater(searched, random)[1])
        assert sorted(got["space_percentiles"]) == pytest.approx(
            sorted(float(r["score_pct"]) for r in rows.values() if r["setting"] == setting)
        )
    for row in (r for r in rows.values() if r["kind"] == "search"):
        assert 0 <= int(row["stable_epoch"]) <= 1
    text = (truth_ablation / "results.md").read_text()
    assert "NAS-Bench-201 cifar10 accuracy (%)" in text and "percentile in the space" in text
    assert (truth_ablation / "ground_truth.png").read_bytes()[:8] == PNG


def test_settings_are_tested_against_each_other_and_the_reference(truth_ablation):
    import json

    from nas.core.stats import kruskal_wallis, permutation_diff

    rows = read_csv(truth_ablation / "results.csv")
    groups = {s: [float(r["score"]) for r in rows if r["setting"] == s] for s in ("constant", "linear")}
    (across,) = json.loads((truth_ablation / "comparison.json").read_text())["across_settings"]
    assert across["reference"] == "linear" and sorted(across["groups"]) == ["constant", "linear"]
    assert across["h"] == pytest.approx(kruskal_wallis(list(groups.values()))[0])
    (versus,) = across["versus"]
    assert versus["setting"] == "constant"
    assert versus["diff"] == pytest.approx(sum(groups["constant"]) / 2 - sum(groups["linear"]) / 2)
    assert versus["p"] == pytest.approx(permutation_diff(groups["constant"], groups["linear"]))
    assert versus["ci95"][0] <= versus["diff"] <= versus["ci95"][1]
    seeds = {r["seed"]: float(r["score"]) for r in rows if r["setting"] == "linear"}
    assert versus["per_seed"] == {
        r["seed"]: pytest.approx(float(r["score"]) - seeds[r["seed"]])
        for r in rows
        if r["setting"] == "constant"
    }
    assert "## Settings against each other" in (truth_ablation / "results.md").read_text()


def test_settings_are_compared_within_each_value_of_the_other_grid_keys():
    from nas.ablate.compare import across_all

    rows = [
        {"kind": "search", "setting": f"{sched}, {sampler}", "tau.schedule": sched, "sampler.name": sampler,
         "seed": seed, "score": base + shift + seed}
        for sampler, base in (("a", 0.0), ("b", 50.0))
        for sched, shift in (("linear", 0.0), ("constant", 1.0), ("step", 3.0))
        for seed in (0, 1, 2)
    ]  # fmt: skip
    tests = across_all(rows, ["tau.schedule", "sampler.name"], "linear", "seed")
    assert [t.stratum for t in tests] == ["sampler.name=a", "sampler.name=b"]
    for test in tests:  # the samplers' 50-point gap is not mistaken for a schedule effect
        assert sorted(test.groups) == ["constant", "linear", "step"] and test.reference == "linear"
        assert {v["setting"]: v["per_seed"] for v in test.versus} == {
            "constant": {"0": 1.0, "1": 1.0, "2": 1.0},
            "step": {"0": 3.0, "1": 3.0, "2": 3.0},
        }
        assert test.pooled_sd == pytest.approx(1.0)
    (single,) = across_all(rows, ["tau.schedule"], "linear", "seed")  # one key: the settings as labelled
    assert single.stratum == "" and len(single.groups) == 6


def test_ground_truth_ablation_on_a_space_without_one_is_refused(tmp_path, capsys):
    path = write_ablation(tmp_path / "a.yaml", tmp_path / "out", evaluate="ground_truth", proxy_train=None)
    assert main(["ablate", "--config", str(path)]) == 2
    assert "space darts has no ground truth" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
