"""The architecture step of bilevel search (DARTS, Liu et al. 2019, sec. 2.3).

First order (DARTS eq. 6 with xi = 0): alpha <- alpha - lr_alpha * grad_alpha L_val(w, alpha), where
the gradient reaches alpha through the sampler's op weights. Only alpha is touched: the weight gradients
are never computed (`torch.autograd.grad` w.r.t. alpha only), so this costs one forward and one
activation-only backward. Second order (DARTS eq. 7-8) lives in `nas.search.unrolled`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn as nn

from nas.sampling import ArchSample, sample_architecture
from nas.space import Supernet

Loss = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


class Architect:
    """Owns the alpha optimiser and performs one architecture update per call.

    Args:
        model: the supernet (possibly the same module wrapped for distributed use: `forward` is called
            on `forward_model`, parameters are read from `model`).
        grad_hook: called with the list of alpha gradients before the optimiser step (e.g. an
            all-reduce across ranks).
        xi: virtual step size of the second-order step (`nas.search.unrolled`); None = the weight lr.
        unchosen_grad: hard samplers only: the unchosen ops' weights get a gradient too (`MixedOp`).
        penalty: a loss on alpha alone, alphas dict -> scalar (the cost term, `nas.cost.expected`); its
            gradient is added to the validation loss's, so first and second order treat it alike.
    """

    def __init__(
        self,
        model: Supernet,
        optimizer: torch.optim.Optimizer,
        criterion: Loss,
        sampler: str,
        generator: torch.Generator,
        autocast: Callable[[], Any],
        bilevel: str = "first_order",
        forward_model: nn.Module | None = None,
        grad_hook: Callable[[list[torch.Tensor]], None] | None = None,
        xi: float | None = None,
        unchosen_grad: bool = False,
        penalty: Callable[[dict[str, torch.Tensor]], torch.Tensor] | None = None,
    ):
        self.model = model
        self.forward_model = forward_model or model
        self.optimizer = optimizer
        self.criterion = criterion
        self.sampler = sampler
        self.generator = generator
        self.autocast = autocast
        self.bilevel = bilevel
        self.grad_hook = grad_hook
        self.xi = xi
        self.unchosen_grad = unchosen_grad
        self.penalty = penalty

    def sample(self, tau: float) -> dict[str, ArchSample]:
        return sample_architecture(
            dict(self.model.alphas), self.sampler, tau, self.generator, self.unchosen_grad
        )

    def step(
        self,
        val: tuple[torch.Tensor, torch.Tensor],
        train: tuple[torch.Tensor, torch.Tensor],
        tau: float,
        weight_lr: float,
        weight_optimizer: torch.optim.Optimizer,
    ) -> dict[str, torch.Tensor]:
        """One alpha update. Returns detached `loss` and `correct` of the validation batch."""
        alphas = self.model.arch_parameters()
        if self.bilevel == "second_order":
            from nas.search.unrolled import unrolled_step  # second order lives on its own

            loss, logits, grads = unrolled_step(self, val, train, tau, weight_lr, weight_optimizer)
        else:
            samples = self.sample(tau)
            x, y = val
            with self.autocast():
                logits = self.forward_model(x, samples)
                loss = self.criterion(logits, y)
            grads = list(torch.autograd.grad(loss, alphas))
        if self.penalty is not None:
            extra = torch.autograd.grad(self.penalty(dict(self.model.alphas)), alphas)
            grads = [g + e.to(g.dtype) for g, e in zip(grads, extra)]
        if self.grad_hook is not None:
            self.grad_hook(grads)
        for p, g in zip(alphas, grads):
            p.grad = g
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        return {"loss": loss.detach(), "correct": (logits.detach().argmax(1) == val[1]).sum()}
