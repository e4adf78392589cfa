"""DARTS (Liu et al., ICLR 2019, eq. 2): the op weights are softmax(alpha); every op is computed and
the gradient is the exact gradient of the relaxed (continuous) loss. The temperature is not used."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from nas.sampling.base import Sampler, register


@register
class Softmax(Sampler):
    name = "softmax"
    uses_tau = False

    def weights(self, alpha: torch.Tensor, tau: float, generator: torch.Generator) -> torch.Tensor:
        return F.softmax(alpha.float(), dim=-1)
