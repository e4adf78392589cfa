"""Architecture regularisers: terms on alpha alone, added to the architecture loss for every sampler
(`search.arch.beta_decay`, `search.arch.entropy`). Each weight ramps linearly from 0 at
`search.arch_start_epoch` to its configured value at the last epoch, as beta-DARTS ramps its lambda.

- beta decay (Ye et al., "beta-DARTS: Beta-Decay Regularization for Differentiable Architecture Search",
  CVPR 2022): lambda * mean over edges of logsumexp(alpha_e). Its gradient is lambda * softmax(alpha_e) / E:
  every logit is pushed down in proportion to its probability. Under Adam, whose step divides each
  coordinate's gradient by its running magnitude, that term sets the scale of every coordinate, so the
  loss gradient reaches alpha_k roughly divided by p_k: ops compete by the loss difference they make, not by
  the probability they already have, which damps the rich-get-richer drift (skip connections in DARTS). The
  paper ramps lambda from 0 to 50 over a 100-epoch NAS-Bench-201 search.
- entropy: w * mean over edges of the entropy of the sampler's op probabilities (`Sampler.probs`):
  w > 0 sharpens the distribution (minimising entropy), w < 0 keeps it spread.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import torch

from nas.sampling import Sampler


def beta_decay(alphas: Mapping[str, torch.Tensor]) -> torch.Tensor:
    """Mean over every edge of every cell type of logsumexp(alpha_e)."""
    return torch.cat([a.float().logsumexp(dim=-1) for a in alphas.values()]).mean()


def mean_entropy(alphas: Mapping[str, torch.Tensor], sampler: Sampler) -> torch.Tensor:
    """Mean over every edge of every cell type of the entropy (nats) of the sampler's op probabilities."""
    probs = torch.cat([sampler.probs(a) for a in alphas.values()])  # (E, K)
    return -(probs * probs.clamp_min(1e-30).log()).sum(-1).mean()


def ramp(epoch: int, start: int, epochs: int) -> float:
    """0 at `start` (the first architecture epoch), rising linearly to 1 at the last epoch."""
    if epochs - 1 <= start:
        return 1.0
    return min(1.0, max(0.0, (epoch - start) / (epochs - 1 - start)))


def arch_penalty(
    beta: float, entropy: float, sampler: Sampler, scale: Callable[[], float]
) -> Callable[[dict[str, torch.Tensor]], torch.Tensor] | None:
    """alphas -> scale() * (beta * beta_decay + entropy * mean_entropy); None when both weights are 0.

    Args:
        scale: the ramp's current value (read at every call, so the runner's epoch moves it).
    """
    if beta == 0 and entropy == 0:
        return None

    def penalty(alphas: dict[str, torch.Tensor]) -> torch.Tensor:
        terms = []
        if beta:
            terms.append(beta * beta_decay(alphas))
        if entropy:
            terms.append(entropy * mean_entropy(alphas, sampler))
        return scale() * sum(terms)

    return penalty
