"""The DARTS search network (Liu et al., 2019, `cnn/model_search.py`): a stack of cells whose every
edge is a MixedOp over the primitives, with separate alphas for normal and reduction cells.

Two PC-DARTS options (Xu et al., ICLR 2020), each usable alone and with every sampler:
- partial channels (`space.partial_channels: K`, sec. 3.2): each edge sends 1/K of its input channels
  through the mixed op and the rest around it, then shuffles the channels, so the mixed op costs ~1/K;
- edge normalisation (`space.edge_norm`, sec. 3.3): a learnt logit per edge, softmax over each node's
  incoming edges, weighs the edges' outputs (and derive's choice of a node's inputs), which steadies
  the choice of edges that partial channels makes noisier.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from nas.arch.mixed_op import MixedOp
from nas.arch.space import Supernet
from nas.sampling import ArchSample
from search_spaces.darts.ops import FactorizedReduce, ReLUConvBN, build_op
from search_spaces.darts.options import DartsOptions


def num_edges(nodes: int) -> int:
    """Node i (0-based) reads the two cell inputs and every earlier node: sum_i (i + 2) edges."""
    return sum(i + 2 for i in range(nodes))


def node_groups(nodes: int) -> list[range]:
    """The alpha rows of each node's incoming edges: node i reads rows offset .. offset + i + 1."""
    groups, offset = [], 0
    for i in range(nodes):
        groups.append(range(offset, offset + i + 2))
        offset += i + 2
    return groups


def reduction_layers(layers: int) -> tuple[int, ...]:
    """Reduction cells sit at 1/3 and 2/3 of the depth (DARTS)."""
    return (layers // 3, 2 * layers // 3) if layers >= 3 else ()


class PartialChannelEdge(nn.Module):
    """A PC-DARTS edge (Xu et al. 2020, sec. 3.2, their `MixedOp`): the first 1/K of the input channels go
    through the mixed op (built for C / K channels), the rest bypass it (2x2 max-pooled on a stride-2 edge,
    as in the paper's code; ceil mode, so that an odd size matches the ops' output), and a channel shuffle
    with K groups interleaves the two, so that the next edge's first 1/K mixes both."""

    def __init__(self, mixed: MixedOp, k: int, stride: int):
        super().__init__()
        self.mixed, self.k = mixed, k
        self.bypass = nn.MaxPool2d(2, 2, ceil_mode=True) if stride == 2 else nn.Identity()
        self.shuffle = nn.ChannelShuffle(k)

    def forward(self, x: torch.Tensor, *edge: object) -> torch.Tensor:
        c = x.shape[1] // self.k
        out = self.mixed(x[:, :c], *edge)  # (B, C / K, H', W')
        return self.shuffle(torch.cat([out, self.bypass(x[:, c:])], dim=1))  # (B, C, H', W')


def build_edge(primitives: tuple[str, ...], C: int, stride: int, k: int) -> nn.Module:
    """One supernet edge: a MixedOp over the primitives at C channels, or, with K > 1, at C / K inside a
    `PartialChannelEdge`."""
    ops = []
    for name in primitives:
        op = build_op(name, C // k, stride, affine=False)
        if "pool" in name:  # DARTS appends affine-free BN to pooling in the supernet
            op = nn.Sequential(op, nn.BatchNorm2d(C // k, affine=False))
        ops.append(op)
    return MixedOp(ops) if k == 1 else PartialChannelEdge(MixedOp(ops), k, stride)


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
        partial_channels: int = 1,
    ):
        super().__init__()
        self.reduction = reduction
        self.nodes = nodes
        # affine-free BN in the supernet, so that BN scales cannot compensate for alpha (DARTS sec. 3)
        self.preprocess0 = (
            FactorizedReduce(C_pp, C, affine=False) if reduction_prev else ReLUConvBN(C_pp, C, 1, 1, False)
        )
        self.preprocess1 = ReLUConvBN(C_p, C, 1, 1, False)
        self.edges = nn.ModuleList(
            build_edge(primitives, C, 2 if reduction and j < 2 else 1, partial_channels)
            for i in range(nodes)
            for j in range(i + 2)
        )

    def forward(
        self, s0: torch.Tensor, s1: torch.Tensor, sample: ArchSample, edge_weights: torch.Tensor | None = None
    ) -> torch.Tensor:
        """`edge_weights` (E,): edge normalisation's weight of each edge's output, or None."""
        states = [self.preprocess0(s0), self.preprocess1(s1)]
        scales = None if edge_weights is None else edge_weights.unbind(0)
        offset = 0
        for _ in range(self.nodes):
            s = None
            for j, h in enumerate(states):
                e = offset + j
                out = self.edges[e](h, *sample.edge(e))
                if scales is not None:
                    out = out * scales[e].to(out.dtype)
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
            self.cells.append(
                SearchCell(
                    primitives, nodes, C_pp, C_p, C_curr, reduction, reduction_prev, cfg.partial_channels
                )
            )
            reduction_prev = reduction
            C_pp, C_p = C_p, nodes * C_curr
        self.global_pooling = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(C_p, num_classes)
        shape = (num_edges(nodes), len(primitives))
        # DARTS initialises alpha at 1e-3 * N(0, 1); the caller seeds torch before building
        self.alphas = nn.ParameterDict(
            {name: nn.Parameter(1e-3 * torch.randn(shape)) for name in ("normal", "reduce")}
        )
        self.groups = node_groups(nodes)
        if cfg.edge_norm:  # PC-DARTS initialises its betas as DARTS its alphas: 1e-3 * N(0, 1)
            self.betas = nn.ParameterDict(
                {name: nn.Parameter(1e-3 * torch.randn(shape[0])) for name in ("normal", "reduce")}
            )

    def forward(self, x: torch.Tensor, samples: dict[str, ArchSample]) -> torch.Tensor:
        scales = {name: self.edge_weights(name, sample, self.groups) for name, sample in samples.items()}
        s0 = s1 = self.stem(x)
        for cell in self.cells:
            name = "reduce" if cell.reduction else "normal"
            s0, s1 = s1, cell(s0, s1, samples[name], scales[name])
        out = self.global_pooling(s1).flatten(1)
        return self.classifier(out)
