"""NAS-Bench-201 ground truth in the tool: the shipped table, lookups and percentiles, and where it shows
(`nas genotype info|show`, `nas search` metrics, `nas rank --random`)."""

from __future__ import annotations

import gzip
import hashlib
import itertools
import json
import random
import sys
import types

import numpy as np
import pytest

from nas.arch.genotype import Cell, Genotype
from nas.arch.ground_truth import GroundTruthConfig, ground_truth_of
from nas.arch.space import SPACES, resolve_genotype
from nas.cli import main
from nas.core.errors import UserError
from nas.core.stats import kendall_tau, percentile
from search_spaces.nb201 import ground_truth as nb201_truth
from tests.conftest import ROOT, TINY_SEARCH

PRIMITIVES = SPACES.get("nb201").primitives


def _cell(ops: tuple[str, ...]) -> Genotype:
    """The NB201 cell with ops on edges (1<-0), (2<-0), (2<-1), (3<-0), (3<-1), (3<-2)."""
    nodes = [[(ops[0], 0)], [(ops[1], 0), (ops[2], 1)], [(ops[3], 0), (ops[4], 1), (ops[5], 2)]]
    return Genotype("nb201", {"cell": Cell.make(nodes, [3])})


@pytest.fixture(scope="module")
def truth():
    return ground_truth_of(SPACES.get("nb201"))


def test_the_shipped_table_is_the_published_file(truth):
    """The bytes inside the package are the benchmark export the README names (its sha256), and hold its
    sanity values (data README): best cell, ResNet cell, all-none cell, quantiles on CIFAR-10."""
    digest = hashlib.sha256(gzip.decompress(nb201_truth.TABLE.read_bytes())).hexdigest()
    assert digest == "5d64733e6915408060ee4ff6807f81834b324ae0530dcdbf3aa4a6bb950e39f2"
    assert len(truth) == 5**6 and truth.datasets == ("cifar10", "cifar100", "imagenet16_120")
    assert [truth.values(d).max() for d in truth.datasets] == pytest.approx([94.3733, 73.5133, 47.3111])
    assert truth.accuracy(resolve_genotype("zoo:NB201_RESNET"))["cifar10"] == pytest.approx(93.91)
    assert truth.accuracy(_cell(("none",) * 6)) == pytest.approx(
        {d: v for d, v in zip(truth.datasets, (10, 1, 0.8333))}, abs=0.01
    )
    c10 = truth.values("cifar10")
    assert np.percentile(c10, [50, 75, 90]) == pytest.approx([90.745, 92.185, 92.93], abs=1e-3)


def test_every_cell_of_the_space_has_an_entry_whatever_order_its_nodes_list_their_inputs(truth):
    rng = random.Random(0)
    seen = set()
    for ops in itertools.product(PRIMITIVES, repeat=6):
        genotype = _cell(ops)
        seen.add(truth.accuracy(genotype)["cifar10"])
        if rng.random() < 0.01:  # the same cell written with its nodes' inputs in another order
            nodes = [list(reversed(n)) for n in genotype.cells["cell"].nodes]
            shuffled = Genotype("nb201", {"cell": Cell.make(nodes, [3])})
            assert truth.accuracy(shuffled) == truth.accuracy(genotype)
    assert len(seen) > 1000


def test_percentile_is_the_share_below_with_ties_counting_half(truth):
    values = truth.values("cifar100")
    rng = np.random.default_rng(0)
    for v in [*rng.choice(values, 20), values.min(), values.max(), 0.0, 100.0, 55.5]:
        assert truth.percentile("cifar100", float(v)) == pytest.approx(percentile(float(v), values.tolist()))
    assert truth.percentile("cifar100", 0.0) == 0 and truth.percentile("cifar100", 100.0) == 100
    record = truth.record(resolve_genotype("zoo:NB201_BEST_CIFAR10"))
    assert set(record) == {f"gt_{d}{s}" for d in truth.datasets for s in ("", "_pct")}
    assert all(type(v) is float for v in record.values())  # JSON-ready


def test_a_genotype_of_another_space_or_shape_is_refused(truth):
    with pytest.raises(UserError, match="space 'darts'"):
        truth.accuracy(resolve_genotype("zoo:DARTS_V2"))
    with pytest.raises(UserError, match="no dataset 'svhn'"):
        truth.values("svhn")


@pytest.mark.parametrize(
    "cfg,message",
    [
        (GroundTruthConfig(source="foo"), "ground_truth.source must be 'table' or 'nats_bench'"),
        (GroundTruthConfig(epochs=12), "need ground_truth.source=nats_bench"),
        (GroundTruthConfig(source="nats_bench", epochs=50), "must be 12 or 200"),
    ],
)
def test_bad_ground_truth_settings_are_one_line(cfg, message):
    with pytest.raises(UserError, match=message):
        ground_truth_of(SPACES.get("nb201"), cfg)
    assert ground_truth_of(SPACES.get("darts")) is None
    with pytest.raises(UserError, match="space darts has no ground truth"):
        ground_truth_of(SPACES.get("darts"), GroundTruthConfig(source="nats_bench"))


def test_nats_bench_source_queries_every_cell_once_and_caches_the_table(tmp_path, monkeypatch, truth):
    """Against a stand-in for the `nats_bench` API (the official file is not at hand offline): our side of
    the contract, `create(path, "tss")`, `len`, `arch(i)`, `get_more_info(i, dataset, hp, is_random)`."""
    archs = sorted(nb201_truth.arch_key(_cell(ops)) for ops in itertools.product(PRIMITIVES, repeat=6))
    calls = []

    class API:
        def __len__(self):
            return len(archs)

        def arch(self, i):
            return archs[i]

        def get_more_info(self, i, dataset, hp, is_random):
            calls.append((dataset, hp, is_random))
            return {
                "test-accuracy": (i % 97) + {"cifar10": 0.1, "cifar100": 0.2, "ImageNet16-120": 0.3}[dataset]
            }

    bench = tmp_path / "NATS-tss-v1_0-3ffb9-simple"
    bench.mkdir()
    monkeypatch.setitem(
        sys.modules, "nats_bench", types.SimpleNamespace(create=lambda path, space, **kw: API())
    )
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    nb201_truth.from_nats_bench.cache_clear()
    cfg = GroundTruthConfig(source="nats_bench", path=str(bench), epochs=12, trial_seed=777)
    built = ground_truth_of(SPACES.get("nb201"), cfg)
    assert len(calls) == 3 * 5**6 and set(calls) == {
        (d, "12", 777) for d in ("cifar10", "cifar100", "ImageNet16-120")
    }
    genotype = _cell(("nor_conv_3x3",) * 6)
    i = archs.index(nb201_truth.arch_key(genotype))
    assert built.accuracy(genotype) == pytest.approx({"cifar10": i % 97 + 0.1, "cifar100": i % 97 + 0.2,
                                                      "imagenet16_120": i % 97 + 0.3})  # fmt: skip
    assert "12 epochs, seed 777" in built.protocol
    nb201_truth.from_nats_bench.cache_clear()
    calls.clear()
    again = ground_truth_of(SPACES.get("nb201"), cfg)  # from the cache: no query
    assert not calls and again.accuracy(genotype) == built.accuracy(genotype)
    nb201_truth.from_nats_bench.cache_clear()
    with pytest.raises(UserError, match="NATS-Bench file not found"):
        ground_truth_of(
            SPACES.get("nb201"), GroundTruthConfig(source="nats_bench", path=str(tmp_path / "no"))
        )


def test_genotype_info_and_show_print_the_ground_truth(capsys, truth):
    cell = "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_3x3~2|"
    assert main(["genotype", "info", cell]) == 0
    out = capsys.readouterr().out
    expected = truth.accuracy(resolve_genotype(cell))
    for dataset, acc in expected.items():
        line = next(line for line in out.splitlines() if line.strip().startswith(dataset))
        assert f"{acc:.2f} %" in line and f"{truth.percentile(dataset, acc):.2f}" in line
    assert main(["genotype", "show", cell]) == 0
    assert f"cifar10 {expected['cifar10']:.2f} %" in capsys.readouterr().out
    assert main(["genotype", "info", "zoo:DARTS_V2"]) == 0
    assert "NAS-Bench-201" not in capsys.readouterr().out
    assert main(["genotype", "info", cell, "--ground-truth", "nope"]) == 2
    assert "ground_truth.source must be" in capsys.readouterr().err


@pytest.fixture(scope="module")
def nb201_search(tmp_path_factory):
    out = tmp_path_factory.mktemp("gt") / "run"
    args = [*TINY_SEARCH, "space.name=nb201", "space.layers=1", "sampler.name=gumbel_st", f"out_dir={out}"]
    assert main(["search", "--config", str(ROOT / "configs/search/tiny_synthetic.yaml"), *args]) == 0
    return out


def test_search_logs_the_derived_cells_ground_truth_every_epoch(nb201_search, truth):
    records = [json.loads(line) for line in (nb201_search / "metrics.jsonl").read_text().splitlines()]
    assert len(records) == 2
    for record in records:
        expected = truth.record(resolve_genotype(record["genotype"]))
        assert {k: record[k] for k in expected} == pytest.approx(expected)


def test_rank_random_cells_against_the_ground_truth(nb201_search, tmp_path, capsys, truth):
    out = tmp_path / "rank.json"
    assert (
        main(
            [
                "rank",
                str(nb201_search),
                "zoo:NB201_RESNET",
                "--random",
                "6",
                "--random-seed",
                "4",
                "-o",
                str(out),
            ]
        )
        == 0
    )
    result = json.loads(out.read_text())
    rows = result["results"]
    assert len(rows) == 7 and rows[0]["genotype"] == "zoo:NB201_RESNET"
    for row in rows:
        assert row["ground_truth"] == pytest.approx(
            truth.accuracy(resolve_genotype(row["genotype"]))["cifar10"]
        )
    expected = kendall_tau([r["supernet_acc"] for r in rows[1:]], [r["ground_truth"] for r in rows[1:]])
    assert result["kendall_tau"] == pytest.approx(expected, nan_ok=True)
    assert f"6 random cells (seed 4): {expected:.3f}" in capsys.readouterr().out
    assert main(["rank", str(nb201_search), "--random", "-1"]) == 2
    assert "--random must be in [0, 100000]" in capsys.readouterr().err


def test_rank_random_needs_a_space_with_a_ground_truth(finished_search, capsys):
    assert main(["rank", str(finished_search), "--random", "3"]) == 2
    assert "space darts has none" in capsys.readouterr().err
