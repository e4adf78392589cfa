"""The sampler interface, Gumbel noise, and sampling every cell type at once.

A sampler is one registered object (`Sampler` subclass, one file per estimator in this package) that maps
architecture logits `alpha` (E, K) (E edges, K candidate ops) and a temperature to op weights (E, K):

- `weights(alpha, tau, generator)`: the op weights, differentiable in alpha (its gradient estimator);
- `chosen_only`: the MixedOp runs only the chosen op, in the architecture step too (GDAS);
- `one_hot`: the forward weights are exactly one-hot, so where no alpha gradient is needed (the weight
  step) running only the chosen ops gives the same output and the same weight gradients;
- `probs(alpha)`: the op probabilities of its distribution (what derive and the diagnostics read);
- `extra_loss(alphas)`: an optional term added to the architecture loss (e.g. DrNAS' KL);
- `Options`: its typed options, a `SamplerConfig` subclass (`sampler.<option>` keys, checked in `check`);
- `state_dict` / `load_state_dict`: its state in checkpoints (none for the samplers here).

Noise is drawn in float32 on the CPU from a seeded `torch.Generator` (saved in checkpoints), then moved to
alpha's device: the same seed gives the same architectures on CPU and GPU and on every rank.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F

from nas.core.errors import UserError
from nas.core.registry import Registry


@dataclass
class SamplerConfig:
    """The keys every sampler has (the `sampler` section of a search config). Each sampler's own options
    (`sampler.<option>`) live in a subclass next to its code (the sampler's `Options`); `nas.config.load_config`
    types the `sampler` section by the chosen `name`, so an option of another sampler is an unknown key.
    It lives here, not in `nas.config`, so that the samplers need nothing from the config loader (which
    looks the samplers up)."""

    name: str = "gdas"  # see SAMPLERS
    # samplers that run only the chosen op (gdas): also give the unchosen ops' weights a gradient (the
    # reference GDAS code's form on NB201); null = the search space's reference form (NB201: true, DARTS: false)
    unchosen_grad: bool | None = None


@dataclass
class ArchSample:
    """Op weights for one cell type; `choices` is set where the forward pass is one-hot and the MixedOp
    may exploit it: only the chosen ops run, or (`detach_unchosen`) every op runs but only the chosen one
    with autograd."""

    weights: torch.Tensor  # (E, K)
    choices: list[int] | None = None  # host-side chosen op per edge
    # chosen-only: unchosen weights get a gradient too (see nas.arch.mixed_op.MixedOp)
    unchosen_grad: bool = False
    detach_unchosen: bool = False  # every op runs, the unchosen ones without autograd (see MixedOp)
    probes: list[list[int]] | None = None  # chosen-only: unchosen ops also run forward-only, per edge (gdas)
    probe_scale: float = 1.0  # the weight of a probed op's gradient entry

    def edge(self, e: int) -> tuple[torch.Tensor, int | None, bool, bool, list[int], float]:
        """Arguments of edge e's `MixedOp.forward` after the input:
        (weights (K,), choice, unchosen_grad, detach_unchosen, probes, probe_scale)."""
        choice = None if self.choices is None else self.choices[e]
        probes = [] if self.probes is None else self.probes[e]
        return self.weights[e], choice, self.unchosen_grad, self.detach_unchosen, probes, self.probe_scale


def check_tau(tau: float | torch.Tensor) -> float | torch.Tensor:
    """tau must be a finite number > 0 (tau = 0 is the undefined argmax limit). A 0-dim tensor (a learned
    temperature, `tau.schedule=learned`) is checked by value and returned as it is, so that the gradient
    reaches it."""
    value = float(tau.detach()) if isinstance(tau, torch.Tensor) else float(tau)
    if not (math.isfinite(value) and value > 0):
        raise UserError(f"temperature tau must be finite and > 0, got {value}")
    return tau if isinstance(tau, torch.Tensor) else value


def exponential_noise(shape: torch.Size | tuple[int, ...], generator: torch.Generator) -> torch.Tensor:
    """Exp(1) noise in float32 on the generator's device, clamped away from 0 (exponential_ can return 0
    with probability ~2^-24), so that -log of it is finite."""
    e = torch.empty(shape, dtype=torch.float32, device=generator.device).exponential_(generator=generator)
    return e.clamp_min(torch.finfo(torch.float32).tiny)


def gumbel_noise(shape: torch.Size | tuple[int, ...], generator: torch.Generator) -> torch.Tensor:
    """Standard Gumbel(0, 1) noise in float32 on the generator's device: g = -log(E), E ~ Exp(1)."""
    return -exponential_noise(shape, generator).log()


def noise_like(alpha: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Gumbel noise of alpha's shape from the CPU generator, on alpha's device."""
    return gumbel_noise(alpha.shape, generator).to(alpha.device, non_blocking=True)


class _StraightThrough(torch.autograd.Function):
    """Forward: exactly `hard`. Backward: the incoming gradient goes to `soft` unchanged."""

    @staticmethod
    def forward(ctx, soft: torch.Tensor, hard: torch.Tensor) -> torch.Tensor:
        return hard.clone()

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        return grad, None


def one_hot_argmax(x: torch.Tensor) -> torch.Tensor:
    """(..., K) -> exact zeros and ones at the argmax of the last dimension (ties to the lower index)."""
    return torch.zeros_like(x).scatter_(-1, x.argmax(dim=-1, keepdim=True), 1.0)


def straight_through(soft: torch.Tensor, hard: torch.Tensor | None = None) -> torch.Tensor:
    """`hard` (default: the one-hot argmax of `soft`) in the forward pass, d/d soft = identity."""
    return _StraightThrough.apply(soft, one_hot_argmax(soft.detach()) if hard is None else hard)


def gumbel_softmax(alpha: torch.Tensor, tau: float | torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """softmax((log_softmax(alpha) + g) / tau) in float32; finite for tau >= 0.01 and |alpha| <= 1e4. tau
    may be a 0-dim tensor (a learned temperature): the sample is then differentiable in it."""
    logits = F.log_softmax(alpha.float(), dim=-1) + noise  # (E, K)
    return F.softmax(logits / tau, dim=-1)


class Sampler:
    """One architecture gradient estimator (see the module docstring). Subclasses set `name`, the flags
    and `Options`, and implement `weights`; register them with `@register`."""

    name: ClassVar[str]
    Options: ClassVar[type[SamplerConfig]] = SamplerConfig
    chosen_only: ClassVar[bool] = False
    one_hot: ClassVar[bool] = False
    uses_tau: ClassVar[bool] = True
    learns_tau: ClassVar[bool] = False  # its alpha gradient is differentiable in tau (`tau.schedule=learned`)

    def __init__(self, options: SamplerConfig | None = None, unchosen_grad: bool = False):
        self.options = options if options is not None else self.Options(name=self.name)
        self.unchosen_grad = unchosen_grad and self.chosen_only
        self.check()

    def check(self) -> None:
        """Refuse option values the type system cannot (UserError, one line). Subclasses extend this."""
        if self.options.unchosen_grad and not self.chosen_only:
            only = ", ".join(n for n in SAMPLERS if SAMPLERS.get(n).chosen_only)
            raise UserError(
                f"sampler.unchosen_grad=true applies only to samplers that run only the chosen op ({only}); "
                f"{self.name} computes every op"
            )

    def weights(self, alpha: torch.Tensor, tau: float, generator: torch.Generator) -> torch.Tensor:
        """Op weights (E, K) in float32, differentiable in alpha."""
        raise NotImplementedError

    def sample(self, alpha: torch.Tensor, tau: float, generator: torch.Generator) -> ArchSample:
        """One cell type's sample (with its choices where only the chosen ops run)."""
        return sample_architecture({"": alpha}, self, tau, generator)[""]

    def probs(self, alpha: torch.Tensor) -> torch.Tensor:
        """Op probabilities (E, K) of the sampled distribution, differentiable in alpha: softmax(alpha)."""
        return F.softmax(alpha.float(), dim=-1)

    def derive_logits(self, alpha: torch.Tensor) -> torch.Tensor:
        """Logits whose softmax is `probs(alpha)`: what the space's derive rule and the diagnostics read
        (they take softmax). alpha itself where `probs` is softmax(alpha)."""
        return alpha

    def extra_loss(self, alphas: Mapping[str, torch.Tensor]) -> torch.Tensor | None:
        """A term added to the architecture loss (a function of alpha only), or None."""
        return None

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass


SAMPLERS: Registry[type[Sampler]] = Registry("sampler")


def register(cls: type[Sampler]) -> type[Sampler]:
    """Class decorator: register a sampler under its `name`."""
    return SAMPLERS.register(cls.name, cls)


def build_sampler(options: SamplerConfig | str, space: Any = None) -> Sampler:
    """The sampler that `options` (or a bare name, with default options) configures.

    `sampler.unchosen_grad: null` resolves to the space's reference GDAS form (its `hard_unchosen_grad`,
    False without a space). Raises UserError for an unknown name or a bad option value.
    """
    if isinstance(options, str):
        options = SamplerConfig(name=options)
    cls = SAMPLERS.get(options.name)
    if not isinstance(options, cls.Options):  # a plain SamplerConfig: the sampler's defaults for the rest
        options = cls.Options(**asdict(options))
    unchosen = options.unchosen_grad
    if unchosen is None:
        unchosen = bool(getattr(space, "hard_unchosen_grad", False))
    return cls(options, unchosen_grad=unchosen)


def sample_architecture(
    alphas: Mapping[str, torch.Tensor],
    sampler: Sampler | str,
    tau: float,
    generator: torch.Generator,
    chosen_only: bool = False,
    detach_unchosen: bool = False,
) -> dict[str, ArchSample]:
    """Sample op weights for every cell type (in sorted key order, so the noise stream is fixed).

    Where the choices are needed, the chosen indices of all cell types reach the host in a single
    transfer: one device synchronisation per sample, not one per edge. For a sampler whose forward pass is
    one-hot (`one_hot`):
    - `chosen_only`: only the chosen ops run (the weight step, which needs no alpha gradient);
    - `detach_unchosen`: every op runs, the unchosen ones without autograd (a first-order architecture
      step: the unchosen weights are exactly 0 in the forward pass, so no gradient flows back through
      their ops, and d loss / d w_j = <d loss / d out, op_j(x)> needs only op_j's output; the same
      gradients as running every op with autograd, without the backward pass of K - 1 ops per edge).
    A sampler that runs only the chosen op (`chosen_only` class flag, GDAS) always returns its choices;
    with `detach_unchosen` (a first-order architecture step) it may add probes (`GDAS.draw_probes`).
    """
    if isinstance(sampler, str):
        sampler = build_sampler(sampler)
    names = sorted(alphas)
    weights = {name: sampler.weights(alphas[name], tau, generator) for name in names}
    detach = detach_unchosen and sampler.one_hot and not (sampler.chosen_only or chosen_only)
    if not (sampler.chosen_only or (chosen_only and sampler.one_hot) or detach):
        return {name: ArchSample(weights[name]) for name in names}
    out = _with_choices(weights, unchosen_grad=sampler.unchosen_grad, detach_unchosen=detach)
    probing = detach_unchosen and sampler.chosen_only and not chosen_only and hasattr(sampler, "draw_probes")
    if probing:  # a first-order architecture step of a chosen-only sampler: its probes (after the noise)
        for name in names:
            s = out[name]
            s.probes, s.probe_scale = sampler.draw_probes(s.choices, s.weights.shape[-1], generator)
    return out


def sample_paths(
    alphas: Mapping[str, torch.Tensor], sampler: Sampler, generator: torch.Generator
) -> dict[str, ArchSample]:
    """One path per cell type drawn exactly from the sampler's distribution (`probs`), by Gumbel-max:
    one-hot weights and their choices, for a weight step that trains only the chosen ops
    (`search.weight_sample=one_hot`): for a relaxed sampler (softmax, gumbel, drnas), a path in place of
    its mixture of every op (a one-hot sampler's own sample is such a path already). No alpha gradient:
    alphas are detached."""
    logits = {
        n: F.log_softmax(sampler.derive_logits(alphas[n].detach()).float(), dim=-1) for n in sorted(alphas)
    }
    return _with_choices({n: one_hot_argmax(x + noise_like(x, generator)) for n, x in logits.items()})


def _with_choices(weights: dict[str, torch.Tensor], **fields: Any) -> dict[str, ArchSample]:
    """One-hot-forward weights per cell type (in the given order) as ArchSamples with their chosen op per
    edge; the choices of every cell type reach the host in one transfer (one device synchronisation)."""
    flat = torch.cat([w.detach().argmax(-1) for w in weights.values()]).tolist()
    out, start = {}, 0
    for name, w in weights.items():
        out[name] = ArchSample(w, flat[start : start + w.shape[0]], **fields)
        start += w.shape[0]
    return out
