"""ReinMax (Liu, Gao, Zheng, Wang & Han, "Bridging Discrete and Backpropagation: Straight-Through and
Beyond", NeurIPS 2023, Algorithm 2): a straight-through estimator with second-order accuracy.

Straight-through is the forward Euler step of the integral that links the gradient of E_D[f(D)] to
df/dD; ReinMax takes Heun's step instead. With pi_0 = softmax(alpha), D ~ Categorical(pi_0) one-hot,
and pi_1 = (D + softmax(alpha / tau)) / 2, Algorithm 2 reads

    pi_1 <- softmax(stop_grad(ln pi_1 - alpha) + alpha)      # value pi_1, Jacobian that of a softmax at pi_1
    pi_2 <- 2 pi_1 - pi_0 / 2
    D    <- pi_2 - stop_grad(pi_2) + D                       # forward: exactly D

so for an upstream gradient c = df/dD the gradient to alpha is

    2 J(pi_1)^T c - 1/2 J(pi_0)^T c,      J(p)^T c = p * c - p (p . c)   (the softmax Jacobian at p).

tau enters only through softmax(alpha / tau) in pi_1; the sample does not depend on it. The paper (and its
reference code) recommends tau >= 1, where ReinMax is most accurate; smaller values are allowed here (the
estimator is defined for every tau > 0) so that one temperature schedule serves every sampler.

The forward pass is one-hot, and the gradient needs df/dD for every op, so every op is computed in the
architecture step (as for `gumbel_st`); the weight step runs only the chosen ops. D is drawn by the
Gumbel-max trick from our seeded noise, so for the same noise ReinMax chooses what `gumbel_st` chooses.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from nas.sampling.base import Sampler, check_tau, noise_like, one_hot_argmax, register


def softmax_vjp(p: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    """J(p)^T c for the softmax Jacobian at probabilities p: p * c - p * (p . c), per row."""
    pc = p * c
    return pc - p * pc.sum(dim=-1, keepdim=True)


class _ReinMax(torch.autograd.Function):
    """Forward: exactly `hard`. Backward: the ReinMax gradient (Algorithm 2) to `alpha`."""

    @staticmethod
    def forward(ctx, alpha: torch.Tensor, hard: torch.Tensor, tau: float) -> torch.Tensor:
        ctx.save_for_backward(alpha, hard)
        ctx.tau = tau
        return hard.clone()

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None, None]:
        alpha, hard = ctx.saved_tensors
        pi_0 = F.softmax(alpha, dim=-1)  # (E, K)
        pi_1 = 0.5 * (hard + F.softmax(alpha / ctx.tau, dim=-1))
        return 2.0 * softmax_vjp(pi_1, grad) - 0.5 * softmax_vjp(pi_0, grad), None, None


def reinmax(alpha: torch.Tensor, tau: float, noise: torch.Tensor) -> torch.Tensor:
    """One-hot sample of Categorical(softmax(alpha)) (Gumbel-max with `noise`), ReinMax gradient; float32."""
    alpha = alpha.float()
    hard = one_hot_argmax(F.log_softmax(alpha.detach(), dim=-1) + noise)  # (E, K)
    return _ReinMax.apply(alpha, hard, tau)


@register
class ReinMax(Sampler):
    name = "reinmax"
    one_hot = True

    def weights(self, alpha: torch.Tensor, tau: float, generator: torch.Generator) -> torch.Tensor:
        return reinmax(alpha, check_tau(tau), noise_like(alpha, generator))
