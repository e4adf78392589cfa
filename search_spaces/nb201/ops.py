"""The NAS-Bench-201 candidate operations and the residual reduction block (Dong & Yang, ICLR 2020;
reference: AutoDL-Projects `models/cell_operations.py`).

Every op has the uniform constructor `(C_in, C_out, stride, affine, track_running_stats)`, as in the
reference `OPS` dict. Inside NAS-Bench-201 cells C_in == C_out and stride == 1 always; the other cases
(a channel change or a stride) are built the way the reference builds them, so the table is complete.
Layer-for-layer identical to the reference, so parameter counts match it exactly.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F

from nas.arch.layers import AvgPool3x3, PointwiseConv
from nas.core.registry import Registry

PRIMITIVES = ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")

OpFactory = Callable[[int, int, int, bool, bool], nn.Module]
OPS: Registry[OpFactory] = Registry("NAS-Bench-201 op")


class ReLUConvBN(nn.Sequential):
    """ReLU -> k x k conv (no bias, 'same' padding) -> BN: the `nor_conv_*` ops."""

    def __init__(
        self, C_in: int, C_out: int, kernel_size: int, stride: int, affine: bool, track_running_stats: bool
    ):
        super().__init__(
            nn.ReLU(inplace=False),
            nn.Conv2d(C_in, C_out, kernel_size, stride=stride, padding=kernel_size // 2, bias=False),
            nn.BatchNorm2d(C_out, affine=affine, track_running_stats=track_running_stats),
        )


class Zero(nn.Module):
    """The `none` op: zeros of the output shape. `is_zero` lets MixedOp skip it in soft mixtures."""

    is_zero = True

    def __init__(self, C_in: int, C_out: int, stride: int):
        super().__init__()
        self.C_out, self.stride = C_out, stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x[:, :, :: self.stride, :: self.stride]
        if x.shape[1] == self.C_out:
            return x.mul(0.0)
        return x.new_zeros((x.shape[0], self.C_out, *x.shape[2:]))


class FactorizedReduce(nn.Module):
    """`skip_connect` when the shape changes: stride 2 -> two 1x1 convs on offset grids, concatenated
    (the reference pads bottom/right by one); stride 1 -> one 1x1 conv. Then BN."""

    def __init__(self, C_in: int, C_out: int, stride: int, affine: bool, track_running_stats: bool):
        super().__init__()
        if stride not in (1, 2):
            raise ValueError(f"FactorizedReduce stride must be 1 or 2, got {stride}")
        self.stride = stride
        self.relu = nn.ReLU(inplace=False)
        halves = (C_out // 2, C_out - C_out // 2) if stride == 2 else (C_out,)
        self.convs = nn.ModuleList(PointwiseConv(C_in, c, stride) for c in halves)
        self.bn = nn.BatchNorm2d(C_out, affine=affine, track_running_stats=track_running_stats)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride == 1:
            return self.bn(self.convs[0](x))
        x = self.relu(x)
        shifted = F.pad(x, (0, 1, 0, 1))[:, :, 1:, 1:]
        return self.bn(torch.cat([self.convs[0](x), self.convs[1](shifted)], dim=1))


class Pooling(nn.Sequential):
    """`avg_pool_3x3`: 3x3 average pooling (count_include_pad=False), preceded by a 1x1 ReLUConvBN only
    when the channel count changes (never inside an NB201 cell)."""

    def __init__(self, C_in: int, C_out: int, stride: int, affine: bool, track_running_stats: bool):
        layers = [] if C_in == C_out else [ReLUConvBN(C_in, C_out, 1, 1, affine, track_running_stats)]
        layers.append(AvgPool3x3(stride))  # nn.AvgPool2d(3, stride, 1, count_include_pad=False)
        super().__init__(*layers)


def _skip(C_in: int, C_out: int, stride: int, affine: bool, track: bool) -> nn.Module:
    if stride == 1 and C_in == C_out:
        return nn.Identity()
    return FactorizedReduce(C_in, C_out, stride, affine, track)


OPS.register("none", lambda C_in, C_out, stride, affine, track: Zero(C_in, C_out, stride))
OPS.register("skip_connect", _skip)
OPS.register(
    "nor_conv_1x1",
    lambda C_in, C_out, stride, affine, track: ReLUConvBN(C_in, C_out, 1, stride, affine, track),
)
OPS.register(
    "nor_conv_3x3",
    lambda C_in, C_out, stride, affine, track: ReLUConvBN(C_in, C_out, 3, stride, affine, track),
)
OPS.register("avg_pool_3x3", Pooling)


def build_op(
    name: str, C_in: int, C_out: int, stride: int, affine: bool, track_running_stats: bool = True
) -> nn.Module:
    return OPS.get(name)(C_in, C_out, stride, affine, track_running_stats)


class ResNetBasicBlock(nn.Module):
    """The fixed stride-2 block between NB201 stages: ReLUConvBN 3x3 (stride 2) -> ReLUConvBN 3x3, plus a
    shortcut AvgPool2d(2, 2) -> 1x1 conv (no BN). BN is affine in both the search and the fixed network,
    as in the reference (`ResNetBasicblock(C_prev, C_curr, 2)` with its default affine=True)."""

    def __init__(self, C_in: int, C_out: int):
        super().__init__()
        self.conv_a = ReLUConvBN(C_in, C_out, 3, 2, True, True)
        self.conv_b = ReLUConvBN(C_out, C_out, 3, 1, True, True)
        self.downsample = nn.Sequential(nn.AvgPool2d(2, stride=2), nn.Conv2d(C_in, C_out, 1, bias=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.downsample(x) + self.conv_b(self.conv_a(x))


def macro_layout(C: int, N: int) -> list[tuple[int, bool]]:
    """The NB201 macro skeleton as (channels, is_reduction) per layer: N cells at C, a residual block to
    2C, N cells at 2C, a residual block to 4C, N cells at 4C (3N + 2 layers)."""
    layout = []
    for stage in range(3):
        if stage:
            layout.append((C * 2**stage, True))
        layout += [(C * 2**stage, False)] * N
    return layout
