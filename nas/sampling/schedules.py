"""Temperature schedules: pure functions of training progress.

Each schedule maps `u`, the epochs elapsed since the end of the warm-up, and `span`, the epochs over which
it anneals, to tau. With `tau.per = step`, u advances by 1/steps_per_epoch every optimiser step, so the same
curve is followed more finely (the step schedule still changes only every `step_every` whole epochs, and
`tau.rate` is per epoch either way). `u = span` is the last epoch (or step) of the search, which gets
exactly `tau.end` for the annealing schedules, as in GDAS
(tau = tau_max - (tau_max - tau_min) * epoch / (epochs - 1)).

- constant     tau.start throughout
- linear       start -> end linearly (GDAS, Dong & Yang 2019)
- exponential  max(end, start * exp(-r u)) (Jang et al. 2017); r = `tau.rate` or ln(start/end) / span
- cosine       end + (start - end) (1 + cos(pi u / span)) / 2
- step         max(end, start * factor^floor(u / every)) for decays (min(end, ...) when it grows)
- learned      not a function of time: tau = exp(theta), theta a parameter trained with alpha by the
               architecture optimiser (on the same validation loss, through the relaxed sample, so only
               samplers whose sample is differentiable in tau: `Sampler.learns_tau`), starting at tau.start
               and projected back into [min(start, end), max(start, end)] after every step
               (`LearnedTemperature`); tau_at gives tau.start, its value before the first update.

Every schedule stays between tau.start and tau.end, so validating those two (finite, > 0) and the
schedule's own parameters is enough to guarantee tau is finite and > 0 everywhere.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn as nn

from nas.core.errors import UserError
from nas.core.registry import Registry
from nas.sampling import check_tau


# The `tau` section's schema lives with the schedules that read it (nas.config assembles the sections).
@dataclass
class TauConfig:
    schedule: str = "linear"  # see nas.sampling.schedules.SCHEDULES
    start: float = 10.0
    end: float = 0.1
    per: str = "epoch"  # epoch | step: how often tau is recomputed
    warmup_epochs: int = 0  # hold tau.start this many epochs first
    rate: float | None = None  # exponential decay rate r; null = derived from start/end
    step_every: int = 10  # step schedule: multiply by step_factor every step_every epochs
    step_factor: float = 0.5


ScheduleFn = Callable[[TauConfig, float, float], float]
SCHEDULES: Registry[ScheduleFn] = Registry("tau schedule")


@SCHEDULES.register("constant")
def constant(cfg: TauConfig, u: float, span: float) -> float:
    return cfg.start


@SCHEDULES.register("linear")
def linear(cfg: TauConfig, u: float, span: float) -> float:
    return cfg.start + (cfg.end - cfg.start) * min(u / span, 1.0)  # > 0 for taus in nas.core.limits.TAU


@SCHEDULES.register("exponential")
def exponential(cfg: TauConfig, u: float, span: float) -> float:
    rate = cfg.rate if cfg.rate is not None else math.log(cfg.start / cfg.end) / span
    return _clamped(cfg, cfg.start * math.exp(_bounded(-rate * u)))


@SCHEDULES.register("cosine")
def cosine(cfg: TauConfig, u: float, span: float) -> float:
    return cfg.end + (cfg.start - cfg.end) * 0.5 * (1.0 + math.cos(math.pi * min(u / span, 1.0)))


@SCHEDULES.register("learned")
def learned(cfg: TauConfig, u: float, span: float) -> float:
    return cfg.start  # the learned value lives in LearnedTemperature; this is where it starts


class LearnedTemperature(nn.Module):
    """tau = exp(theta) as an architecture parameter (`tau.schedule=learned`)."""

    def __init__(self, start: float, end: float):
        super().__init__()
        self.theta = nn.Parameter(torch.tensor(math.log(start)))
        self.lo, self.hi = math.log(min(start, end)), math.log(max(start, end))

    def value(self) -> torch.Tensor:
        """tau as a 0-dim tensor, differentiable in theta."""
        return self.theta.exp()

    @torch.no_grad()
    def project(self) -> None:
        """Back into [min(start, end), max(start, end)] after an optimiser step (never stuck at a bound:
        the forward pass has no clamp, so the gradient always reaches theta)."""
        self.theta.clamp_(self.lo, self.hi)


@SCHEDULES.register("step")
def step(cfg: TauConfig, u: float, span: float) -> float:
    try:
        value = cfg.start * cfg.step_factor ** math.floor(u / cfg.step_every)
    except OverflowError:  # a factor > 1 raised past the largest float: far beyond tau.end
        value = math.inf
    return _clamped(cfg, value)


def _bounded(x: float) -> float:
    """An exponent cut to +-600: tau (<= 1e4, nas.core.limits) times exp of it stays a finite float, and a value
    cut here lies beyond tau.end anyway, where `_clamped` stops it."""
    return min(max(x, -600.0), 600.0)


def _clamped(cfg: TauConfig, value: float) -> float:
    """`value` stopped at tau.end on its way from tau.start (never past either)."""
    return min(max(value, min(cfg.start, cfg.end)), max(cfg.start, cfg.end))


def validate_schedule(cfg: TauConfig) -> None:
    """Refuse a schedule that could leave (0, inf); raises UserError naming the offending key."""
    SCHEDULES.get(cfg.schedule)
    for key in ("start", "end"):
        value = getattr(cfg, key)
        if not (math.isfinite(value) and value > 0):
            raise UserError(f"tau.{key} must be finite and > 0 (tau = 0 is undefined), got {value}")
    if cfg.per not in ("epoch", "step"):
        raise UserError(f"tau.per must be 'epoch' or 'step', got {cfg.per!r}")
    if cfg.warmup_epochs < 0:
        raise UserError(f"tau.warmup_epochs must be >= 0, got {cfg.warmup_epochs}")
    if cfg.schedule == "exponential" and cfg.rate is not None:
        if not math.isfinite(cfg.rate):
            raise UserError(f"tau.rate must be finite, got {cfg.rate}")
        if (cfg.rate > 0) != (cfg.start > cfg.end) and cfg.start != cfg.end:
            raise UserError(
                f"tau.rate={cfg.rate} moves tau away from tau.end={cfg.end}; it would never reach it"
            )
    if cfg.schedule == "step":
        if cfg.step_every < 1:
            raise UserError(f"tau.step_every must be >= 1, got {cfg.step_every}")
        if not (math.isfinite(cfg.step_factor) and cfg.step_factor > 0):
            raise UserError(
                f"tau.step_factor must be finite and > 0 (0 would reach tau = 0), got {cfg.step_factor}"
            )


def tau_at(cfg: TauConfig, epoch: int, epochs: int, step: int = 0, steps_per_epoch: int = 1) -> float:
    """The temperature for `step` (0-based, within `epoch`) of a search of `epochs` epochs.

    With `tau.per = epoch` the step is ignored; with `step` the schedule advances every optimiser step.
    The first `tau.warmup_epochs` epochs hold `tau.start`.
    """
    fn = SCHEDULES.get(cfg.schedule)
    per_epoch = 1 if cfg.per == "epoch" else max(1, steps_per_epoch)
    done = epoch * per_epoch + (step if cfg.per == "step" else 0)
    warm = cfg.warmup_epochs * per_epoch
    total = epochs * per_epoch
    u = done - warm
    if u < 0:
        return check_tau(cfg.start)
    span = max(1, total - warm - 1)
    return check_tau(fn(cfg, u / per_epoch, span / per_epoch))  # in epochs: exact at epoch boundaries
