"""DrNAS (Chen, Wang, Cheng, Tang & Hsieh, "DrNAS: Dirichlet Neural Architecture Search", ICLR 2021):
the op weights of every edge are a sample w ~ Dirichlet(beta), beta = elu(alpha) + 1, with a
reparameterised (pathwise) gradient; every op is computed.

- Concentration: beta = elu(alpha) + 1 > 0, as the DrNAS code does (`process_step_vector`, `F.elu(x) + 1`),
  floored at 1e-6 so that no alpha (down to -1e4) gives a degenerate Dirichlet.
- Regulariser (paper sec. 2.2, code `_get_kl_reg`): kl_weight * sum over edges and cell types of
  KL(Dirichlet(beta) || Dirichlet(prior * 1)), added to the architecture loss; the code's anchor is
  Dirichlet(1) and its scale `reg_scale` 1e-3 (its other choice, reg_type l2, is `search.arch.weight_decay`
  here; `sampler.kl_weight=0` leaves only that).
- Probabilities (derive, diagnostics): the Dirichlet mean beta / sum(beta). The DrNAS code derives from
  softmax(alpha) instead; both have the same argmax per edge (elu is increasing), so NB201's derive rule is
  unchanged, while DARTS' ranking of a node's incoming edges by their strongest op can differ. The mean is
  what this sampler draws around, so the gradient check compares against E_{z ~ Cat(mean)}[L(z)].
- No temperature: tau is ignored.

Sampling from our seeded generator: w = softmax(log g), g_k ~ Gamma(beta_k, 1) independent, with log g
from `log_gamma` (below) in float64 on the CPU; the gradient is the implicit reparameterisation gradient
(Figurnov, Mohamed & Mnih, "Implicit Reparameterization Gradients", NeurIPS 2018) that torch's own
Dirichlet.rsample uses, from `torch._standard_gamma_grad`.

Gamma(b) draws use boosting, Gamma(b) = Gamma(b + 1) * U^(1/b) (Marsaglia & Tsang 2000, sec. 6), with
Gamma(a = b + 1 >= 1) by Marsaglia & Tsang's squeeze method ("A Simple Method for Generating Gamma
Variables", ACM TOMS 2000): d = a - 1/3, c = 1/sqrt(9d), x ~ N(0, 1), v = (1 + c x)^3, u ~ U(0, 1);
accept d * v if v > 0 and log u < x^2/2 + d - d v + d log v. Every element gets `CANDIDATES` proposals at
once (acceptance >= 95% each, so all fail with probability < 1e-5), drawn in a fixed amount from the
generator; the rare element left without one draws again until it has one, so the samples are exact.
Working with log g keeps tiny concentrations finite (U^(1/b) underflows for b ~ 1e-3).
Gradient: d log g / d b = (dG/da) / G - log(U) / b^2, with dG/da = `_standard_gamma_grad(a, G)`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch.distributions import Dirichlet, kl_divergence

from nas.core.errors import UserError
from nas.core.limits import Range
from nas.sampling.base import Sampler, SamplerConfig, register

BETA_MIN = 1e-6
CANDIDATES = 4  # Marsaglia-Tsang proposals drawn per element and call
MAX_ROUNDS = 100  # all fail with probability < 1e-5 a round for finite a >= 1: 100 rounds never all fail


@dataclass
class DrNASOptions(SamplerConfig):
    prior: float = 1.0  # concentration of the Dirichlet(prior * 1) anchor of the KL term
    kl_weight: float = 1e-3  # scale of the KL term (DrNAS `reg_scale`); 0 = off

    RANGES: ClassVar[dict[str, Range]] = {"prior": Range(1e-3, 1e3), "kl_weight": Range(0, 1e6)}


def _marsaglia_tsang(a: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Gamma(a, 1) samples for a >= 1 (float64, CPU), every element from `generator`.

    Raises:
        UserError: `a` is not finite (the alphas diverged), or, as a guard that should never fire, an
            element found no accepted proposal in `MAX_ROUNDS` rounds: a rejection loop never spins forever.
    """
    if not bool(torch.isfinite(a).all()):
        raise UserError(
            "the DrNAS concentrations are not finite: the architecture parameters diverged; start a new run "
            "with a lower search.arch.lr or sampler.kl_weight"
        )
    d = a - 1.0 / 3.0
    c = 1.0 / torch.sqrt(9.0 * d)
    out = torch.full_like(a, float("nan"))
    todo = torch.ones_like(a, dtype=torch.bool)
    for _ in range(
        MAX_ROUNDS
    ):  # one round almost always; further rounds only for the elements still without one
        if not todo.any():
            return out
        d_, c_ = d[todo], c[todo]
        x = torch.randn((CANDIDATES, *d_.shape), generator=generator, dtype=torch.float64)
        u = torch.rand((CANDIDATES, *d_.shape), generator=generator, dtype=torch.float64)
        v = (1.0 + c_ * x) ** 3
        ok = (v > 0) & (u.log() < 0.5 * x**2 + d_ - d_ * v + d_ * v.clamp_min(1e-300).log())
        first = ok.to(torch.int8).argmax(dim=0, keepdim=True)  # the first accepted proposal
        found = ok.any(dim=0)
        value = (d_ * v.gather(0, first)[0])[found]
        idx = todo.nonzero(as_tuple=True)
        out[tuple(i[found] for i in idx)] = value
        todo[tuple(i[found] for i in idx)] = False
    if todo.any():
        raise UserError(
            f"the DrNAS Gamma sampler accepted no proposal in {MAX_ROUNDS} rounds (a < {a.max().item():g})"
        )
    return out


def log_gamma(beta: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """log g, g ~ Gamma(beta, 1) elementwise, and d log g / d beta (implicit reparameterisation).

    Args:
        beta: concentrations > 0, float64 on the CPU.
    """
    a = beta + 1.0
    big = _marsaglia_tsang(a, generator)  # Gamma(beta + 1)
    u = torch.rand(beta.shape, generator=generator, dtype=torch.float64).clamp_min(
        torch.finfo(torch.float64).tiny
    )
    log_u = u.log()
    log_g = big.log() + log_u / beta  # boosting
    d_log_g = torch._standard_gamma_grad(a, big) / big - log_u / beta**2
    return log_g, d_log_g


class _LogGamma(torch.autograd.Function):
    """log of Gamma(beta, 1) draws from `generator` (float64, on beta's device), implicit gradient."""

    @staticmethod
    def forward(ctx, beta: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        log_g, d_log_g = log_gamma(beta.detach().double().cpu(), generator)
        ctx.save_for_backward(d_log_g.to(beta.device))
        ctx.dtype = beta.dtype
        return log_g.to(beta.device)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        (d_log_g,) = ctx.saved_tensors
        return (grad * d_log_g).to(ctx.dtype), None


def concentration(alpha: torch.Tensor) -> torch.Tensor:
    """beta = elu(alpha) + 1, floored at BETA_MIN (float64)."""
    return (F.elu(alpha.double()) + 1.0).clamp_min(BETA_MIN)


def dirichlet_sample(alpha: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """w ~ Dirichlet(elu(alpha) + 1) per row, reparameterised; float32 (E, K)."""
    log_g = _LogGamma.apply(concentration(alpha), generator)  # (E, K) float64
    return F.softmax(log_g, dim=-1).float()


@register
class DrNAS(Sampler):
    name = "drnas"
    Options = DrNASOptions
    uses_tau = False

    def weights(self, alpha: torch.Tensor, tau: float, generator: torch.Generator) -> torch.Tensor:
        return dirichlet_sample(alpha, generator)

    def probs(self, alpha: torch.Tensor) -> torch.Tensor:
        beta = concentration(alpha)
        return (beta / beta.sum(dim=-1, keepdim=True)).float()

    def derive_logits(self, alpha: torch.Tensor) -> torch.Tensor:
        return self.probs(alpha).log()

    def extra_loss(self, alphas: Mapping[str, torch.Tensor]) -> torch.Tensor | None:
        if self.options.kl_weight == 0:
            return None
        total = 0.0
        for name in sorted(alphas):
            beta = concentration(alphas[name])  # (E, K)
            prior = Dirichlet(torch.full_like(beta, self.options.prior))
            total = total + kl_divergence(Dirichlet(beta), prior).sum()
        return (self.options.kl_weight * total).float()
