"""The NAS-Bench-201 cell as a genotype: derive's argmax rule and the structure check (shared by the space and
its ground-truth table)."""

from __future__ import annotations

import torch

from nas.arch.genotype import Cell, Genotype, check_cell
from nas.core.errors import UserError
from search_spaces.nb201.ops import PRIMITIVES
from search_spaces.nb201.supernet import EDGES, NODES

OUTPUT = NODES - 1  # the cell's output state; matches the concat that formats.from_nb201_string makes


def derive_cell(probs: torch.Tensor, primitives: tuple[str, ...]) -> Cell:
    """NB201 derive rule: on every edge keep the argmax op, `none` included (ties to the lower index).

    Args:
        probs: (6, K) op probabilities, rows in EDGES order.
    """
    best = probs.detach().double().cpu().argmax(dim=1).tolist()  # (6,)
    nodes = [[(primitives[best[EDGES.index((i, j))]], j) for j in range(i)] for i in range(1, NODES)]
    return Cell.make(nodes, [OUTPUT])


def validate_genotype(genotype: Genotype) -> None:
    """Raise UserError unless `genotype` is an NB201 cell: the one cell type 'cell', whose node i reads each of
    nodes 0..i-1 exactly once, with ops of PRIMITIVES."""
    if genotype.space != "nb201":
        raise UserError(f"genotype is for space {genotype.space!r}, not 'nb201'")
    if set(genotype.cells) != {"cell"}:
        raise UserError(f"NB201 genotype needs cells ['cell'], got {list(genotype.cells)}")
    cell = genotype.cells["cell"]
    check_cell("cell", cell, PRIMITIVES, NODES - 1, 1, lambda i: i + 1, concat=[OUTPUT])
    for i, node in enumerate(cell.nodes):
        if sorted(j for _, j in node) != list(range(i + 1)):
            raise UserError(f"cell 'cell' node {i + 1} must read each of nodes 0..{i} exactly once")
