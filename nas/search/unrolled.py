"""The second-order (unrolled) architecture gradient of DARTS (Liu et al., 2019, sec. 2.3, eq. 6-8).

One virtual SGD step on the training loss gives w' (eq. 6); the architecture gradient is that of the
validation loss at w' (eq. 7), with the mixed second derivative replaced by a central difference (eq. 8):

    w' = w - xi * grad_w L_train(w, alpha)
    grad_alpha L_val(w', alpha) - xi * grad2_{alpha,w} L_train(w, alpha) . v,   v = grad_w' L_val(w', alpha)
    grad2_{alpha,w} L_train(w, alpha) . v
        ~= (grad_alpha L_train(w+, alpha) - grad_alpha L_train(w-, alpha)) / (2 eps),   w+- = w +- eps * v

with eps = 0.01 / ||v|| (DARTS `cnn/architect.py`). On smooth nets this matches the exact hypergradient
(double backward) to ~1e-4; on ReLU / max-pool supernets the step w +- eps v crosses kinks, each adding
(gradient jump) / (2 eps), so at DARTS' radius it can differ from the almost-everywhere second derivative
by O(1) -- a property of the published approximation, kept as is (see tests/test_unrolled.py).

Choices made here:

- No model copy: every pass is `torch.func.functional_call` on the real supernet with substituted weight
  tensors (w, w', w+, w-) and *cloned* buffers, so neither the weights nor the BatchNorm running statistics
  of the real model change (DARTS' unrolled copy also updates, then drops, its own buffers). In train mode
  BatchNorm normalises with batch statistics, so the clones do not change any output.
- One architecture sample per step: the caller draws it (`Architect.sample`); its op weights are detached
  into leaf tensors
  W that every pass reuses, so the central difference is of one function of w. Each pass returns dL/dW;
  the combination is pushed back through the sampler to alpha by one backward (the chain rule is linear,
  so this equals combining per-pass alpha gradients). Works for hard samplers (gdas) as well.
- The virtual step is DARTS' `_compute_unrolled_model`: w' = w - xi * (mu * m + g + wd * w), with the
  momentum buffer m and the momentum mu / weight decay wd of the weight optimiser's param group (nesterov
  and dampening are ignored, as in DARTS). mu * m and wd * w do not depend on alpha, so eq. 7 holds as is.
  No gradient clipping in the virtual step (DARTS neither).
- xi is `search.unrolled_xi`, or the current weight learning rate when that is null (DARTS' choice; the
  Architect resolves it). A sampler's extra loss (a function of alpha alone) is the Architect's to add.
- Distributed: each rank unrolls on its own batches (local grad_w L_train and v, no extra all-reduce);
  only the resulting alpha gradients are averaged, by the Architect's grad hook. The passes call the bare
  supernet, never the distributed wrapper.

Cost: 4 forwards and 4 backwards (train at w, val at w', train at w+ and w-) against 1 + 1 for first order;
the passes run one after the other and free their graphs, so the peak is that of one pass plus a few copies
of the weights (w', v, w+-). Measured on CPU, DARTS supernet (16 channels, 8 layers, batch 64, 32x32):
peak RSS within 20 MiB of first order (softmax ~9.0 GiB over the model, gdas ~1.6 GiB); time 4-6x.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import torch
from torch.func import functional_call

from nas.arch.space import Supernet
from nas.sampling import ArchSample

Batch = tuple[torch.Tensor, torch.Tensor]
Run = Callable[
    [list[torch.Tensor], Batch], tuple[torch.Tensor, torch.Tensor]
]  # weights, batch -> loss, logits

FD_RADIUS = 0.01  # DARTS: eps = 0.01 / ||grad_w' L_val||


def _grads(outputs, inputs: list[torch.Tensor], grad_outputs=None) -> list[torch.Tensor]:
    """d outputs / d inputs (vector-Jacobian product with `grad_outputs` if given); inputs the outputs do
    not reach (ops a hard sample skipped) get zeros."""
    grads = torch.autograd.grad(outputs, inputs, grad_outputs=grad_outputs, allow_unused=True)
    return [torch.zeros_like(x) if g is None else g for x, g in zip(inputs, grads)]


def _leaf_samples(samples: dict[str, ArchSample], dtype: torch.dtype) -> dict[str, ArchSample]:
    """The sampled op weights as fresh leaf tensors (in the weights' dtype, so that float64 models keep
    float64 gradients for the difference quotient); hard choices are kept."""
    return {
        name: replace(s, weights=s.weights.detach().to(dtype).requires_grad_()) for name, s in samples.items()
    }


@torch.no_grad()
def virtual_step(
    weights: list[torch.Tensor], grads: list[torch.Tensor], optimizer: torch.optim.Optimizer, xi: float
) -> list[torch.Tensor]:
    """DARTS eq. 6 as `_compute_unrolled_model`: w' = w - xi * (mu * m + g + wd * w), per param group.

    m is the SGD momentum buffer (absent before the first weight step: then 0, as in torch's SGD).
    """
    groups = {id(p): group for group in optimizer.param_groups for p in group["params"]}
    out = []
    for w, g in zip(weights, grads):
        group = groups[id(w)]  # every weight is the optimiser's: its decay and momentum apply
        d = g + group["weight_decay"] * w
        momentum = optimizer.state.get(w, {}).get("momentum_buffer")
        if momentum is not None and group["momentum"]:
            d = d + group["momentum"] * momentum
        out.append(w - xi * d)
    return out


def _hessian_term(
    run: Run,
    weights: list[torch.Tensor],
    v: list[torch.Tensor],
    leaves: list[torch.Tensor],
    train: Batch,
    radius: float,
) -> list[torch.Tensor]:
    """DARTS eq. 8: (dL_train(w+)/dW - dL_train(w-)/dW) / (2 eps) per leaf W, w+- = w +- eps v."""
    norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(d) for d in v]))
    eps = radius / norm.clamp_min(1e-12)  # v = 0 gives w+- = w and a zero difference, never NaN
    with torch.no_grad():
        w_plus = [w + eps * d for w, d in zip(weights, v)]
        w_minus = [w - eps * d for w, d in zip(weights, v)]
    g_plus = _grads(run(w_plus, train)[0], leaves)
    g_minus = _grads(run(w_minus, train)[0], leaves)
    return [(p - m) / (2 * eps) for p, m in zip(g_plus, g_minus)]


def unrolled_step(
    model: Supernet,
    samples: dict[str, ArchSample],
    criterion: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    val: Batch,
    train: Batch,
    xi: float,
    weight_optimizer: torch.optim.Optimizer,
    autocast: Callable[[], Any] = contextlib.nullcontext,
    radius: float = FD_RADIUS,
) -> tuple[torch.Tensor, torch.Tensor, list[torch.Tensor]]:
    """The DARTS second-order architecture gradient (eq. 7-8) for one val/train batch pair.

    Args:
        model: the bare supernet (not a distributed wrapper).
        samples: the architecture sample of this step, differentiable in alpha (one per cell type).
        xi: the virtual step size.
        weight_optimizer: the weights' SGD (its weights, momentum buffers, momentum and weight decay).
        autocast: a context manager factory for the forward passes (mixed precision).
        radius: eps * ||v||, the length of the finite-difference step in weight space (DARTS: 0.01).

    Returns:
        The validation loss and logits at the virtual weights w', and the alpha gradients in the order
        of `model.arch_parameters()`. Nothing in the model or the optimisers is modified.
    """
    name_of = {id(p): n for n, p in model.named_parameters()}
    weights = [p for group in weight_optimizer.param_groups for p in group["params"]]  # what the step moves
    names = [name_of[id(p)] for p in weights]
    buffers = {n: b.clone() for n, b in model.named_buffers()}  # the virtual passes update these copies
    cell_types = list(samples)  # one sample, shared by every pass
    leaf_samples = _leaf_samples(samples, weights[0].dtype if weights else torch.float32)
    leaves = [leaf_samples[c].weights for c in cell_types]  # (E, K) each

    def run(w: list[torch.Tensor], batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        """Loss and logits (B, classes) of the supernet with its weights replaced by `w`."""
        x, y = batch
        with autocast():
            logits = functional_call(model, {**dict(zip(names, w)), **buffers}, (x, leaf_samples))
            return criterion(logits, y), logits

    w_prime = virtual_step(weights, _grads(run(weights, train)[0], weights), weight_optimizer, xi)
    w_prime = [w.requires_grad_() for w in w_prime]
    loss, logits = run(w_prime, val)
    grads = _grads(loss, leaves + w_prime)
    direct, v = grads[: len(leaves)], grads[len(leaves) :]  # dL_val/dW, grad_w' L_val
    hessian = _hessian_term(run, weights, v, leaves, train, radius)
    d_leaves = [(d - xi * h).to(samples[c].weights.dtype) for c, d, h in zip(cell_types, direct, hessian)]
    alphas = model.arch_parameters()
    outputs = [samples[c].weights for c in cell_types]
    return loss.detach(), logits.detach(), _grads(outputs, alphas, grad_outputs=d_leaves)
