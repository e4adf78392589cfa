"""The NAS-Bench-201 search network (Dong & Yang, ICLR 2020; reference: AutoDL-Projects
`TinyNetworkDarts` / `TinyNetworkGDAS` with `SearchCell`): the fixed macro skeleton with every cell edge
a MixedOp over the five primitives, and one shared (6, 5) alpha for all cells."""

from __future__ import annotations

import torch
import torch.nn as nn

from nas.arch.mixed_op import MixedOp
from nas.arch.space import Supernet
from nas.config import SpaceConfig
from nas.sampling import ArchSample
from search_spaces.nb201.ops import ResNetBasicBlock, build_op, macro_layout

NODES = 4  # node 0 is the cell input, node 3 its output
EDGES = tuple((i, j) for i in range(1, NODES) for j in range(i))  # (1<-0), (2<-0), (2<-1), (3<-0), ...


class SearchCell(nn.Module):
    """Node i = sum over j < i of MixedOp_ij(node j); the cell's output is node 3.

    Ops use affine-free BN, as NB201's search code does for the searched cells (so that BN scales cannot
    compensate for alpha); running statistics are tracked.
    """

    def __init__(self, primitives: tuple[str, ...], C: int):
        super().__init__()
        self.edges = nn.ModuleList(
            MixedOp([build_op(name, C, C, 1, affine=False) for name in primitives]) for _ in EDGES
        )

    def forward(self, x: torch.Tensor, sample: ArchSample) -> torch.Tensor:
        nodes = [x]
        for i in range(1, NODES):
            s = None
            for j in range(i):
                e = EDGES.index((i, j))
                out = self.edges[e](nodes[j], *sample.edge(e))
                s = out if s is None else s + out
            nodes.append(s)
        return nodes[-1]


class NB201Supernet(Supernet):
    """3x3 conv stem + BN, three stages of `cfg.layers` search cells at C, 2C, 4C joined by residual
    stride-2 blocks, BN + ReLU, global average pooling, linear classifier.

    `cfg.layers` is the number of cells per stage (NAS-Bench-201 uses 5).
    """

    def __init__(self, cfg: SpaceConfig, primitives: tuple[str, ...], num_classes: int, in_channels: int):
        super().__init__()
        self.primitives = primitives
        C = cfg.init_channels
        self.stem = nn.Sequential(nn.Conv2d(in_channels, C, 3, padding=1, bias=False), nn.BatchNorm2d(C))
        self.cells = nn.ModuleList()
        C_prev = C
        for C_curr, reduction in macro_layout(C, cfg.layers):
            self.cells.append(
                ResNetBasicBlock(C_prev, C_curr) if reduction else SearchCell(primitives, C_curr)
            )
            C_prev = C_curr
        self.lastact = nn.Sequential(nn.BatchNorm2d(C_prev), nn.ReLU(inplace=True))
        self.global_pooling = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(C_prev, num_classes)
        # alpha initialised at 1e-3 * N(0, 1), as DARTS and NB201's search code do
        self.alphas = nn.ParameterDict(
            {"cell": nn.Parameter(1e-3 * torch.randn(len(EDGES), len(primitives)))}
        )

    def forward(self, x: torch.Tensor, samples: dict[str, ArchSample]) -> torch.Tensor:
        h = self.stem(x)
        for cell in self.cells:
            h = cell(h, samples["cell"]) if isinstance(cell, SearchCell) else cell(h)
        h = self.global_pooling(self.lastact(h)).flatten(1)  # (B, 4C)
        return self.classifier(h)
