"""The discrete DARTS network for retraining (Liu et al., 2019, `cnn/model.py`, NetworkCIFAR): cells
built from a genotype, drop path, and an auxiliary head at 2/3 depth."""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F
from timm.layers import drop_path

from nas.arch.genotype import Cell as CellGenotype
from nas.arch.genotype import Genotype
from search_spaces.darts.ops import FactorizedReduce, Identity, ReLUConvBN, build_op
from search_spaces.darts.supernet import reduction_layers


class Cell(nn.Module):
    def __init__(
        self, genotype: CellGenotype, C_pp: int, C_p: int, C: int, reduction: bool, reduction_prev: bool
    ):
        super().__init__()
        self.preprocess0 = FactorizedReduce(C_pp, C) if reduction_prev else ReLUConvBN(C_pp, C, 1, 1)
        self.preprocess1 = ReLUConvBN(C_p, C, 1, 1)
        self.reduction = reduction
        self.inputs = [[j for _, j in node] for node in genotype.nodes]
        self.concat = list(genotype.concat)
        self.multiplier = len(self.concat)
        self.ops = nn.ModuleList(
            nn.ModuleList(build_op(op, C, 2 if reduction and j < 2 else 1, True) for op, j in node)
            for node in genotype.nodes
        )

    def forward(self, s0: torch.Tensor, s1: torch.Tensor, drop_prob: float) -> torch.Tensor:
        states = [self.preprocess0(s0), self.preprocess1(s1)]
        for ops, inputs in zip(self.ops, self.inputs):
            s = None
            for op, j in zip(ops, inputs):
                h = op(states[j])
                if self.training and drop_prob > 0 and not isinstance(op, Identity):
                    h = drop_path(h, drop_prob, training=True)
                s = h if s is None else s + h
            states.append(s)
        return torch.cat([states[i] for i in self.concat], dim=1)


class AuxiliaryHead(nn.Module):
    """DARTS' AuxiliaryHeadCIFAR; assumes an 8x8 input (32x32 images), pools adaptively otherwise."""

    def __init__(self, C: int, num_classes: int):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(C, 128, 1, bias=False),
            nn.BatchNorm2d(128),
            nn.ReLU(inplace=True),
            nn.Conv2d(128, 768, 2, bias=False),
            nn.BatchNorm2d(768),
            nn.ReLU(inplace=True),
        )
        self.classifier = nn.Linear(768, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(x)
        if x.shape[-2:] == (8, 8):  # the reference: 8x8 -> 2x2
            x = F.avg_pool2d(x, 5, stride=3, padding=0, count_include_pad=False)
        else:
            x = F.adaptive_avg_pool2d(x, 2)
        x = self.features(x)
        return self.classifier(x.flatten(1))


class CellNetwork(nn.Module):
    """What the CIFAR and ImageNet networks share: stems (`stems(x) -> (s0, s1)`, the subclass's), then the
    stack of cells with reductions at 1/3 and 2/3 of the depth and the auxiliary head after the 2/3 one,
    global pooling and the classifier. forward(x) -> (logits, aux_logits or None)."""

    drop_path_prob: float

    def stems(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError

    def _stack(
        self,
        genotype: Genotype,
        channels: tuple[int, int, int],
        reduction_prev: bool,
        layers: int,
        head: type[nn.Module] | None,
        num_classes: int,
    ) -> None:
        """The cells from (C_pp, C_p, C_curr) = `channels`; `head`: the auxiliary head's class, or None."""
        C_pp, C_p, C_curr = channels
        self.cells = nn.ModuleList()
        reductions = reduction_layers(layers)
        self.aux_position = 2 * layers // 3
        self.auxiliary_head = None
        for i in range(layers):
            reduction = i in reductions
            if reduction:
                C_curr *= 2
            cell_type = "reduce" if reduction else "normal"
            cell = Cell(genotype.cells[cell_type], C_pp, C_p, C_curr, reduction, reduction_prev)
            self.cells.append(cell)
            reduction_prev = reduction
            C_pp, C_p = C_p, cell.multiplier * C_curr
            if head is not None and i == self.aux_position:
                self.auxiliary_head = head(C_p, num_classes)
        self.global_pooling = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(C_p, num_classes)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        aux = None
        s0, s1 = self.stems(x)
        for i, cell in enumerate(self.cells):
            s0, s1 = s1, cell(s0, s1, self.drop_path_prob)
            if i == self.aux_position and self.auxiliary_head is not None and self.training:
                aux = self.auxiliary_head(s1)
        logits = self.classifier(self.global_pooling(s1).flatten(1))
        return logits, aux


class NetworkCIFAR(CellNetwork):
    """forward(x) -> (logits, aux_logits); aux_logits is None in eval mode or without the head.

    Set `drop_path_prob` before each epoch (the trainer ramps it linearly, as DARTS does).
    """

    def __init__(
        self,
        genotype: Genotype,
        C: int,
        num_classes: int,
        layers: int,
        auxiliary: bool,
        in_channels: int = 3,
        stem_multiplier: int = 3,
    ):
        super().__init__()
        self.drop_path_prob = 0.0
        C_curr = stem_multiplier * C
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, C_curr, 3, padding=1, bias=False), nn.BatchNorm2d(C_curr)
        )
        self._stack(
            genotype, (C_curr, C_curr, C), False, layers, AuxiliaryHead if auxiliary else None, num_classes
        )

    def stems(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        s = self.stem(x)
        return s, s
