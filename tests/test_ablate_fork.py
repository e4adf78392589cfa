"""A point forked from another point's warm-up checkpoint (nas/ablate/fork.py) equals its run from scratch."""

import json

import pytest

from nas.ablate.fork import check_forkable, fork_run
from nas.cli import main
from nas.config import SearchRunConfig, load_config
from nas.core.errors import UserError
from tests.conftest import TINY_SEARCH

WARM = [
    *TINY_SEARCH,
    "sampler.name=gumbel_st",
    "search.epochs=4",
    "search.arch_start_epoch=2",
    "tau.warmup_epochs=2",
    "tau.per=step",
]


def _search(out, *overrides):
    assert (
        main(
            ["search", "--config", "configs/search/tiny_synthetic.yaml", *WARM, *overrides, f"out_dir={out}"]
        )
        == 0
    )


def _cfg(out, *overrides):
    return load_config(
        SearchRunConfig, "configs/search/tiny_synthetic.yaml", [*WARM, *overrides, f"out_dir={out}"]
    )


def _rows(run):
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in r.items() if "time" not in k and not k.endswith("_s")} for r in rows]


@pytest.mark.parametrize("schedule", ["exponential", "learned", "constant tau.start=1.0"])
def test_a_forked_point_equals_its_run_from_scratch(tmp_path, schedule):
    schedule, *more = schedule.split()
    source, scratch, forked = tmp_path / "source", tmp_path / "scratch", tmp_path / "forked"
    _search(source, "tau.schedule=linear", "keep_checkpoints=[2]")
    _search(scratch, f"tau.schedule={schedule}", *more)
    assert fork_run(source, forked, _cfg(forked, f"tau.schedule={schedule}", *more), 2)
    assert not fork_run(
        source, forked, _cfg(forked, f"tau.schedule={schedule}", *more), 2
    )  # never overwritten
    assert main(["search", "--resume", str(forked)]) == 0
    assert json.loads((forked / "alphas.json").read_text()) == json.loads(
        (scratch / "alphas.json").read_text()
    )
    assert _rows(forked) == _rows(scratch)
    assert [{**r, "tau": 0} for r in _rows(forked)[:2]] == [{**r, "tau": 0} for r in _rows(source)[:2]]
    assert _rows(forked)[2:] != _rows(source)[2:]  # the schedules part after the fork


@pytest.mark.parametrize(
    "overrides, epoch, message",
    [
        (["sampler.name=gdas"], 2, "differ in sampler.name"),
        (["search.weights.lr=0.1"], 2, "differ in search.weights.lr"),
        ([], 3, "must not pass search.arch_start_epoch"),
    ],
)
def test_an_inexact_fork_is_refused(tmp_path, overrides, epoch, message):
    with pytest.raises(UserError, match=message):
        check_forkable(_cfg(tmp_path / "a"), _cfg(tmp_path / "b", "tau.schedule=cosine", *overrides), epoch)
