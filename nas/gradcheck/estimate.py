"""Samples of every estimator's architecture gradient, and their bias and variance against the exact one.

Estimate i of a sampler at temperature tau is the alpha gradient one first-order architecture step would
compute on the fixed batch, with the sampler's noise drawn from a generator seeded by (seed, i): the same
noise for every sampler and temperature (common random numbers), so differences between estimators are
not differences of luck. One-hot samplers (gumbel_st, gdas, reinmax, gumbel_rao) therefore choose the same
architecture in estimate i, whatever tau.

An estimate is computed in two halves, like the second-order step does: dL/dW at the sampled op weights
W (W a leaf tensor, the supernet run as the architecture step runs it: every op for soft or one-hot
weights, only the chosen ops where the sampler says so), then the vector-Jacobian product through the
sampler to alpha. The first half depends only on W (and on which ops run), so it is cached: a one-hot
sample's dL/dW serves every temperature and every straight-through variant, softmax's every estimate.
"""

from __future__ import annotations

import math
from dataclasses import replace

import torch
import torch.nn.functional as F

from nas.data.loaders import derive_seed
from nas.sampling import ArchSample, Sampler, sample_architecture


class Upstream:
    """dL/dW of the supernet's loss on one batch at op weights W, cached by W's exact value and its
    chosen-op flags."""

    def __init__(
        self, model: torch.nn.Module, batch: tuple[torch.Tensor, torch.Tensor], criterion=F.cross_entropy
    ):
        self.model, self.batch, self.criterion = model, batch, criterion
        self.cache: dict[tuple, list[torch.Tensor]] = {}
        self.passes = 0  # forward+backward passes actually run

    def __call__(self, samples: dict[str, ArchSample]) -> list[torch.Tensor]:
        key = tuple(
            (
                name,
                s.weights.detach().cpu().numpy().tobytes(),
                tuple(s.choices or ()),
                s.unchosen_grad,
                s.detach_unchosen,
            )
            for name, s in samples.items()
        )
        if key not in self.cache:
            leaves = {
                name: replace(s, weights=s.weights.detach().clone().requires_grad_())
                for name, s in samples.items()
            }
            x, y = self.batch
            loss = self.criterion(self.model(x, leaves), y)
            inputs = [s.weights for s in leaves.values()]
            grads = torch.autograd.grad(loss, inputs, allow_unused=True)
            self.cache[key] = [torch.zeros_like(w) if g is None else g for w, g in zip(inputs, grads)]
            self.passes += 1
        return self.cache[key]


def estimates(
    sampler: Sampler, alphas: dict[str, torch.Tensor], tau: float, n: int, seed: int, upstream: Upstream
) -> torch.Tensor:
    """n gradient estimates (n, D), flattened over the sorted cell types, float64."""
    out = []
    for i in range(n):
        generator = torch.Generator().manual_seed(derive_seed(seed, i))
        leaves = {name: a.detach().clone().requires_grad_() for name, a in sorted(alphas.items())}
        samples = sample_architecture(leaves, sampler, tau, generator)
        weights = [samples[name].weights for name in leaves]
        grads = torch.autograd.grad(weights, list(leaves.values()), upstream(samples), allow_unused=True)
        grads = [torch.zeros_like(a) if g is None else g for a, g in zip(leaves.values(), grads)]
        out.append(torch.cat([g.flatten() for g in grads]).double().cpu())
    return torch.stack(out)


def _cosine(a: torch.Tensor, b: torch.Tensor) -> float:
    denominator = (a.norm() * b.norm()).item()
    return float(a @ b) / denominator if denominator > 0 else 0.0


def statistics(g: torch.Tensor, exact: torch.Tensor, edges: int) -> dict:
    """Bias and variance of the estimates g (N, D) of `exact` (D,), D = edges x ops.

    - cosine: of the mean estimate with the exact gradient (1 = right direction); `cosine_unbiased`: what
      an unbiased estimator with the same variance reaches on average with N samples, ~ |g*| /
      sqrt(|g*|^2 + tr(Cov)/N) (the mean's own noise: a cosine well below it means bias);
    - rel_bias2: |E[g] - g*|^2 / |g*|^2, estimated without the noise of the mean (|mean - g*|^2 - tr(Cov)/N);
    - rel_variance: tr(Cov) / |g*|^2, per single estimate; rel_mse = rel_bias2 + rel_variance (measured);
    - sign_agreement: the fraction of (edge, op) entries where the mean estimate's sign is the exact one's,
      per edge and overall; sign_agreement_sample: the same for single estimates, averaged.
    """
    n = g.shape[0]
    mean = g.mean(0)
    norm2 = float(exact @ exact) or float("nan")
    variance = float(g.var(0).sum())  # trace of the sample covariance (unbiased)
    bias2 = float((mean - exact) @ (mean - exact)) - variance / n
    same = torch.sign(mean) == torch.sign(exact)  # (D,)
    per_edge = same.view(edges, -1).double().mean(1)
    return {
        "cosine": _cosine(mean, exact),
        "cosine_unbiased": math.sqrt(norm2 / (norm2 + variance / n)),
        "rel_bias2": bias2 / norm2,
        "rel_variance": variance / norm2,
        "rel_mse": float(((g - exact) ** 2).sum(1).mean()) / norm2,
        "sign_agreement": float(per_edge.mean()),
        "sign_agreement_sample": float((torch.sign(g) == torch.sign(exact)).double().mean()),
        "sign_agreement_per_edge": per_edge.tolist(),
        "cosine_sample": float(torch.stack([torch.tensor(_cosine(x, exact)) for x in g]).mean()),
        "mean": mean.tolist(),
        "norm_ratio": float(mean.norm()) / math.sqrt(norm2),
    }
