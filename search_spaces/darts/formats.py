"""The DARTS `Genotype(...)` string: the namedtuple repr the DARTS code prints and the literature copies,
`Genotype(normal=[('op', j), ...], normal_concat=range(2, 6), reduce=[...], reduce_concat=...)`.

Registered as the genotype string format "darts" (`nas.arch.genotype.FORMATS`). It is read through `ast`,
never `eval`'d: only literals and `range(...)` of integers are accepted.
"""

from __future__ import annotations

import ast

from nas.arch.genotype import Cell, Genotype, GenotypeFormat, register_format, short
from nas.core.errors import UserError
from nas.core.limits import MAX_NODES


def to_darts_string(genotype: Genotype) -> str:
    """The namedtuple repr the DARTS code prints (`print(model.genotype())`)."""
    parts = []
    for name in ("normal", "reduce"):
        cell = genotype.cells.get(name)
        if cell is None or any(len(node) != 2 for node in cell.nodes):
            raise UserError(
                "a DARTS Genotype string needs 'normal' and 'reduce' cells with 2 inputs per node"
            )
        edges = ", ".join(f"({op!r}, {j})" for op, j in cell.edges())
        c = list(cell.concat)
        contiguous = c == list(range(c[0], c[-1] + 1)) if c else False
        concat = f"range({c[0]}, {c[-1] + 1})" if contiguous else repr(c)
        parts += [f"{name}=[{edges}]", f"{name}_concat={concat}"]
    return f"Genotype({', '.join(parts)})"


def _literal_concat(node: ast.AST) -> list[int]:
    """A concat written as a literal list or as `range(...)`; a range is measured before it is built, so
    `range(0, 100000000)` is refused in a line instead of becoming a list of 10^8 ints."""
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "range":
        args = [ast.literal_eval(a) for a in node.args]
        if node.keywords or not all(isinstance(a, int) and not isinstance(a, bool) for a in args):
            raise ValueError("range() takes integers")
        # bounded before measuring: len(range(0, 10**30)) does not fit a C integer
        states = range(*args) if all(abs(a) <= 1 << 20 for a in args) and 1 <= len(args) <= 3 else range(0)
        if not 0 < len(states) <= MAX_NODES + 2:
            raise UserError(
                f"DARTS genotype concat {short(ast.unparse(node))} must name 1 to {MAX_NODES + 2} states"
            )
        return list(states)
    concat = ast.literal_eval(node)
    if not isinstance(concat, (list, tuple)):  # a set or dict would pass as a list in an order of its own
        raise UserError(f"DARTS genotype concat must be a list or range(...), got {short(concat)}")
    return list(concat)


def from_darts_string(text: str, space: str = "darts") -> Genotype:
    """Parse `Genotype(normal=[('op', j), ...], normal_concat=..., reduce=[...], reduce_concat=...)`."""
    try:
        tree = ast.parse(text.strip(), mode="eval").body
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        raise UserError("not a DARTS Genotype(...) string: syntax error") from None
    if not (isinstance(tree, ast.Call) and isinstance(tree.func, ast.Name) and tree.func.id == "Genotype"):
        raise UserError("not a DARTS Genotype(...) string")
    fields = {kw.arg: kw.value for kw in tree.keywords}
    unknown = sorted(set(fields) - {"normal", "normal_concat", "reduce", "reduce_concat"}, key=str)
    if unknown or tree.args:
        raise UserError(f"DARTS Genotype string has unknown fields {short(unknown or 'positional')}")
    cells = {}
    try:
        for name in ("normal", "reduce"):
            edges = ast.literal_eval(fields[name])
            if not isinstance(edges, list) or len(edges) % 2:
                raise UserError(f"DARTS genotype {name!r} must be a list of ('op', input) pairs, 2 per node")
            nodes = [edges[k : k + 2] for k in range(0, len(edges), 2)]
            cells[name] = Cell.make(nodes, _literal_concat(fields[f"{name}_concat"]), name)
    except KeyError as exc:
        raise UserError(f"DARTS Genotype string lacks the field {exc.args[0]!r}") from None
    except (ValueError, TypeError, SyntaxError, RecursionError, MemoryError):
        raise UserError(
            "DARTS Genotype string: fields must be lists of ('op', input) pairs and ranges"
        ) from None
    return Genotype(space, cells)


FORMAT = register_format(
    GenotypeFormat(
        name="darts",
        space="darts",
        prefix="Genotype(",
        title="a DARTS Genotype(...) string",
        parse=from_darts_string,
        write=to_darts_string,
    )
)
