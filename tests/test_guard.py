"""The collapse guard (`search.guard`): a search stops once its derived first cell holds too many of the
guarded ops, and keeps the last architecture within the bound."""

import json

import pytest
import torch

import search_spaces  # noqa: F401
from nas.arch.genotype import Cell, Genotype, load_genotype_file
from nas.arch.space import SPACES
from nas.config import GuardConfig, SearchRunConfig, load_config
from nas.core.errors import UserError
from nas.search.guard import CollapseGuard
from nas.search.runner import SearchRunner
from tests.conftest import TINY_SEARCH

DARTS = SPACES.get("darts")


def _genotype(normal_ops: list[str]) -> Genotype:
    nodes = [[(normal_ops[2 * i], 0), (normal_ops[2 * i + 1], 1)] for i in range(4)]
    cell = Cell.make(nodes, range(2, 6))
    return Genotype("darts", {"normal": cell, "reduce": cell})


def test_guard_arms_within_the_bound_then_rolls_back_past_it():
    guard = CollapseGuard(GuardConfig(max_ops=2), DARTS)
    assert guard.ops == DARTS.parameter_free and guard.cell == "normal" and not guard.armed
    params = [torch.nn.Parameter(torch.zeros(3))]
    past = _genotype(["skip_connect", "max_pool_3x3", "avg_pool_3x3"] + ["sep_conv_3x3"] * 5)
    assert guard.count(past) == 3
    assert guard.check(past, params, 4) is None and not guard.armed  # noise before it arms: ignored
    with torch.no_grad():
        params[0].add_(1.0)
    within = _genotype(["skip_connect", "max_pool_3x3"] + ["sep_conv_3x3"] * 6)
    assert guard.check(within, params, 5) is None and guard.armed and guard.kept_epoch == 5
    with torch.no_grad():
        params[0].add_(1.0)
    assert guard.check(past, params, 6) == 3
    assert torch.equal(params[0], torch.ones(3)) and guard.kept_epoch == 5  # back to epoch 5's
    skips = CollapseGuard(GuardConfig(max_ops=1, ops=["skip_connect"]), DARTS)  # DARTS+'s criterion
    assert skips.count(past) == 1


def _run(tmp_path, *overrides, resume=False):
    cfg = load_config(SearchRunConfig, None, TINY_SEARCH + [f"out_dir={tmp_path}", "search.epochs=3",
                                                           "search.arch_start_epoch=1", *overrides])  # fmt: skip
    return SearchRunner(cfg, DARTS, tmp_path, resume=resume)


def _metrics(path):
    return [json.loads(line) for line in (path / "metrics.jsonl").read_text().splitlines()]


def test_a_guard_that_never_trips_changes_nothing(tmp_path):
    plain = _run(tmp_path / "plain", "search.epochs=2")
    plain.run()
    guarded = _run(tmp_path / "guarded", "search.epochs=2", "search.guard.max_ops=8")  # 8 edges: cannot pass
    guarded.run()
    assert not guarded.stopped() and len(_metrics(tmp_path / "guarded")) == 2
    for p, q in zip(plain.model.arch_parameters(), guarded.model.arch_parameters()):
        assert torch.equal(p, q)


def test_a_tripped_guard_stops_keeps_the_epoch_before_and_stays_stopped(tmp_path, monkeypatch):
    counts = iter([5, 0, 7])  # epochs 1, 2, 3: noise (ignored), arms, past the bound
    monkeypatch.setattr(CollapseGuard, "count", lambda self, genotype: next(counts))
    run = _run(tmp_path, "search.epochs=5", "search.guard.max_ops=3", "sampler.name=gumbel_st")
    kept = []
    end_epoch = run.end_epoch

    def spy(epoch, record):  # the architecture at the end of epoch 2, before its checkpoint
        if epoch == 2:
            kept.extend(p.detach().clone() for p in run.model.arch_parameters())
        end_epoch(epoch, record)

    run.end_epoch = spy
    run.run()
    records = _metrics(tmp_path)
    assert [r["epoch"] for r in records] == [0, 1, 2, 3] and run.stopped_at == 3
    assert "guard_stop" not in records[1] and records[3]["guard_stop"] == 7
    assert records[3]["guard_genotype"].startswith("Genotype(")
    assert all(torch.equal(p, q) for p, q in zip(run.model.arch_parameters(), kept))
    genotype = load_genotype_file(tmp_path / "genotype.json")
    assert genotype.cells == DARTS.derive({k: a.detach() for k, a in run.model.alphas.items()}).cells
    saved = json.loads((tmp_path / "alphas.json").read_text())["alphas"]
    assert torch.equal(torch.tensor(saved["normal"]), kept[0].double())
    (tmp_path / "alphas.json").unlink()  # as if killed after the stopping epoch's checkpoint
    resumed = _run(
        tmp_path, "search.epochs=5", "search.guard.max_ops=3", "sampler.name=gumbel_st", resume=True
    )
    assert resumed.stopped() and resumed.start_epoch == 4 and resumed.guard.armed
    resumed.run()
    assert len(_metrics(tmp_path)) == 4 and (tmp_path / "alphas.json").is_file()


@pytest.mark.parametrize("overrides, message", [
    (["search.guard.max_ops=2", "search.guard.ops=[conv_9x9]"], "search.guard.ops: 'conv_9x9' is not an op"),
    (["search.guard.ops=[skip_connect]"], "search.guard.ops needs search.guard.max_ops"),
    (["search.guard.max_ops=-1"], "search.guard.max_ops must be in [0, "),
])  # fmt: skip
def test_bad_guard_settings_are_refused(overrides, message):
    with pytest.raises(UserError) as info:
        load_config(SearchRunConfig, None, overrides)
    assert message in str(info.value) and "\n" not in str(info.value)
