"""Temperature schedules: endpoints, monotonicity, range, warm-up, per-step updates and validation, for every
registered schedule (property tests, no golden floats)."""

from __future__ import annotations

import math
import random

import pytest

from nas.config import SearchRunConfig, TauConfig, load_config
from nas.core.errors import UserError
from nas.sampling.schedules import SCHEDULES, tau_at, validate_schedule

ANNEALING = ["linear", "exponential", "cosine"]  # reach tau.end exactly on the last epoch


def curve(cfg: TauConfig, epochs: int, steps: int = 1) -> list[float]:
    validate_schedule(cfg)
    return [tau_at(cfg, e, epochs, s, steps) for e in range(epochs) for s in range(steps)]


def is_monotone(values: list[float], decreasing: bool) -> bool:
    pairs = zip(values, values[1:])
    return (
        all(b <= a * (1 + 1e-12) for a, b in pairs)
        if decreasing
        else all(b >= a * (1 - 1e-12) for a, b in pairs)
    )


def test_registry_has_the_six_schedules():
    assert set(SCHEDULES.names()) == {"constant", "linear", "exponential", "cosine", "step", "learned"}


@pytest.mark.parametrize("name", SCHEDULES.names())
@pytest.mark.parametrize("start,end", [(10.0, 0.1), (5.0, 1.0), (0.5, 2.0)])
@pytest.mark.parametrize("per,steps", [("epoch", 1), ("step", 7)])
def test_endpoints_monotone_and_in_range(name, start, end, per, steps):
    cfg = TauConfig(
        schedule=name, start=start, end=end, per=per, step_every=2, step_factor=0.5 if start > end else 2.0
    )
    values = curve(cfg, epochs=9, steps=steps)
    assert values[0] == pytest.approx(start)
    lo, hi = min(start, end), max(start, end)
    assert all(math.isfinite(v) and lo * (1 - 1e-12) <= v <= hi * (1 + 1e-12) for v in values)
    assert is_monotone(values, decreasing=start > end)
    if name in ANNEALING:
        assert values[-1] == pytest.approx(end, rel=1e-9)
    if name == "constant":
        assert set(values) == {start}


@pytest.mark.parametrize("name", ANNEALING)
def test_per_step_moves_within_an_epoch_per_epoch_does_not(name):
    base = dict(schedule=name, start=10.0, end=0.1)
    by_epoch = [tau_at(TauConfig(per="epoch", **base), 3, 10, s, 50) for s in range(50)]
    assert len(set(by_epoch)) == 1
    by_step = [tau_at(TauConfig(per="step", **base), 3, 10, s, 50) for s in range(50)]
    assert len(set(by_step)) == 50 and is_monotone(by_step, decreasing=True)
    last = tau_at(TauConfig(per="step", **base), 9, 10, 49, 50)
    assert last == pytest.approx(0.1) and tau_at(TauConfig(per="step", **base), 9, 10, 48, 50) > 0.1


@pytest.mark.parametrize("per", ["epoch", "step"])
def test_step_schedule_counts_epochs_not_steps(per):
    cfg = TauConfig(schedule="step", start=8.0, end=0.1, per=per, step_every=2, step_factor=0.5)
    values = [tau_at(cfg, e, 6, s, 10) for e in range(6) for s in range(10)]
    assert values == [8.0] * 20 + [4.0] * 20 + [2.0] * 20


@pytest.mark.parametrize("name", SCHEDULES.names())
@pytest.mark.parametrize("per,steps", [("epoch", 1), ("step", 5)])
def test_warmup_holds_start_then_anneals_to_end(name, per, steps):
    cfg = TauConfig(schedule=name, start=10.0, end=0.1, per=per, warmup_epochs=3, step_every=1)
    values = curve(cfg, epochs=10, steps=steps)
    assert values[: 3 * steps] == [10.0] * (3 * steps)
    if name in ANNEALING:
        assert values[3 * steps + 1] < 10.0  # annealing starts right after the warm-up
        assert values[-1] == pytest.approx(0.1)


def test_warmup_longer_than_the_search_holds_start():
    cfg = TauConfig(schedule="linear", start=4.0, end=0.5, warmup_epochs=20)
    assert curve(cfg, epochs=5) == [4.0] * 5


def test_exponential_rate_given_is_used_and_clamped_at_end():
    cfg = TauConfig(schedule="exponential", start=10.0, end=0.1, rate=0.5)
    values = curve(cfg, epochs=30)
    assert values[1] == pytest.approx(10.0 * math.exp(-0.5))
    assert values[-1] == 0.1  # max(end, ...) holds it once reached


def test_step_schedule_multiplies_every_k_epochs():
    cfg = TauConfig(schedule="step", start=8.0, end=0.1, step_every=3, step_factor=0.5)
    assert curve(cfg, epochs=9) == [8.0] * 3 + [4.0] * 3 + [2.0] * 3


def test_random_configs_stay_finite_positive_down_to_small_tau():
    rng = random.Random(0)
    for _ in range(200):
        name = rng.choice(SCHEDULES.names())
        start, end = 10 ** rng.uniform(-2, 2), 10 ** rng.uniform(-2, 2)
        factor = (end / start) ** (1 / rng.randint(1, 5)) if start != end else 1.0
        per, warmup, every = rng.choice(["epoch", "step"]), rng.randint(0, 3), rng.randint(1, 4)
        cfg = TauConfig(name, start, end, per, warmup, step_every=every, step_factor=factor)
        for v in curve(cfg, epochs=rng.randint(1, 12), steps=rng.randint(1, 6)):
            assert math.isfinite(v) and min(start, end) * (1 - 1e-9) <= v <= max(start, end) * (1 + 1e-9)


@pytest.mark.parametrize(
    "change,message",
    [
        ({"end": 0.0}, "tau.end must be finite and > 0"),
        ({"start": -1.0}, "tau.start must be finite and > 0"),
        ({"start": math.inf}, "tau.start must be finite"),
        ({"end": math.nan}, "tau.end must be finite"),
        ({"schedule": "step", "step_factor": 0.0}, "step_factor must be finite and > 0"),
        ({"schedule": "step", "step_every": 0}, "step_every must be >= 1"),
        ({"per": "batch"}, "tau.per must be 'epoch' or 'step'"),
        ({"warmup_epochs": -1}, "warmup_epochs must be >= 0"),
        ({"schedule": "exponential", "rate": -0.1}, "never reach"),
        ({"schedule": "exponential", "rate": math.inf}, "tau.rate must be finite"),
        ({"schedule": "sawtooth"}, "unknown tau schedule 'sawtooth'"),
    ],
)
def test_validation_refuses_schedules_that_leave_zero_inf(change, message):
    with pytest.raises(UserError, match=message.replace("(", r"\(")):
        validate_schedule(TauConfig(**change))


@pytest.mark.parametrize("override", ["tau.end=0", "tau.start=inf", "tau.per=batch"])
def test_config_loading_refuses_bad_tau(override):
    with pytest.raises(UserError, match="tau"):
        load_config(SearchRunConfig, None, [override])


# --- the learned temperature ---------------------------------------------------------------------------


def _learned_runner(tmp_path, *overrides, resume=False):
    import search_spaces  # noqa: F401
    from nas.arch.space import SPACES
    from nas.search.runner import SearchRunner
    from tests.conftest import TINY_SEARCH

    cfg = load_config(SearchRunConfig, None, [*TINY_SEARCH, f"out_dir={tmp_path}", "tau.schedule=learned",
                                              "tau.start=2.0", "tau.end=0.5", "sampler.name=gumbel_st",
                                              "search.arch.lr=0.2", *overrides])  # fmt: skip
    return SearchRunner(cfg, SPACES.get(cfg.space.name), tmp_path, resume=resume)


@pytest.mark.parametrize("sampler", ["gumbel", "gumbel_st", "gdas"])
def test_learned_tau_gets_a_gradient_moves_with_alpha_and_stays_in_its_range(tmp_path, sampler):
    import torch

    r = _learned_runner(tmp_path, f"sampler.name={sampler}")
    weights = [p.detach().clone() for p in r.model.weight_parameters()]
    taus = [r.tau_for(0)]
    assert taus[0] == pytest.approx(2.0)
    batches = zip(r.train_loader, r.val_loader)
    for train, val in batches:  # every batch of the tiny split
        r.architect.step(val, train, r.tau_for(0), 0.025, r.w_opt)
        taus.append(r.tau_for(0))
    assert all(torch.equal(p, q) for p, q in zip(r.model.weight_parameters(), weights))
    assert len(set(taus)) > 1 and all(0.5 - 1e-6 <= t <= 2.0 + 1e-6 for t in taus)


def test_learned_tau_resumes_exactly(tmp_path):
    import torch

    def runner(name, resume=False):
        r = _learned_runner(tmp_path / name, "search.epochs=3", resume=resume)
        if not resume:  # inside its range [0.5, 2], so that it is free to move either way
            r.temperature.theta.data.fill_(math.log(1.2))
        return r

    full = runner("full")
    full.run()
    part = runner("part")
    part.run_epoch(0)
    part.end_epoch(
        0, {"epoch": 0, "tau": part.tau, "lr": 0.0, "train_acc": 0.0, "val_acc": 0.0, "epoch_time": 0.0}
    )
    del part
    resumed = runner("part", resume=True)
    resumed.run()
    assert torch.equal(full.temperature.theta, resumed.temperature.theta)
    assert full.temperature.theta.item() != pytest.approx(math.log(1.2))  # it moved
    for p, q in zip(full.model.state_dict().values(), resumed.model.state_dict().values()):
        assert torch.equal(p, q)


@pytest.mark.parametrize(
    "overrides,message",
    [
        (
            ["sampler.name=reinmax"],
            "tau.schedule=learned needs a sampler whose sample is differentiable in tau",
        ),
        (["sampler.name=softmax"], "softmax is not"),
        (["search.bilevel=second_order"], "needs search.bilevel=first_order"),
    ],
)
def test_learned_tau_is_refused_where_no_gradient_reaches_it(overrides, message):
    with pytest.raises(UserError, match=message):
        load_config(SearchRunConfig, None, ["tau.schedule=learned", *overrides])
