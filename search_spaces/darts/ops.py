"""The DARTS candidate operations (Liu et al., 2019, `cnn/operations.py`), built with timm's
`create_conv2d`.

Every op has the uniform constructor `(C, stride, affine)`; the supernet uses affine-free BatchNorm,
the retrained network affine BatchNorm. Layer-for-layer identical to the reference, so parameter counts
match it exactly.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F
from timm.layers import create_conv2d

from nas.arch.layers import AvgPool3x3, MaxPool3x3, PointwiseConv
from nas.core.registry import Registry

PRIMITIVES = (
    "none",
    "max_pool_3x3",
    "avg_pool_3x3",
    "skip_connect",
    "sep_conv_3x3",
    "sep_conv_5x5",
    "dil_conv_3x3",
    "dil_conv_5x5",
)

OpFactory = Callable[[int, int, bool], nn.Module]
OPS: Registry[OpFactory] = Registry("DARTS op")


class ReLUConvBN(nn.Sequential):
    def __init__(self, C_in: int, C_out: int, kernel_size: int, stride: int, affine: bool = True):
        super().__init__(
            nn.ReLU(inplace=False),
            create_conv2d(C_in, C_out, kernel_size, stride=stride),
            nn.BatchNorm2d(C_out, affine=affine),
        )


class DilConv(nn.Sequential):
    """ReLU, depthwise k x k (dilated), pointwise 1x1, BN."""

    def __init__(
        self, C_in: int, C_out: int, kernel_size: int, stride: int, dilation: int, affine: bool = True
    ):
        super().__init__(
            nn.ReLU(inplace=False),
            create_conv2d(C_in, C_in, kernel_size, stride=stride, dilation=dilation, depthwise=True),
            create_conv2d(C_in, C_out, 1),
            nn.BatchNorm2d(C_out, affine=affine),
        )


class SepConv(nn.Sequential):
    """Two stacked DilConv(dilation=1) blocks, the first carrying the stride (DARTS' separable conv)."""

    def __init__(self, C_in: int, C_out: int, kernel_size: int, stride: int, affine: bool = True):
        super().__init__(
            DilConv(C_in, C_in, kernel_size, stride, 1, affine),
            DilConv(C_in, C_out, kernel_size, 1, 1, affine),
        )


class Identity(nn.Identity):
    """Marked so the retrained cell skips drop-path on it, as DARTS does."""


class Zero(nn.Module):
    """The `none` op: zeros of the output shape. `is_zero` lets MixedOp skip it in soft mixtures."""

    is_zero = True

    def __init__(self, stride: int):
        super().__init__()
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride == 1:
            return x.mul(0.0)
        return x[:, :, :: self.stride, :: self.stride].mul(0.0)


class FactorizedReduce(nn.Module):
    """Stride-2 reduction by two 1x1 convs on offset grids, concatenated (DARTS). Odd sizes are padded
    on the bottom/right so both halves agree."""

    def __init__(self, C_in: int, C_out: int, affine: bool = True):
        super().__init__()
        assert C_out % 2 == 0, "FactorizedReduce needs an even number of output channels"
        self.relu = nn.ReLU(inplace=False)
        self.conv_1 = PointwiseConv(C_in, C_out // 2, stride=2)
        self.conv_2 = PointwiseConv(C_in, C_out // 2, stride=2)
        self.bn = nn.BatchNorm2d(C_out, affine=affine)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(x)
        if x.shape[-1] % 2 or x.shape[-2] % 2:
            x = F.pad(x, (0, x.shape[-1] % 2, 0, x.shape[-2] % 2))
        # The offset grid as a negative pad rather than the slice x[:, :, 1:, 1:]: the same values, but its
        # backward keeps channels_last (a slice's backward writes into NCHW zeros, and the ReLU backward
        # then ran on mixed layouts); 1.3-2x faster fwd+bwd in channels_last, bitwise equal.
        return self.bn(torch.cat([self.conv_1(x), self.conv_2(F.pad(x, (-1, 0, -1, 0)))], dim=1))


OPS.register("none", lambda C, stride, affine: Zero(stride))
# nn.AvgPool2d(3, stride, 1, count_include_pad=False) / nn.MaxPool2d(3, stride, 1), faster on the CPU
OPS.register("avg_pool_3x3", lambda C, stride, affine: AvgPool3x3(stride))
OPS.register("max_pool_3x3", lambda C, stride, affine: MaxPool3x3(stride))
OPS.register(
    "skip_connect",
    lambda C, stride, affine: Identity() if stride == 1 else FactorizedReduce(C, C, affine=affine),
)
OPS.register("sep_conv_3x3", lambda C, stride, affine: SepConv(C, C, 3, stride, affine=affine))
OPS.register("sep_conv_5x5", lambda C, stride, affine: SepConv(C, C, 5, stride, affine=affine))
OPS.register("sep_conv_7x7", lambda C, stride, affine: SepConv(C, C, 7, stride, affine=affine))
OPS.register("dil_conv_3x3", lambda C, stride, affine: DilConv(C, C, 3, stride, 2, affine=affine))
OPS.register("dil_conv_5x5", lambda C, stride, affine: DilConv(C, C, 5, stride, 2, affine=affine))


def build_op(name: str, C: int, stride: int, affine: bool) -> nn.Module:
    return OPS.get(name)(C, stride, affine)
