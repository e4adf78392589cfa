"""The fixed NAS-Bench-201 network for retraining (Dong & Yang, ICLR 2020; reference: AutoDL-Projects
`cell_infers/tiny_network.py` TinyNetwork and `cell_infers/cells.py` InferCell).

Layer for layer the reference: affine BN with running statistics everywhere, every edge of the
genotype built (including `none` and edges whose node does not reach the output), so parameter counts
equal the ones NAS-Bench-201 reports. There is no auxiliary head and no drop path in NAS-Bench-201.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from nas.arch.genotype import Cell as CellGenotype
from nas.arch.genotype import Genotype
from search_spaces.nb201.ops import ResNetBasicBlock, build_op, macro_layout


class InferCell(nn.Module):
    """Node i = sum of its genotype edges op(node j); the output is the last node."""

    def __init__(self, genotype: CellGenotype, C: int):
        super().__init__()
        self.inputs = [[j for _, j in node] for node in genotype.nodes]
        self.ops = nn.ModuleList(
            nn.ModuleList(build_op(op, C, C, 1, affine=True, track_running_stats=True) for op, _ in node)
            for node in genotype.nodes
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        nodes = [x]
        for ops, inputs in zip(self.ops, self.inputs):
            s = None
            for op, j in zip(ops, inputs):
                h = op(nodes[j])
                s = h if s is None else s + h
            nodes.append(s)
        return nodes[-1]


class TinyNetwork(nn.Module):
    """forward(x) -> (logits, None): the same contract as the DARTS NetworkCIFAR.

    `drop_path_prob` exists so the trainer can set it; NAS-Bench-201 uses no drop path, so it is ignored.
    """

    def __init__(self, genotype: Genotype, C: int, N: int, num_classes: int, in_channels: int = 3):
        super().__init__()
        self.drop_path_prob = 0.0
        cell = genotype.cells["cell"]
        self.stem = nn.Sequential(nn.Conv2d(in_channels, C, 3, padding=1, bias=False), nn.BatchNorm2d(C))
        self.cells = nn.ModuleList()
        C_prev = C
        for C_curr, reduction in macro_layout(C, N):
            self.cells.append(ResNetBasicBlock(C_prev, C_curr) if reduction else InferCell(cell, C_curr))
            C_prev = C_curr
        self.lastact = nn.Sequential(nn.BatchNorm2d(C_prev), nn.ReLU(inplace=True))
        self.global_pooling = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(C_prev, num_classes)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, None]:
        h = self.stem(x)
        for cell in self.cells:
            h = cell(h)
        h = self.global_pooling(self.lastact(h)).flatten(1)  # (B, 4C)
        return self.classifier(h), None
