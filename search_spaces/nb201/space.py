"""The NAS-Bench-201 search space (Dong & Yang, "NAS-Bench-201: Extending the Scope of Reproducible
Neural Architecture Search", ICLR 2020): registration, derive rule, genotype checks.

A cell has 4 nodes; node 0 is the input and node i (1..3) sums one op from every earlier node, so a cell
is 6 (edge, op) choices over 5 primitives: 5^6 = 15,625 architectures. One cell genotype is shared by
every cell of the network. Edge order (rows of alpha) is that of the NB201 arch string:
(1<-0), (2<-0), (2<-1), (3<-0), (3<-1), (3<-2).

Config conventions for this space: `space.layers` / `model.layers` is the number of cells per stage
(NAS-Bench-201 uses 5, with init_channels 16); `model.auxiliary` is ignored (no auxiliary head).
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import torch
import torch.nn as nn

from nas.arch.genotype import Cell, Genotype
from nas.arch.ground_truth import GroundTruth, GroundTruthConfig
from nas.arch.rule import CellRule
from nas.arch.space import SPACES
from nas.config import ModelConfig, SpaceConfig
from nas.core.errors import UserError
from search_spaces.nb201.cell import OUTPUT, derive_cell, validate_genotype
from search_spaces.nb201.formats import FORMAT
from search_spaces.nb201.network import InferCell, TinyNetwork
from search_spaces.nb201.ops import OPS, PRIMITIVES
from search_spaces.nb201.supernet import EDGES, NODES, NB201Supernet


@dataclass
class NB201Options(SpaceConfig):
    """The NAS-Bench-201 space's `space` section: the benchmark's network, 16 channels and 5 cells per
    stage; the cell is fixed (4 nodes), so there are no keys of its own."""

    name: str = "nb201"
    init_channels: int = 16
    layers: int = 5  # cells per stage


# the primitives whose op, as built inside a cell, has no weights
PARAMETER_FREE = frozenset(op for op in PRIMITIVES if not list(OPS.get(op)(8, 8, 1, True, True).parameters()))


class NB201Space:
    name = "nb201"
    Options = NB201Options
    primitives = PRIMITIVES
    cell_types = ("cell",)
    parameter_free = PARAMETER_FREE
    input_states = 1
    string_format = FORMAT.name
    networks = {
        "cifar": {"init_channels": 16, "layers": 5, "classes": 10, "image_size": 32}
    }  # the benchmark's
    train_recipe = "configs/train/nb201_cifar10.yaml"  # NAS-Bench-201's training protocol, 200 epochs
    # no auxiliary head, no drop path (nas.config.idle)
    idle_keys = ("model.auxiliary", "model.drop_path_prob")
    # GDAS' reference code for NAS-Bench-201 adds the unchosen (zero) op weights to every edge's output,
    # so every alpha gets a gradient (nas.arch.mixed_op.MixedOp); `sampler.unchosen_grad: null` follows it
    hard_unchosen_grad = True

    def ground_truth(self, cfg: GroundTruthConfig) -> GroundTruth:
        """NAS-Bench-201's accuracy of every cell (`search_spaces.nb201.ground_truth`)."""
        from search_spaces.nb201.ground_truth import ground_truth

        return ground_truth(cfg)

    def build_supernet(self, cfg: SpaceConfig, num_classes: int, in_channels: int) -> NB201Supernet:
        return NB201Supernet(cfg, self.primitives, num_classes, in_channels)

    def derive(
        self, alphas: dict[str, torch.Tensor], betas: dict[str, torch.Tensor] | None = None
    ) -> Genotype:
        """Argmax per edge. `betas` (edge normalisation) cannot change an NB201 cell, which keeps every
        edge; its supernet has none."""
        alpha = alphas["cell"]
        if tuple(alpha.shape) != (len(EDGES), len(self.primitives)):
            raise ValueError(
                f"NB201 alpha must be {(len(EDGES), len(self.primitives))}, got {tuple(alpha.shape)}"
            )
        probs = torch.softmax(alpha.detach().float(), dim=-1)
        return Genotype(self.name, {"cell": derive_cell(probs, self.primitives)})

    def sample_random(self, rng: random.Random, cfg: SpaceConfig) -> Genotype:
        """A uniform draw from the 5^6 cells (any op on every edge, `none` included, as derive allows)."""
        nodes = [[(rng.choice(self.primitives), j) for j in range(i)] for i in range(1, NODES)]
        return Genotype(self.name, {"cell": Cell.make(nodes, [OUTPUT])})

    def one_hot(self, genotype: Genotype) -> dict[str, torch.Tensor]:
        """The genotype as supernet op weights: (6, K), one 1 per edge at its op."""
        self.validate(genotype)
        weights = torch.zeros(len(EDGES), len(self.primitives))
        for i, node in enumerate(genotype.cells["cell"].nodes):
            for op, j in node:
                weights[EDGES.index((i + 1, j)), self.primitives.index(op)] = 1.0
        return {"cell": weights}

    def from_one_hot(self, weights: dict[str, torch.Tensor]) -> Genotype:
        """The inverse of `one_hot`: the op of each row's 1."""
        return Genotype(self.name, {"cell": derive_cell(weights["cell"], self.primitives)})

    def cell_rule(self, cell_type: str, edges: int) -> CellRule:
        """Derive's structure (`nas.arch.rule`): every edge kept, any op (`none` included)."""
        return CellRule(tuple((e,) for e in range(edges)), 1, tuple(range(len(self.primitives))))

    def edge_modules(self, network: nn.Module) -> list[tuple[str, int, nn.Module]]:
        """(cell type, alpha row, op module) for every cell op of a built TinyNetwork."""
        out = []
        for cell in network.cells:
            if isinstance(cell, InferCell):  # the residual blocks between stages are fixed
                for i, (ops, inputs) in enumerate(zip(cell.ops, cell.inputs)):
                    out += [("cell", EDGES.index((i + 1, j)), op) for op, j in zip(ops, inputs)]
        return out

    def validate(self, genotype: Genotype) -> None:
        validate_genotype(genotype)

    def build_network(
        self,
        genotype: Genotype,
        cfg: ModelConfig,
        num_classes: int,
        in_channels: int,
        image_size: int | None = None,
    ) -> nn.Module:
        self.validate(genotype)
        if cfg.network != "cifar":
            raise UserError(
                f"model.network={cfg.network} is for DARTS-space genotypes; NAS-Bench-201 has one network "
                "(model.network=cifar)"
            )
        return TinyNetwork(genotype, cfg.init_channels, cfg.layers, num_classes, in_channels)


SPACE = SPACES.register("nb201", NB201Space())
