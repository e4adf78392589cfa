"""The DARTS network for ImageNet in the mobile setting (Liu et al., 2019, sec. 3.3 and `cnn/model.py`,
NetworkImageNet): the CIFAR cells behind two stride-2 stems, 48 channels x 14 cells by default.

Layer for layer the reference, so parameter counts equal its counts (DARTS_V2 at 48 x 14 with 1000
classes: the paper's 4.7 M). Two deliberate differences, neither of which changes a parameter or, at the
reference's 224 x 224 input, a single output value:
- the classifier pools globally (the reference's AvgPool2d(7) is the global mean of its 7x7 final map),
  and the auxiliary head falls back to adaptive pooling when its map is not 7x7 or 8x8, so other input
  sizes (e.g. 128 or 160 for cheaper training) work too;
- stem1's leading ReLU is not in place (the reference's in-place ReLU also rewrites s0, which the first
  cell's FactorizedReduce rectifies again anyway).
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from nas.arch.genotype import Genotype
from nas.core.errors import UserError
from search_spaces.darts.network import CellNetwork

# Five stride-2 stages (three stem convolutions, two reduction cells): 224 -> 7, as in the paper.
DOWNSAMPLING = 32


def check_input_size(image_size: int) -> None:
    """Refuse inputs so small that the last stages would run on 1x1 maps."""
    if image_size < DOWNSAMPLING:
        raise UserError(
            f"the ImageNet network halves its input five times (three stem convolutions, two reduction "
            f"cells) and needs inputs of at least {DOWNSAMPLING}x{DOWNSAMPLING} pixels, got "
            f"{image_size}x{image_size} (its recipe uses 224; model.network=cifar is for small images)"
        )


class AuxiliaryHeadImageNet(nn.Module):
    """DARTS' AuxiliaryHeadImageNet, after the second reduction cell (7x7 at 224 input -> 2x2 -> 1x1).

    As in the reference, there is no BatchNorm after the 768-channel convolution: DARTS omitted it by a typo
    and kept it out "for consistency with the experiments in the paper" (unlike the CIFAR head)."""

    def __init__(self, C: int, num_classes: int):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(C, 128, 1, bias=False),
            nn.BatchNorm2d(128),
            nn.ReLU(inplace=True),
            nn.Conv2d(128, 768, 2, bias=False),
            nn.ReLU(inplace=True),
        )
        self.classifier = nn.Linear(768, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(x)
        if all((n - 5) // 2 + 1 == 2 for n in x.shape[-2:]):  # 7x7 or 8x8: the reference pooling
            x = F.avg_pool2d(x, 5, stride=2, padding=0, count_include_pad=False)  # (B, C, 2, 2)
        else:
            x = F.adaptive_avg_pool2d(x, 2)
        return self.classifier(self.features(x).flatten(1))


class NetworkImageNet(CellNetwork):
    """forward(x) -> (logits, aux_logits); aux_logits is None in eval mode or without the head.

    Set `drop_path_prob` before each epoch, as for NetworkCIFAR.
    """

    def __init__(
        self, genotype: Genotype, C: int, num_classes: int, layers: int, auxiliary: bool, in_channels: int = 3
    ):
        super().__init__()
        self.drop_path_prob = 0.0
        self.stem0 = nn.Sequential(
            nn.Conv2d(in_channels, C // 2, 3, stride=2, padding=1, bias=False),
            nn.BatchNorm2d(C // 2),
            nn.ReLU(inplace=True),
            nn.Conv2d(C // 2, C, 3, stride=2, padding=1, bias=False),
            nn.BatchNorm2d(C),
        )
        self.stem1 = nn.Sequential(
            nn.ReLU(inplace=False), nn.Conv2d(C, C, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(C)
        )
        # reduction_prev: s0 (stem0) has twice the resolution of s1 (stem1)
        self._stack(
            genotype, (C, C, C), True, layers, AuxiliaryHeadImageNet if auxiliary else None, num_classes
        )

    def stems(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        s0 = self.stem0(x)  # (B, C, H/4, W/4)
        return s0, self.stem1(s0)  # (B, C, H/8, W/8)
