"""Gumbel noise and the architecture samplers.

A sampler maps architecture logits `alpha` (E, K) (E edges, K candidate ops) and a temperature to op
weights (E, K):

- `softmax`   DARTS (Liu et al., 2019): softmax(alpha); tau unused; every op computed.
- `gumbel`    SNAS / concrete relaxation (Xie et al., 2019; Maddison et al., 2017; Jang et al., 2017):
              softmax((log_softmax(alpha) + g) / tau); every op computed.
- `gumbel_st` straight-through Gumbel-softmax (Jang et al., 2017, sec. 2.2): the forward pass sees the
              hard one-hot argmax, the backward pass the gradient of the soft sample; every op computed.
- `gdas`      GDAS (Dong & Yang, 2019): the same hard weights, but the MixedOp runs only the chosen op
              and scales it by its straight-through weight (1.0 forward), so the gradient reaches alpha
              through that single weight. About K times cheaper per edge.

Noise is always drawn in float32 on the CPU from a seeded `torch.Generator` (saved in checkpoints), then
moved to alpha's device: the same seed gives the same architectures on CPU and GPU and on every rank.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from nas.errors import UserError
from nas.registry import Registry


@dataclass
class ArchSample:
    """Op weights for one cell type; `choices` is set for samplers that run only the chosen op."""

    weights: torch.Tensor  # (E, K)
    choices: list[int] | None = None  # host-side chosen op per edge (gdas only)
    unchosen_grad: bool = False  # gdas: unchosen weights get a gradient too (see nas.mixed_op.MixedOp)

    def edge(self, e: int) -> tuple[torch.Tensor, int | None, bool]:
        """Arguments of edge e's `MixedOp.forward` after the input: (weights (K,), choice, unchosen_grad)."""
        return self.weights[e], None if self.choices is None else self.choices[e], self.unchosen_grad


def check_tau(tau: float) -> float:
    """tau must be a finite number > 0 (tau = 0 is the undefined argmax limit)."""
    tau = float(tau)
    if not (math.isfinite(tau) and tau > 0):
        raise UserError(f"temperature tau must be finite and > 0, got {tau}")
    return tau


def gumbel_noise(shape: torch.Size | tuple[int, ...], generator: torch.Generator) -> torch.Tensor:
    """Standard Gumbel(0, 1) noise in float32 on the generator's device: g = -log(E), E ~ Exp(1).

    E is clamped away from 0 so g stays finite (exponential_ can return 0 with probability ~2^-24).
    """
    e = torch.empty(shape, dtype=torch.float32, device=generator.device).exponential_(generator=generator)
    return -e.clamp_min(torch.finfo(torch.float32).tiny).log()


class _StraightThrough(torch.autograd.Function):
    """Forward: exactly `hard`. Backward: the incoming gradient goes to `soft` unchanged."""

    @staticmethod
    def forward(ctx, soft: torch.Tensor, hard: torch.Tensor) -> torch.Tensor:
        return hard.clone()

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        return grad, None


def straight_through(soft: torch.Tensor) -> torch.Tensor:
    """One-hot argmax of `soft` in the forward pass (exact zeros and ones), d/d soft = identity."""
    index = soft.argmax(dim=-1, keepdim=True)
    hard = torch.zeros_like(soft).scatter_(-1, index, 1.0)
    return _StraightThrough.apply(soft, hard)


def gumbel_softmax(alpha: torch.Tensor, tau: float, noise: torch.Tensor) -> torch.Tensor:
    """softmax((log_softmax(alpha) + g) / tau) in float32; finite for tau >= 0.01 and |alpha| <= 1e4."""
    logits = F.log_softmax(alpha.float(), dim=-1) + noise  # (E, K)
    return F.softmax(logits / tau, dim=-1)


SamplerFn = Callable[[torch.Tensor, float, torch.Generator], torch.Tensor]
SAMPLERS: Registry[SamplerFn] = Registry("sampler")
# samplers whose MixedOp computes only the chosen op
HARD_SAMPLERS = frozenset({"gdas"})
# samplers whose forward pass is one-hot: where no alpha gradient is needed (the weight step), running only
# the chosen op gives the same output and the same weight gradients (the other ops are multiplied by 0)
HARD_FORWARD = frozenset({"gdas", "gumbel_st"})


def _noise_like(alpha: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    return gumbel_noise(alpha.shape, generator).to(alpha.device, non_blocking=True)


@SAMPLERS.register("softmax")
def sample_softmax(alpha: torch.Tensor, tau: float, generator: torch.Generator) -> torch.Tensor:
    return F.softmax(alpha.float(), dim=-1)


@SAMPLERS.register("gumbel")
def sample_gumbel(alpha: torch.Tensor, tau: float, generator: torch.Generator) -> torch.Tensor:
    return gumbel_softmax(alpha, check_tau(tau), _noise_like(alpha, generator))


@SAMPLERS.register("gumbel_st")
def sample_gumbel_st(alpha: torch.Tensor, tau: float, generator: torch.Generator) -> torch.Tensor:
    return straight_through(sample_gumbel(alpha, tau, generator))


SAMPLERS.register("gdas", sample_gumbel_st)


def sample_architecture(
    alphas: Mapping[str, torch.Tensor],
    sampler: str,
    tau: float,
    generator: torch.Generator,
    unchosen_grad: bool = False,
    chosen_only: bool = False,
) -> dict[str, ArchSample]:
    """Sample op weights for every cell type (in sorted key order, so the noise stream is fixed).

    For hard samplers, the chosen indices of all cell types reach the host in a single transfer: one
    device synchronisation per sample, not one per edge. `unchosen_grad` is passed on to hard samples.
    `chosen_only`: a sampler whose forward pass is one-hot (`HARD_FORWARD`) also returns its choices, so
    only the chosen ops run (for the weight step, which needs no alpha gradient).
    """
    fn = SAMPLERS.get(sampler)
    names = sorted(alphas)
    weights = {name: fn(alphas[name], tau, generator) for name in names}
    if sampler not in HARD_SAMPLERS and not (chosen_only and sampler in HARD_FORWARD):
        return {name: ArchSample(weights[name]) for name in names}
    flat = torch.cat([weights[name].detach().argmax(-1) for name in names]).tolist()  # one sync
    out, start = {}, 0
    for name in names:
        n = weights[name].shape[0]
        out[name] = ArchSample(weights[name], flat[start : start + n], unchosen_grad)
        start += n
    return out
