"""The DARTS search network (Liu et al., 2019, `cnn/model_search.py`): a stack of cells whose every
edge is a MixedOp over the primitives, with separate alphas for normal and reduction cells."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import torch.nn as nn

from nas.mixed_op import MixedOp
from nas.sampling import ArchSample
from nas.space import Supernet
from search_spaces.darts.ops import FactorizedReduce, ReLUConvBN, build_op

if TYPE_CHECKING:
    from search_spaces.darts.space import DartsOptions


def num_edges(nodes: int) -> int:
    """Node i (0-based) reads the two cell inputs and every earlier node: sum_i (i + 2) edges."""
    return sum(i + 2 for i in range(nodes))


def reduction_layers(layers: int) -> tuple[int, ...]:
    """Reduction cells sit at 1/3 and 2/3 of the depth (DARTS)."""
    return (layers // 3, 2 * layers // 3) if layers >= 3 else ()


class SearchCell(nn.Module):
    def __init__(
        self,
        primitives: tuple[str, ...],
        nodes: int,
        C_pp: int,
        C_p: int,
        C: int,
        reduction: bool,
        reduction_prev: bool,
    ):
        super().__init__()
        self.reduction = reduction
        self.nodes = nodes
        # affine-free BN in the supernet, so that BN scales cannot compensate for alpha (DARTS sec. 3)
        self.preprocess0 = (
            FactorizedReduce(C_pp, C, affine=False) if reduction_prev else ReLUConvBN(C_pp, C, 1, 1, False)
        )
        self.preprocess1 = ReLUConvBN(C_p, C, 1, 1, False)
        self.edges = nn.ModuleList()
        for i in range(nodes):
            for j in range(i + 2):
                stride = 2 if reduction and j < 2 else 1
                ops = []
                for name in primitives:
                    op = build_op(name, C, stride, affine=False)
                    if "pool" in name:  # DARTS appends affine-free BN to pooling in the supernet
                        op = nn.Sequential(op, nn.BatchNorm2d(C, affine=False))
                    ops.append(op)
                self.edges.append(MixedOp(ops))

    def forward(self, s0: torch.Tensor, s1: torch.Tensor, sample: ArchSample) -> torch.Tensor:
        states = [self.preprocess0(s0), self.preprocess1(s1)]
        offset = 0
        for _ in range(self.nodes):
            s = None
            for j, h in enumerate(states):
                e = offset + j
                out = self.edges[e](h, *sample.edge(e))
                s = out if s is None else s + out
            offset += len(states)
            states.append(s)
        return torch.cat(states[2:], dim=1)


class DartsSupernet(Supernet):
    def __init__(self, cfg: DartsOptions, primitives: tuple[str, ...], num_classes: int, in_channels: int):
        super().__init__()
        self.primitives = primitives
        C, nodes = cfg.init_channels, cfg.nodes
        C_curr = cfg.stem_multiplier * C
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, C_curr, 3, padding=1, bias=False), nn.BatchNorm2d(C_curr)
        )
        C_pp, C_p, C_curr = C_curr, C_curr, C
        self.cells = nn.ModuleList()
        reduction_prev = False
        reductions = reduction_layers(cfg.layers)
        for layer in range(cfg.layers):
            reduction = layer in reductions
            if reduction:
                C_curr *= 2
            self.cells.append(SearchCell(primitives, nodes, C_pp, C_p, C_curr, reduction, reduction_prev))
            reduction_prev = reduction
            C_pp, C_p = C_p, nodes * C_curr
        self.global_pooling = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(C_p, num_classes)
        shape = (num_edges(nodes), len(primitives))
        # DARTS initialises alpha at 1e-3 * N(0, 1); the caller seeds torch before building
        self.alphas = nn.ParameterDict(
            {name: nn.Parameter(1e-3 * torch.randn(shape)) for name in ("normal", "reduce")}
        )

    def forward(self, x: torch.Tensor, samples: dict[str, ArchSample]) -> torch.Tensor:
        s0 = s1 = self.stem(x)
        for cell in self.cells:
            s0, s1 = s1, cell(s0, s1, samples["reduce" if cell.reduction else "normal"])
        out = self.global_pooling(s1).flatten(1)
        return self.classifier(out)
