"""Value checks of a loaded run config that its types cannot express: ranges, choices, and rules between
fields; each component checks its own section (the sampler its options, the space its sizes)."""

from __future__ import annotations

from typing import Any

from nas.arch.space import SPACES
from nas.config.schema import GuardConfig, SearchConfig, SearchRunConfig, TrainRunConfig
from nas.core.errors import UserError
from nas.core.limits import check_ranges
from nas.sampling import SAMPLERS, build_sampler
from nas.sampling.schedules import validate_schedule


def _check(ok: bool, message: str) -> None:
    if not ok:
        raise UserError(message)


def validate(cfg: Any) -> None:
    """Value checks the type system cannot express: every numeric field against its range
    (`nas.core.limits.RANGES`), then the choices and the rules between fields. Raises UserError on the first
    problem."""
    check_ranges(cfg)
    _check(cfg.amp in ("none", "bf16"), f"amp must be 'none' or 'bf16', got {cfg.amp!r}")
    _check(
        cfg.lr_scaling in ("none", "linear", "sqrt"),
        f"lr_scaling must be none, linear or sqrt, got {cfg.lr_scaling!r}",
    )
    if isinstance(cfg, SearchRunConfig):
        validate_schedule(cfg.tau)
        _check(
            cfg.search.bilevel in ("first_order", "second_order"),
            f"search.bilevel must be 'first_order' or 'second_order', got {cfg.search.bilevel!r}",
        )
        _check(
            cfg.search.weight_sample in ("sampler", "one_hot"),
            f"search.weight_sample must be 'sampler' or 'one_hot', got {cfg.search.weight_sample!r}",
        )
        _nesterov(cfg.search.weights, "search.weights")
        sampler = build_sampler(cfg.sampler)  # the sampler checks its own options
        cfg.space.check(cfg)  # and the space its own
        if cfg.tau.schedule == "learned":
            learners = ", ".join(n for n in SAMPLERS if SAMPLERS.get(n).learns_tau)
            _check(sampler.learns_tau, f"tau.schedule=learned needs a sampler whose sample is differentiable in "
                                       f"tau ({learners}); {cfg.sampler.name} is not")  # fmt: skip
            _check(
                cfg.search.bilevel == "first_order", "tau.schedule=learned needs search.bilevel=first_order"
            )
        primitives = SPACES.get(cfg.space.name).primitives
        for op in cfg.search.derive_exclude:
            _check(op in primitives, f"search.derive_exclude: {op!r} is not an op of space {cfg.space.name} "
                                     f"({', '.join(primitives)})")  # fmt: skip
        _check(set(primitives) - set(cfg.search.derive_exclude) != set(),
               "search.derive_exclude excludes every op of the space")  # fmt: skip
        _guard(cfg.search.guard, primitives)
        _derive_cap(cfg.search, primitives)
        cost = cfg.search.cost
        _check(cost.metric in ("flops", "params", "latency"),
               f"search.cost.metric must be flops, params or latency, got {cost.metric!r}")  # fmt: skip
        _check(cost.metric != "latency" or cost.table is not None,
               "search.cost.metric=latency needs search.cost.table (made by `nas cost profile`)")  # fmt: skip
    if isinstance(cfg, TrainRunConfig):
        _check(
            cfg.model.network in ("cifar", "imagenet"),
            f"model.network must be 'cifar' or 'imagenet', got {cfg.model.network!r}",
        )
        _check(
            cfg.train.lr_schedule in ("cosine", "step"),
            f"train.lr_schedule must be cosine or step, got {cfg.train.lr_schedule!r}",
        )
        _nesterov(cfg.train, "train")


def _guard(guard: GuardConfig, primitives: tuple[str, ...]) -> None:
    for op in guard.ops or []:
        _check(
            op in primitives, f"search.guard.ops: {op!r} is not an op of the space ({', '.join(primitives)})"
        )
    _check(guard.ops is None or guard.max_ops is not None, "search.guard.ops needs search.guard.max_ops")


def _derive_cap(search: SearchConfig, primitives: tuple[str, ...]) -> None:
    cap = search.derive_cap
    for op in cap.ops or []:
        _check(op in primitives,
               f"search.derive_cap.ops: {op!r} is not an op of the space ({', '.join(primitives)})")  # fmt: skip
    _check(
        cap.ops is None or cap.max_ops is not None, "search.derive_cap.ops needs search.derive_cap.max_ops"
    )
    if cap.ops is not None and cap.max_ops == 0:
        left = set(primitives) - set(cap.ops) - set(search.derive_exclude)
        _check(left != set(), "search.derive_cap.max_ops=0 with search.derive_cap.ops and search.derive_exclude "
               "covering every op leaves derive nothing to pick")  # fmt: skip


def _nesterov(optim: Any, prefix: str) -> None:
    _check(
        not optim.nesterov or optim.momentum > 0,
        f"{prefix}.nesterov=true needs {prefix}.momentum > 0, got {optim.momentum}",
    )
