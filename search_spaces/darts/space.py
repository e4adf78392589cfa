"""The DARTS search space (Liu et al., 2019): registration, derive rule, random draws, genotype checks."""

from __future__ import annotations

import random

import torch
import torch.nn as nn

from nas.arch.genotype import Cell, Genotype, check_cell
from nas.arch.rule import CellRule
from nas.arch.space import SPACES, edge_weights, space_options
from nas.config import ModelConfig, SpaceConfig
from nas.core.errors import UserError
from nas.core.limits import MAX_NODES
from search_spaces.darts.formats import FORMAT
from search_spaces.darts.imagenet import NetworkImageNet, check_input_size
from search_spaces.darts.network import NetworkCIFAR
from search_spaces.darts.ops import OPS, PRIMITIVES
from search_spaces.darts.options import DartsOptions
from search_spaces.darts.supernet import DartsSupernet, node_groups, num_edges


def derive_cell(
    probs: torch.Tensor, primitives: tuple[str, ...], nodes: int, edge_weights: torch.Tensor | None = None
) -> Cell:
    """DARTS derive rule: per node keep the two incoming edges whose strongest non-`none` op has the highest
    probability; on each, the op is that argmax without `none` (DARTS `_parse`, ties to the lower index).
    With edge normalisation an edge's op probabilities are first multiplied by its edge weight (PC-DARTS
    `_parse(weights, weights2)`): the weight ranks the edges, it cannot change an edge's op.

    Args:
        probs: (E, K) op probabilities, E = sum_i (i + 2).
        edge_weights: (E,) edge-normalisation weights, or None.
    """
    probs = probs.detach().double().cpu()
    if edge_weights is not None:
        probs = probs * edge_weights.detach().double().cpu()[:, None]
    if "none" in primitives:
        probs[:, primitives.index("none")] = -1.0  # never chosen, never ranks an edge
    node_edges = []
    for i, group in enumerate(node_groups(nodes)):
        best, ops = probs[group.start : group.stop].max(dim=1)  # (i + 2,)
        order = sorted(range(i + 2), key=lambda j: -best[j].item())[:2]  # stable: ties keep lower j
        node_edges.append([(primitives[ops[j].item()], j) for j in order])
    return Cell.make(node_edges, range(2, 2 + nodes))


# the primitives whose op, as built, has no weights
PARAMETER_FREE = frozenset(op for op in PRIMITIVES if not list(OPS.get(op)(8, 1, True).parameters()))


class DartsSpace:
    name = "darts"
    Options = DartsOptions
    primitives = PRIMITIVES
    cell_types = ("normal", "reduce")
    parameter_free = PARAMETER_FREE
    input_states = 2
    string_format = FORMAT.name
    networks = {  # DARTS' CIFAR evaluation and the ImageNet mobile setting
        "cifar": {"init_channels": 36, "layers": 20, "classes": 10, "image_size": 32},
        "imagenet": {"init_channels": 48, "layers": 14, "classes": 1000, "image_size": 224},
    }
    train_recipe = "configs/train/darts_cifar10.yaml"  # DARTS' CIFAR-10 retraining protocol, 600 epochs

    def build_supernet(self, cfg: SpaceConfig, num_classes: int, in_channels: int) -> DartsSupernet:
        return DartsSupernet(space_options(self, cfg), self.primitives, num_classes, in_channels)

    def derive(
        self, alphas: dict[str, torch.Tensor], betas: dict[str, torch.Tensor] | None = None
    ) -> Genotype:
        """`derive_cell` per cell type; `betas`: edge-normalisation logits (E,) per cell type, or None."""
        cells = {}
        for name in self.cell_types:
            alpha = alphas[name]
            nodes = _nodes_for_edges(alpha.shape[0])
            probs = torch.softmax(alpha.detach().float(), dim=-1)
            weights = None if not betas else edge_weights(betas[name].detach().float(), node_groups(nodes))
            cells[name] = derive_cell(probs, self.primitives, nodes, weights)
        return Genotype(self.name, cells)

    def sample_random(self, rng: random.Random, cfg: SpaceConfig) -> Genotype:
        """A uniform draw under the derive rule's constraints, independently per cell type: per node two
        distinct inputs among the earlier states, each with an op other than `none`."""
        cfg = space_options(self, cfg)
        ops = [op for op in self.primitives if op != "none"]
        cells = {}
        for name in self.cell_types:
            nodes = [
                [(rng.choice(ops), j) for j in sorted(rng.sample(range(i + 2), 2))] for i in range(cfg.nodes)
            ]
            cells[name] = Cell.make(nodes, range(2, 2 + cfg.nodes))
        return Genotype(self.name, cells, {"config": {"space": {"nodes": cfg.nodes}}})

    def one_hot(self, genotype: Genotype) -> dict[str, torch.Tensor]:
        """The genotype as supernet op weights: per cell type (E, K), one 1 per edge, at the genotype's op on
        the edges it keeps and at `none` on the others."""
        self.validate(genotype)
        out = {}
        for name in self.cell_types:
            cell = genotype.cells[name]
            weights = torch.zeros(num_edges(len(cell.nodes)), len(self.primitives))
            weights[:, self.primitives.index("none")] = 1.0
            offset = 0
            for i, node in enumerate(cell.nodes):
                for op, j in node:
                    if op not in self.primitives:
                        raise UserError(f"op {op!r} of cell {name!r} is not in the DARTS supernet")
                    weights[offset + j] = 0.0
                    weights[offset + j, self.primitives.index(op)] = 1.0
                offset += i + 2
            out[name] = weights
        return out

    def from_one_hot(self, weights: dict[str, torch.Tensor]) -> Genotype:
        """The inverse of `one_hot`: per node, its rows whose 1 is not at `none` (in input order)."""
        cells, nodes = {}, 0
        for name in self.cell_types:
            w = weights[name]
            nodes = _nodes_for_edges(w.shape[0])
            node_edges, offset = [], 0
            for i in range(nodes):
                rows = w[offset : offset + i + 2]
                node_edges.append([(self.primitives[int(r.argmax())], j) for j, r in enumerate(rows)
                                   if r.max() > 0 and self.primitives[int(r.argmax())] != "none"])  # fmt: skip
                offset += i + 2
            cells[name] = Cell.make(node_edges, range(2, 2 + nodes))
        genotype = Genotype(self.name, cells, {"config": {"space": {"nodes": nodes}}})
        self.validate(genotype)
        return genotype

    def cell_rule(self, cell_type: str, edges: int) -> CellRule:
        """Derive's structure (`nas.arch.rule`): each node keeps 2 of its incoming edges, never `none`."""
        groups = [tuple(group) for group in node_groups(_nodes_for_edges(edges))]
        allowed = tuple(k for k, op in enumerate(self.primitives) if op != "none")
        return CellRule(tuple(groups), 2, allowed)

    def edge_modules(self, network: nn.Module) -> list[tuple[str, int, nn.Module]]:
        """(cell type, alpha row, op module) for every op of a built NetworkCIFAR / NetworkImageNet."""
        out = []
        for cell in network.cells:
            name = "reduce" if cell.reduction else "normal"
            offset = 0
            for i, (ops, inputs) in enumerate(zip(cell.ops, cell.inputs)):
                out += [(name, offset + j, op) for op, j in zip(ops, inputs)]
                offset += i + 2
        return out

    def validate(self, genotype: Genotype) -> None:
        """Op names, two inputs per node, input indices, and the node count: 4 (the DARTS space) unless
        the genotype's own provenance records a search with another `space.nodes`."""
        if genotype.space != self.name:
            raise UserError(f"genotype is for space {genotype.space!r}, not {self.name!r}")
        if set(genotype.cells) != set(self.cell_types):
            raise UserError(f"DARTS genotype needs cells {list(self.cell_types)}, got {list(genotype.cells)}")
        nodes = _searched_nodes(genotype.provenance)
        ops = [op for op in self.primitives if op != "none"] + ["sep_conv_7x7"]
        for name, cell in genotype.cells.items():
            check_cell(name, cell, ops, nodes, self.input_states, lambda i: 2)

    def build_network(
        self,
        genotype: Genotype,
        cfg: ModelConfig,
        num_classes: int,
        in_channels: int,
        image_size: int | None = None,
    ) -> nn.Module:
        """NetworkCIFAR, or NetworkImageNet with `cfg.network=imagenet` (refusing inputs it cannot take)."""
        self.validate(genotype)
        args = (genotype, cfg.init_channels, num_classes, cfg.layers, cfg.auxiliary, in_channels)
        if cfg.network == "imagenet":
            if image_size is not None:
                check_input_size(image_size)
            return NetworkImageNet(*args)
        return NetworkCIFAR(*args)


def _searched_nodes(provenance: dict) -> int:
    """`space.nodes` of the search that produced the genotype (provenance.config), default 4."""
    config = provenance.get("config")
    space = config.get("space") if isinstance(config, dict) else None
    nodes = space.get("nodes", DartsOptions.nodes) if isinstance(space, dict) else DartsOptions.nodes
    if isinstance(nodes, bool) or not isinstance(nodes, int) or not 1 <= nodes <= MAX_NODES:
        raise UserError(f"genotype provenance config.space.nodes must be an integer in 1..{MAX_NODES}")
    return nodes


def _nodes_for_edges(edges: int) -> int:
    nodes = 0
    while num_edges(nodes) < edges:
        nodes += 1
    if num_edges(nodes) != edges:
        raise ValueError(f"{edges} edges do not form a DARTS cell")
    return nodes


SPACE = SPACES.register("darts", DartsSpace())
