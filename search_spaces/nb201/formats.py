"""The NAS-Bench-201 arch string `|op~0|+|op~0|op~1|+|op~0|op~1|op~2|` (Dong & Yang, 2020): node k lists
`op~input` for each of its inputs.

Registered as the genotype string format "nb201" (`nas.arch.genotype.FORMATS`).
"""

from __future__ import annotations

from nas.arch.genotype import Cell, Genotype, GenotypeFormat, register_format, short
from nas.core.errors import UserError
from nas.core.limits import MAX_NODES


def to_nb201_string(genotype: Genotype) -> str:
    """The arch string NAS-Bench-201's API indexes its table by."""
    cell = genotype.cells.get("cell")
    if cell is None or len(genotype.cells) != 1:
        raise UserError("a NAS-Bench-201 arch string needs a genotype with exactly one cell named 'cell'")
    return "+".join("|" + "|".join(f"{op}~{j}" for op, j in node) + "|" for node in cell.nodes)


def from_nb201_string(text: str, space: str = "nb201") -> Genotype:
    """Parse `|op~0|+|op~0|op~1|+...`: node k lists `op~input` for its inputs; inputs are ASCII digits."""
    text = text.strip()
    parts = text.split("+")
    if len(parts) > MAX_NODES:
        raise UserError(f"NAS-Bench-201 arch string has {len(parts)} nodes; at most {MAX_NODES} are allowed")
    nodes = []
    for part in parts:
        if not (part.startswith("|") and part.endswith("|") and len(part) > 2):
            raise UserError(f"not a NAS-Bench-201 arch string: bad node {short(part)}")
        node = []
        for edge in part[1:-1].split("|"):
            op, sep, j = edge.partition("~")
            if not sep or not (j.isascii() and j.isdigit() and len(j) <= 6):
                raise UserError(
                    f"not a NAS-Bench-201 arch string: bad edge {short(edge)} (expected op~input)"
                )
            node.append((op, int(j)))
        nodes.append(node)
    return Genotype(space, {"cell": Cell.make(nodes, [len(nodes)])})


FORMAT = register_format(
    GenotypeFormat(
        name="nb201",
        space="nb201",
        prefix="|",
        title="an NB201 arch string",
        parse=from_nb201_string,
        write=to_nb201_string,
    )
)
