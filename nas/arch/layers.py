"""Layers the search spaces share that torch or timm do not provide as needed."""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

# oneDNN in torch 2.14.1 (CPU) corrupts the heap in the weight gradient of a strided 1x1 convolution on a
# channels_last input with fewer than 8 input channels when it runs on one thread (OMP_NUM_THREADS=1, as
# on a shared 2-core machine): SIGABRT or a bus error. Measured for C_in 1-7; 8 and above are fine, and so
# are NCHW inputs and a stride-1 convolution.
_ONEDNN_MIN_CHANNELS = 8


class PointwiseConv(nn.Conv2d):
    """A bias-free 1x1 convolution with a stride (the halves of a factorized reduction).

    On the CPU with fewer than 8 input channels, the strided convolution is computed as the subsampled
    grid (a 1x1 pooling with the same stride: the pixels a strided 1x1 convolution reads) followed by a
    stride-1 convolution: the same values, and it avoids the oneDNN fault above, which a channels_last
    input or weight can trigger whatever the other's layout."""

    def __init__(self, C_in: int, C_out: int, stride: int = 1):
        super().__init__(C_in, C_out, 1, stride=stride, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride != (1, 1) and self.in_channels < _ONEDNN_MIN_CHANNELS and x.device.type == "cpu":
            return F.conv2d(F.avg_pool2d(x, 1, self.stride), self.weight)
        return super().forward(x)


# --- 3x3 pooling on the CPU ---------------------------------------------------------------------------
# torch 2.14.1's CPU kernels for a 3x3, padding-1 pooling are slow on the narrow tensors of a CPU search
# (2-16 channels, e.g. PC-DARTS' C/K): a 3x3 max pooling of 64 x 2 x 32 x 32 takes 4.7 ms (NCHW; 8.6 ms
# channels_last), torch.maximum of shifted slices of the padded input 0.26 ms. Where it measured faster,
# `MaxPool3x3` / `AvgPool3x3` compute the forward pass from shifted slices, bitwise the values of the torch
# layer they subclass (the maximum is exact; the average adds the window in torch's row-major order and
# divides by the same count), and reuse torch's own backward kernel, so the gradient is bitwise torch's too.
# Elsewhere (GPU, other sizes, a max pooling under autograd, whose argmax indices torch's kernel keeps) the
# module is that torch layer. Speed-ups per case: experiments/benchmarks.md.


def _taps(padded: torch.Tensor, stride: int, dy: int | None, dx: int | None) -> torch.Tensor:
    """The pixel at offset (dy, dx) of every 3x3 window of the 1-padded map, strided; None keeps that axis."""
    H, W = padded.shape[-2] - 2, padded.shape[-1] - 2
    Ho, Wo = (H - 1) // stride + 1, (W - 1) // stride + 1
    rows = slice(None) if dy is None else slice(dy, dy + stride * (Ho - 1) + 1, stride)
    cols = slice(None) if dx is None else slice(dx, dx + stride * (Wo - 1) + 1, stride)
    return padded[..., rows, cols]


def max3x3(x: torch.Tensor, stride: int) -> torch.Tensor:
    """F.max_pool2d(x, 3, stride, padding=1) as maxima of shifted slices: along the width, then the height
    (the maximum is exact, so the order does not change a value; a NaN propagates as in torch's kernel)."""
    padded = F.pad(x, (1, 1, 1, 1), value=float("-inf"))
    a, b, c = (_taps(padded, stride, None, d) for d in range(3))
    rows = torch.maximum(torch.maximum(a, b), c)  # (H + 2, Wo): the padded rows are kept for the next pass
    a, b, c = (_taps(rows, stride, d, None) for d in range(3))
    return torch.maximum(torch.maximum(a, b), c)


def avg3x3(x: torch.Tensor) -> torch.Tensor:
    """F.avg_pool2d(x, 3, 1, padding=1, count_include_pad=False), bitwise: each window summed in torch's
    row-major order (a padded zero adds nothing), divided by the number of its pixels inside the map."""
    padded = F.pad(x, (1, 1, 1, 1))
    total = _taps(padded, 1, 0, 0).clone()
    for dy in range(3):
        for dx in range(3):
            if dy or dx:
                total.add_(_taps(padded, 1, dy, dx))
    rows, cols = (_inside(n, x) for n in x.shape[-2:])
    return total / (rows.view(-1, 1) * cols)  # how many of the window's pixels lie inside the map


def _inside(n: int, like: torch.Tensor) -> torch.Tensor:
    """Per position along an axis of length n, how many of its 3 window taps fall inside the map."""
    count = torch.full((n,), 3.0, dtype=like.dtype, device=like.device)
    count[0] -= 1  # the tap before the first position is padding
    count[-1] -= 1  # and the one after the last (n = 1: both, 1 left)
    return count


class _AvgPool3x3(torch.autograd.Function):
    """avg3x3 forward, torch's average-pooling backward kernel."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(x)
        return avg3x3(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        (x,) = ctx.saved_tensors
        return torch.ops.aten.avg_pool2d_backward(grad, x, [3, 3], [1, 1], [1, 1], False, False, None)


def _pair(v) -> tuple:
    return tuple(v) if isinstance(v, (tuple, list)) else (v, v)


def _cpu_float4d(x: torch.Tensor) -> bool:
    return x.device.type == "cpu" and x.dim() == 4 and x.is_floating_point()


class MaxPool3x3(nn.MaxPool2d):
    """nn.MaxPool2d(3, stride, padding=1) whose forward without autograd is `max3x3` on the CPU."""

    def __init__(self, stride: int = 1):
        super().__init__(3, stride=stride, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        fast = _pair(self.stride) in ((1, 1), (2, 2)) and not (torch.is_grad_enabled() and x.requires_grad)
        return max3x3(x, _pair(self.stride)[0]) if fast and _cpu_float4d(x) else super().forward(x)


class AvgPool3x3(nn.AvgPool2d):
    """nn.AvgPool2d(3, stride, padding=1, count_include_pad=False) computed by `avg3x3` on the CPU at stride 1
    (stride 2 measured slower than torch's kernel)."""

    def __init__(self, stride: int = 1):
        super().__init__(3, stride=stride, padding=1, count_include_pad=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if _pair(self.stride) != (1, 1) or not _cpu_float4d(x):
            return super().forward(x)
        return _AvgPool3x3.apply(x) if torch.is_grad_enabled() and x.requires_grad else avg3x3(x)
