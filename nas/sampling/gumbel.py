"""The Gumbel-softmax family: one noise draw g ~ Gumbel(0, 1) per (edge, op) and the relaxed sample
y = softmax((log_softmax(alpha) + g) / tau) (Maddison et al., ICLR 2017; Jang et al., ICLR 2017).

- `gumbel`    SNAS (Xie et al., ICLR 2019): the op weights are y; every op is computed.
- `gumbel_st` straight-through Gumbel-softmax (Jang et al., 2017, sec. 2.2): the forward pass sees the
              hard one-hot argmax (an exact sample of Categorical(softmax(alpha)), the Gumbel-max trick),
              the backward pass the gradient of y; every op is computed in the architecture step.
- `gdas`      GDAS (Dong & Yang, CVPR 2019): the same hard weights, but the MixedOp runs only the chosen
              op and scales it by its straight-through weight (1.0 forward), so the gradient reaches alpha
              through that single weight. About K times cheaper per edge.
"""

from __future__ import annotations

import torch

from nas.sampling.base import Sampler, check_tau, gumbel_softmax, noise_like, register, straight_through


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


@register
class GDAS(GumbelST):
    name = "gdas"
    chosen_only = True
