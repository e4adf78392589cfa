"""The architecture step of bilevel search (DARTS, Liu et al. 2019, sec. 2.3).

First order (DARTS eq. 6 with xi = 0): alpha <- alpha - lr_alpha * grad_alpha L_val(w, alpha), where
the gradient reaches alpha through the sampler's op weights. Only alpha is touched: the weight gradients
are never computed (`torch.autograd.grad` w.r.t. alpha only), so this costs one forward and one
activation-only backward. Second order (DARTS eq. 7-8) lives in `nas.search.unrolled`. A sampler's extra
architecture loss (e.g. DrNAS' KL term) is added to the validation loss in both.

The Architect is the search loop's one owner of sampling: it holds the sampler and its noise generator,
draws the architecture step's sample and, from detached alphas, the weight step's (`sample_for_weights`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn as nn

from nas.arch.space import Supernet
from nas.sampling import ArchSample, Sampler, sample_architecture, sample_paths
from nas.sampling.schedules import LearnedTemperature

Loss = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
Penalty = Callable[[dict[str, torch.Tensor]], torch.Tensor]


def combine(penalties: list[Penalty | None]) -> Penalty | None:
    """The sum of the given alpha-only penalties (None entries skipped); None when there are none."""
    terms = [p for p in penalties if p is not None]
    if not terms:
        return None
    if len(terms) == 1:
        return terms[0]
    return lambda alphas: sum(p(alphas) for p in terms)


class Architect:
    """Owns the alpha optimiser and the sampling, and performs one architecture update per call.

    Args:
        model: the supernet (possibly the same module wrapped for distributed use: `forward` is called
            on `forward_model`, parameters are read from `model`).
        sampler: the estimator (`nas.sampling.build_sampler`).
        generator: its noise stream (CPU, seeded; saved in checkpoints by the runner).
        grad_hook: called with the list of alpha gradients before the optimiser step (e.g. an
            all-reduce across ranks).
        xi: virtual step size of the second-order step (`nas.search.unrolled`); None = the weight lr.
        penalty: a loss on alpha alone, alphas dict -> scalar (the cost term, `nas.cost.expected`); its
            gradient is added to the validation loss's, so first and second order treat it alike.
        temperature: a learned tau (`tau.schedule=learned`, first order only): the architecture step
            samples with its value, differentiates the loss in it too, and projects it after the step.
        weight_sample: what the weight step trains (`search.weight_sample`): "sampler" = the sampler's own
            sample, "one_hot" = one path drawn exactly from its distribution (`sample_paths`), which for a
            one-hot sampler is its own sample anyway.
    """

    def __init__(
        self,
        model: Supernet,
        optimizer: torch.optim.Optimizer,
        criterion: Loss,
        sampler: Sampler,
        generator: torch.Generator,
        autocast: Callable[[], Any],
        bilevel: str = "first_order",
        forward_model: nn.Module | None = None,
        grad_hook: Callable[[list[torch.Tensor]], None] | None = None,
        xi: float | None = None,
        penalty: Callable[[dict[str, torch.Tensor]], torch.Tensor] | None = None,
        temperature: LearnedTemperature | None = None,
        weight_sample: str = "sampler",
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
        self.penalty = penalty
        self.temperature = temperature
        self.paths = weight_sample == "one_hot" and not sampler.one_hot

    def sample(self, tau: float) -> dict[str, ArchSample]:
        """The architecture step's sample: differentiable in alpha. In a first-order step a one-hot
        sampler's unchosen ops run without autograd (same gradient, no backward pass through them); the
        second-order step differentiates through weight gradients, where they do contribute."""
        return sample_architecture(
            dict(self.model.alphas), self.sampler, tau, self.generator,
            detach_unchosen=self.bilevel == "first_order",
        )  # fmt: skip

    def sample_for_weights(self, tau: float) -> dict[str, ArchSample]:
        """The weight step's sample, from detached alphas: no alpha gradient is computed or accumulated,
        and a one-hot sample runs only its chosen ops."""
        alphas = {k: a.detach() for k, a in self.model.alphas.items()}
        if self.paths:
            return sample_paths(alphas, self.sampler, self.generator)
        return sample_architecture(alphas, self.sampler, tau, self.generator, chosen_only=True)

    def extra_loss(self) -> torch.Tensor | None:
        return self.sampler.extra_loss(dict(self.model.alphas))

    def step(
        self,
        val: tuple[torch.Tensor, torch.Tensor],
        train: tuple[torch.Tensor, torch.Tensor],
        tau: float,
        weight_lr: float,
        weight_optimizer: torch.optim.Optimizer,
    ) -> dict[str, torch.Tensor]:
        """One alpha update. Returns detached `loss` (the validation loss, without the sampler's extra
        term) and `correct` of the validation batch."""
        alphas = self.model.arch_parameters()
        if self.temperature is not None:  # the learned tau is differentiated like alpha
            alphas = [*alphas, self.temperature.theta]
            tau = self.temperature.value()
        samples = self.sample(tau)
        if self.bilevel == "second_order":
            from nas.search.unrolled import unrolled_step  # second order lives on its own

            xi = weight_lr if self.xi is None else self.xi
            loss, logits, grads = unrolled_step(
                self.model, samples, self.criterion, val, train, xi, weight_optimizer, self.autocast
            )
            extra = self.extra_loss()
            if extra is not None:
                extra_grads = torch.autograd.grad(extra, alphas, allow_unused=True)
                grads = [g if e is None else g + e for g, e in zip(grads, extra_grads)]
        else:
            x, y = val
            with self.autocast():
                logits = self.forward_model(x, samples)
                loss = self.criterion(logits, y)
            extra = self.extra_loss()
            grads = list(torch.autograd.grad(loss if extra is None else loss + extra, alphas))
        if self.penalty is not None:
            extra = torch.autograd.grad(self.penalty(dict(self.model.alphas)), alphas, allow_unused=True)
            extra = [torch.zeros_like(p) if e is None else e for p, e in zip(alphas, extra)]
            grads = [g + e.to(g.dtype) for g, e in zip(grads, extra)]
        if self.grad_hook is not None:
            self.grad_hook(grads)
        for p, g in zip(alphas, grads):
            p.grad = g
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        if self.temperature is not None:
            self.temperature.project()
        return {"loss": loss.detach(), "correct": (logits.detach().argmax(1) == val[1]).sum()}
