"""The Gumbel-softmax family: one noise draw g ~ Gumbel(0, 1) per (edge, op) and the relaxed sample
y = softmax((log_softmax(alpha) + g) / tau) (Maddison et al., ICLR 2017; Jang et al., ICLR 2017).

- `gumbel`    SNAS (Xie et al., ICLR 2019): the op weights are y; every op is computed.
- `gumbel_st` straight-through Gumbel-softmax (Jang et al., 2017, sec. 2.2): the forward pass sees the
              hard one-hot argmax (an exact sample of Categorical(softmax(alpha)), the Gumbel-max trick),
              the backward pass the gradient of y; every op is computed in the architecture step.
- `gdas`      GDAS (Dong & Yang, CVPR 2019): the same hard weights, but the MixedOp runs only the chosen
              op and scales it by its straight-through weight (1.0 forward), so the gradient reaches alpha
              through that single weight. About K times cheaper per edge.

GDAS' gradient is straight-through with every unchosen op's entry of d loss / d w missing (0: what `none`
gives). The chosen op's entry is the loss's slope in that op's output scale at w = 1, which is positive
for most ops on a trained supernet (less of the op would lower the loss), while an unchosen op's entry
(its slope at w = 0: would adding it help?) is negative for the useful ones. Reading only the first kind
pushes every chosen op down and never `none`, so probability drains into `none` and pooling
(experiments/search_vs_random). `sampler.probes=M` fills the missing entries: M unchosen ops per edge,
drawn uniformly without replacement from the sampler's generator, also run in a first-order architecture
step, forward only (no autograd), and their entries <d loss / d out, op_j(x)> are weighted by (K - 1) / M.
For the same chosen ops that is an unbiased estimate of gumbel_st's gradient, at 1 + M op evaluations per
edge instead of K (M = K - 1 gives gumbel_st's gradient exactly; M = 0 is GDAS as published).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch

from nas.core.errors import UserError
from nas.core.limits import Range
from nas.sampling.base import (
    Sampler,
    SamplerConfig,
    check_tau,
    gumbel_softmax,
    noise_like,
    register,
    straight_through,
)


@register
class Gumbel(Sampler):
    name = "gumbel"
    learns_tau = True  # tau divides the logits of the relaxed sample: the sample is differentiable in it

    def weights(self, alpha: torch.Tensor, tau: float, generator: torch.Generator) -> torch.Tensor:
        return gumbel_softmax(alpha, check_tau(tau), noise_like(alpha, generator))


@register
class GumbelST(Gumbel):
    name = "gumbel_st"
    one_hot = True

    def weights(self, alpha: torch.Tensor, tau: float, generator: torch.Generator) -> torch.Tensor:
        return straight_through(super().weights(alpha, tau, generator))


@dataclass
class GDASOptions(SamplerConfig):
    probes: int = 0  # unchosen ops per edge run forward-only in the architecture step (module docstring)

    RANGES: ClassVar[dict[str, Range]] = {"probes": Range(0, 64)}


@register
class GDAS(GumbelST):
    name = "gdas"
    Options = GDASOptions
    chosen_only = True

    def check(self) -> None:
        super().check()
        if self.options.probes and self.options.unchosen_grad:
            raise UserError("sampler.probes and sampler.unchosen_grad=true both fill the unchosen ops' gradient "
                            "entries; choose one")  # fmt: skip

    def draw_probes(
        self, choices: list[int], ops: int, generator: torch.Generator
    ) -> tuple[list[list[int]], float]:
        """Per edge, `probes` unchosen ops (uniform, without replacement) and their weight (K - 1) / M."""
        m = min(self.options.probes, ops - 1)
        if m <= 0:
            return [[] for _ in choices], 1.0
        keys = torch.rand((len(choices), ops), generator=generator)  # (E, K)
        keys[torch.arange(len(choices)), torch.tensor(choices)] = 2.0  # the chosen op sorts last
        order = keys.argsort(dim=1)[:, :m].tolist()
        return order, (ops - 1) / m
