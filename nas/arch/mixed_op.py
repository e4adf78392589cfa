"""MixedOp: one edge of a supernet, a weighted sum over candidate ops (DARTS eq. 2)."""

from __future__ import annotations

import torch
import torch.nn as nn


class _TimesOne(torch.autograd.Function):
    """`out * w` for a 0-dim weight `w` that is exactly 1.0, without computing the product.

    Forward: `out` itself (x * 1.0 == x bitwise). Backward, bitwise what autograd gives for `out * w`:
    the gradient reaches `out` unchanged (grad * 1.0 == grad), except that a gradient in neither standard
    memory layout (e.g. a channel slice of a concatenation's gradient) is materialised by that very
    multiplication, as the product's backward would, so the op's own backward gets the same strides.
    `w` gets sum(grad * out), reduced as the engine reduces a broadcast operand (sum over all dims in the
    product's dtype; the engine then casts to w's dtype). Under double backward (`create_graph=True`, an
    exact second-order hypergradient) the backward is the product's own, differentiable in `w` too.
    """

    @staticmethod
    def forward(ctx, out: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(out if ctx.needs_input_grad[1] else None, w)
        return out

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        out, w = ctx.saved_tensors
        if torch.is_grad_enabled():  # create_graph: d(grad_out)/dw = grad must stay in the graph
            grad_out = grad * w
        else:
            dense = grad.is_contiguous() or grad.is_contiguous(memory_format=torch.channels_last)
            grad_out = grad if dense else grad * 1.0
        if out is None:
            return grad_out, None
        return grad_out, (grad * out).sum(dim=tuple(range(out.dim())), keepdim=True).view(())


def times_one(out: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """`out * w` for a 0-dim `w` equal to 1.0 (a hard sampler's chosen op); see `_TimesOne`."""
    return _TimesOne.apply(out, w)


class MixedOp(nn.Module):
    """Runs candidate ops with sampler weights.

    Soft weights: sum_k w_k * op_k(x) over every op (ops flagged `is_zero` are skipped: their output and
    their gradient are both zero). Hard (gdas) choice k: only op_k runs, scaled by w_k, which is 1.0 in
    the forward pass and carries the straight-through gradient to alpha.

    `unchosen_grad` (hard choice only) is the form of the reference GDAS code for NAS-Bench-201
    (AutoDL-Projects `NAS201SearchCell.forward_gdas`: `sum(w[k] * op_k(x) if k == chosen else w[k])`): the
    unchosen weights, exactly 0 in the forward pass, are added to the output, so the output is unchanged but
    every w_j (j != k) receives the sum of the output's gradient, and every alpha of the edge a gradient,
    even when the chosen op is `none` (whose own weight then gets none).

    `probes` (hard choice, a first-order architecture step of gdas with `sampler.probes`): these unchosen
    ops also run, without autograd, each added times its weight (exactly 0) times `probe_scale`, so the
    output is unchanged and w_j gets probe_scale * <grad, op_j(x)> (`nas.sampling.gumbel`).

    `detach_unchosen` (one-hot weights, every op needed for the alpha gradient: gumbel_st, reinmax,
    gumbel_rao in a first-order architecture step): every op runs as with soft weights, but the unchosen
    ones (weight exactly 0) without autograd. The output is the same sum, bitwise; w_j still gets
    <grad, op_j(x)>; the gradient that would flow back through op_j is grad * 0, so skipping that backward
    pass changes nothing but its cost (and the activations it would keep).
    """

    def __init__(self, ops: list[nn.Module]):
        super().__init__()
        self.ops = nn.ModuleList(ops)
        self._live = [i for i, op in enumerate(ops) if not getattr(op, "is_zero", False)]

    def forward(
        self,
        x: torch.Tensor,
        weights: torch.Tensor,
        choice: int | None = None,
        unchosen_grad: bool = False,
        detach_unchosen: bool = False,
        probes: list[int] = (),
        probe_scale: float = 1.0,
    ) -> torch.Tensor:
        # weights: (K,)
        if choice is not None and not detach_unchosen:  # weights[choice] is exactly 1.0 in the forward pass
            out = times_one(self.ops[choice](x), weights[choice])
            if unchosen_grad:  # sum of the unchosen weights: 1.0 - 1.0 == 0.0 exactly, d/dw_j = 1 for j != k
                out = out + (weights.sum() - weights[choice]).to(out.dtype)
            for j in probes:  # w_j is exactly 0: the output is unchanged, d/dw_j = scale * <grad, op_j(x)>
                if j in self._live:
                    with torch.no_grad():
                        h = self.ops[j](x)
                    out = out + h * (weights[j] * probe_scale).to(h.dtype)
            return out
        w = weights.to(x.dtype)
        out = None
        for i in self._live:
            if detach_unchosen and i != choice:
                with torch.no_grad():
                    h = self.ops[i](x)
            else:
                h = self.ops[i](x)
            term = h * w[i]
            out = term if out is None else out + term
        if out is None:  # every candidate is `none`
            out = self.ops[0](x) * w[0]
        return out
