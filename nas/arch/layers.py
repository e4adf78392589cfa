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
