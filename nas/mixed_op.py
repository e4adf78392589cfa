"""MixedOp: one edge of a supernet, a weighted sum over candidate ops (DARTS eq. 2)."""

from __future__ import annotations

import torch
import torch.nn as nn


class MixedOp(nn.Module):
    """Runs candidate ops with sampler weights.

    Soft weights: sum_k w_k * op_k(x) over every op (ops flagged `is_zero` are skipped: their output and
    their gradient are both zero). Hard (gdas) choice k: only op_k runs, scaled by w_k, which is 1.0 in
    the forward pass and carries the straight-through gradient to alpha.
    """

    def __init__(self, ops: list[nn.Module]):
        super().__init__()
        self.ops = nn.ModuleList(ops)
        self._live = [i for i, op in enumerate(ops) if not getattr(op, "is_zero", False)]

    def forward(self, x: torch.Tensor, weights: torch.Tensor, choice: int | None = None) -> torch.Tensor:
        # weights: (K,)
        if choice is not None:
            return self.ops[choice](x) * weights[choice].to(x.dtype)
        w = weights.to(x.dtype)
        out = None
        for i in self._live:
            term = self.ops[i](x) * w[i]
            out = term if out is None else out + term
        if out is None:  # every candidate is `none`
            out = self.ops[0](x) * w[0]
        return out
