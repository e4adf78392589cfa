"""Gumbel-Rao (Paulus, Maddison & Krause, "Rao-Blackwellizing the Straight-Through Gumbel-Softmax
Gradient Estimator", ICLR 2021): straight-through Gumbel-softmax with its soft gradient averaged over the
Gumbel noise *given* the hard sample.

Straight-through Gumbel-softmax (`gumbel_st`) backpropagates c = df/dD through y = softmax((theta + G)/tau)
for the one noise G that produced D = onehot(argmax(theta + G)), theta = log_softmax(alpha). Because f
sees only D, E[grad | D] = J_D^T c with J_D = E[d softmax((theta + G)/tau) / d theta | D], and replacing
the single-noise Jacobian by that conditional mean (Rao-Blackwellisation, Paulus et al. eq. 5) keeps the
expectation of the estimator and lowers its variance. It is estimated with K = `sampler.mc_samples`
conditional draws G_k ~ G | D (eq. 6):

    grad = (1/K) sum_k d softmax((theta + G_k) / tau) / d theta,  taken with G_k held fixed.

The paper notes that the derivative is taken "through both theta and G_k"; with the conditional draws
reparameterised as functions of theta that would change the estimator's expectation, so (as in the
widely used reference implementation, nshepperd/gumbel-rao-pytorch) the noise is held fixed here: the
expectation then equals `gumbel_st`'s exactly (tested in tests/test_estimators.py).

Conditional Gumbels given the argmax i (the "top-down" construction: Maddison, Tarlow & Minka, "A*
Sampling", NeurIPS 2014; Paulus et al. 2021, appendix): with E_j ~ Exp(1) iid and Z = sum_j exp(theta_j),
the perturbed logits Y = theta + G given argmax Y = i are

    Y_i = log Z - log E_i                      (the max of theta + G is Gumbel(log Z), independent of i)
    Y_j = -log(E_j exp(-theta_j) + exp(-Y_i))  (j != i: Gumbel(theta_j) truncated below Y_i)

The forward pass is one-hot (the same choice `gumbel_st` makes for the same noise), so every op is computed
in the architecture step and only the chosen ops in the weight step. The K draws cost K*E*K exponentials
and a softmax each: nothing next to the supernet.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F

from nas.core.limits import Range
from nas.sampling.base import (
    Sampler,
    SamplerConfig,
    check_tau,
    exponential_noise,
    noise_like,
    one_hot_argmax,
    register,
    straight_through,
)


@dataclass
class GumbelRaoOptions(SamplerConfig):
    mc_samples: int = 10  # K, conditional Gumbel draws per sample (Paulus et al. use 10 to 1000)

    RANGES: ClassVar[dict[str, Range]] = {"mc_samples": Range(1, 10_000)}  # K x E x K floats per step


def conditional_gumbel(theta: torch.Tensor, hard: torch.Tensor, exp_noise: torch.Tensor) -> torch.Tensor:
    """Perturbed logits Y = theta + G (K, E, N) whose argmax is `hard`'s index on every row.

    Args:
        theta: logits (E, N), not necessarily normalised.
        hard: one-hot (E, N), the argmax to condition on.
        exp_noise: Exp(1) draws (K, E, N).
    """
    log_z = torch.logsumexp(theta, dim=-1, keepdim=True)  # (E, 1)
    log_e = exp_noise.log()  # (K, E, N)
    top = log_z - (log_e * hard).sum(dim=-1, keepdim=True)  # (K, E, 1): Y_i
    rest = -torch.logaddexp(log_e - theta, -top)  # (K, E, N): Y_j, j != i
    return torch.where(hard.bool(), top, rest)


def gumbel_rao(alpha: torch.Tensor, tau: float, noise: torch.Tensor, exp_noise: torch.Tensor) -> torch.Tensor:
    """One-hot Gumbel-max sample (noise (E, N)) with the Rao-Blackwellised soft gradient (exp_noise
    (K, E, N): the conditional draws); float32."""
    theta = F.log_softmax(alpha.float(), dim=-1)  # (E, N)
    hard = one_hot_argmax(theta.detach() + noise)
    with torch.no_grad():
        g = conditional_gumbel(theta, hard, exp_noise) - theta  # (K, E, N) noise, held fixed
    soft = F.softmax((theta + g) / tau, dim=-1).mean(dim=0)  # (E, N)
    return straight_through(soft, hard)


@register
class GumbelRao(Sampler):
    name = "gumbel_rao"
    Options = GumbelRaoOptions
    one_hot = True

    def weights(self, alpha: torch.Tensor, tau: float, generator: torch.Generator) -> torch.Tensor:
        tau = check_tau(tau)
        noise = noise_like(alpha, generator)
        exp_noise = exponential_noise((self.options.mc_samples, *alpha.shape), generator).to(alpha.device)
        return gumbel_rao(alpha, tau, noise, exp_noise)
