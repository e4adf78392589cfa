"""Genotypes: discrete architectures as plain data.

A genotype is a set of named cells ("normal", "reduce" for DARTS; "cell" for NAS-Bench-201). Each cell
lists, per intermediate node, its incoming edges as (op, input) pairs, where input indexes the cell's
states (for DARTS: 0 and 1 are the two cell inputs, 2.. the intermediate nodes), and the states
concatenated into the cell's output.

Genotypes round-trip through a versioned JSON file and through the DARTS `Genotype(...)` string and the
NAS-Bench-201 arch string. Parsing never calls `eval`: the DARTS string is read through `ast`.
Structural checks that depend on a search space (op names, inputs per node) live in `check_cell`, which
each space calls with its own rules.
"""

from __future__ import annotations

import ast
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nas.atomic import atomic_write_text
from nas.errors import UserError
from nas.limits import MAX_CELLS, MAX_EDGES_PER_NODE, MAX_GENOTYPE_BYTES, MAX_NODES, MAX_OP_NAME

FORMAT = "nas.genotype"
VERSION = 1

Edge = tuple[str, int]


@dataclass(frozen=True)
class Cell:
    nodes: tuple[tuple[Edge, ...], ...]  # per intermediate node, its incoming (op, input) edges
    concat: tuple[int, ...]

    @classmethod
    def make(
        cls, nodes: Sequence[Sequence[Sequence[Any]]], concat: Sequence[int], name: str = "cell"
    ) -> Cell:
        """A cell from plain sequences, checked against the bounds every genotype obeys (`nas.limits`):
        op names are short strings, inputs and concat entries integers (never rounded), the concat
        non-empty and without repeats. Raises UserError naming the cell and the first problem."""
        where = f"cell {short(name)}"
        if not _sized(nodes) or not _sized(concat):
            raise UserError(f"{where}: nodes and concat must be lists")
        if not 1 <= len(nodes) <= MAX_NODES:
            raise UserError(f"{where} has {len(nodes)} nodes; a genotype cell has 1 to {MAX_NODES}")
        parsed = tuple(_node(node, f"{where} node {i}") for i, node in enumerate(nodes))
        if not 1 <= len(concat) <= MAX_NODES + 2:
            raise UserError(f"{where}: concat must list 1 to {MAX_NODES + 2} states, got {len(concat)}")
        out = tuple(_index(c, f"{where} concat") for c in concat)
        if len(set(out)) != len(out):
            raise UserError(f"{where}: concat {list(out)} repeats a state")
        return cls(parsed, out)

    def edges(self) -> list[Edge]:
        return [edge for node in self.nodes for edge in node]


def short(value: Any, limit: int = 60) -> str:
    """repr() of user input cut to `limit` characters: error messages stay one short line."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _sized(value: Any) -> bool:
    return isinstance(value, (list, tuple, range))


def _index(value: Any, where: str) -> int:
    """A state index: an int (bool and float refused, so 1.5 is never truncated to 1), within bounds."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise UserError(f"{where}: state index {short(value)} is not an integer")
    if not 0 <= value < MAX_NODES + 2:
        raise UserError(f"{where}: state index {value} out of range 0..{MAX_NODES + 1}")
    return value


def _node(node: Any, where: str) -> tuple[Edge, ...]:
    if not _sized(node) or not 1 <= len(node) <= MAX_EDGES_PER_NODE:
        raise UserError(f"{where}: expected a list of 1 to {MAX_EDGES_PER_NODE} (op, input) pairs")
    edges = []
    for edge in node:
        if not _sized(edge) or len(edge) != 2:
            raise UserError(f"{where}: expected (op, input) pairs, got {short(edge)}")
        op, j = edge
        if not isinstance(op, str) or not 0 < len(op) <= MAX_OP_NAME or not op.isprintable():
            raise UserError(f"{where}: op {short(op)} is not an op name")
        edges.append((op, _index(j, where)))
    return tuple(edges)


@dataclass(frozen=True)
class Genotype:
    space: str
    cells: dict[str, Cell]
    provenance: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "version": VERSION,
            "space": self.space,
            "cells": {
                name: {
                    "nodes": [[[op, j] for op, j in node] for node in cell.nodes],
                    "concat": list(cell.concat),
                }
                for name, cell in self.cells.items()
            },
            "provenance": self.provenance,
        }

    @classmethod
    def from_dict(cls, data: Any) -> Genotype:
        """Parse the JSON form. Raises UserError naming the first structural problem."""
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise UserError(f'not a genotype file: expected a JSON object with "format": "{FORMAT}"')
        if data.get("version") != VERSION:
            raise UserError(
                f"unsupported genotype version {data.get('version')!r} (this nas reads {VERSION})"
            )
        space, cells = data.get("space"), data.get("cells")
        if not isinstance(space, str) or not isinstance(cells, dict) or not cells:
            raise UserError('genotype needs a string "space" and a non-empty object "cells"')
        if len(cells) > MAX_CELLS or len(space) > MAX_OP_NAME:
            raise UserError(f"genotype declares {len(cells)} cells; at most {MAX_CELLS} are allowed")
        parsed = {}
        for name, cell in cells.items():
            if not isinstance(cell, dict) or set(cell) != {"nodes", "concat"}:
                raise UserError(
                    f'cell {short(name)}: expected {{"nodes": [[[op, input], ...], ...], "concat": [int, ...]}}'
                )
            parsed[name] = Cell.make(cell["nodes"], cell["concat"], name)
        provenance = data.get("provenance") or {}
        return cls(space, parsed, provenance if isinstance(provenance, dict) else {})


def check_cell(
    name: str,
    cell: Cell,
    primitives: Sequence[str],
    num_nodes: int,
    first_node: int,
    edges_per_node: Callable[[int], int],
    concat: Sequence[int] | None = None,
) -> None:
    """Check one cell against a space's rules; raises UserError naming the first problem.

    Args:
        first_node: state index of the first intermediate node (DARTS: 2, NB201: 1); node i may read
            states 0 .. first_node + i - 1.
        edges_per_node: node position i -> how many incoming edges it must have.
        concat: the exact output concat the space needs, if any.
    """
    if len(cell.nodes) != num_nodes:
        raise UserError(f"cell {name!r} has {len(cell.nodes)} nodes, this space needs {num_nodes}")
    for i, node in enumerate(cell.nodes):
        state = first_node + i
        if len(node) != edges_per_node(i):
            raise UserError(
                f"cell {name!r} node {state} has {len(node)} inputs, this space needs {edges_per_node(i)}"
            )
        for op, j in node:
            if op not in primitives:
                raise UserError(
                    f"cell {name!r} node {state}: unknown op {short(op)} (known: {', '.join(primitives)})"
                )
            if not 0 <= j < state:
                raise UserError(f"cell {name!r} node {state}: input index {j} out of range 0..{state - 1}")
    if concat is not None and tuple(cell.concat) != tuple(concat):
        raise UserError(f"cell {name!r} concat {list(cell.concat)} must be {list(concat)}")
    for c in cell.concat:
        if not 0 <= c < first_node + num_nodes:
            raise UserError(f"cell {name!r} concat index {c} out of range")


# --- DARTS `Genotype(normal=[...], normal_concat=range(2, 6), reduce=[...], reduce_concat=...)` -------


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
        states = range(*args)
        if not 0 < len(states) <= MAX_NODES + 2:
            raise UserError(
                f"DARTS genotype concat {short(ast.unparse(node))} must name 1 to {MAX_NODES + 2} states"
            )
        return list(states)
    return list(ast.literal_eval(node))


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


# --- NAS-Bench-201 arch string `|op~0|+|op~0|op~1|+|op~0|op~1|op~2|` ----------------------------------


def to_nb201_string(genotype: Genotype) -> str:
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


# --- files -------------------------------------------------------------------------------------------


def parse_genotype_text(text: str, source: str = "genotype") -> Genotype:
    """Read any of the three forms: JSON, DARTS Genotype(...) string, NB201 arch string."""
    if len(text) > MAX_GENOTYPE_BYTES:
        raise UserError(f"{source} is {len(text):,} characters; a genotype is at most {MAX_GENOTYPE_BYTES:,}")
    stripped = text.strip()
    if not stripped:
        raise UserError(f"{source} is empty")
    if stripped.startswith("{"):
        try:
            data = json.loads(stripped)
        except json.JSONDecodeError as exc:
            raise UserError(f"{source} is not valid JSON: {exc.msg} at line {exc.lineno}") from None
        except (ValueError, RecursionError):  # an integer of thousands of digits, nesting too deep
            raise UserError(
                f"{source} is not a genotype: a number or nesting beyond any genotype's"
            ) from None
        return Genotype.from_dict(data)
    if stripped.startswith("Genotype("):
        return from_darts_string(stripped)
    if stripped.startswith("|"):
        return from_nb201_string(stripped)
    raise UserError(
        f"{source} is neither genotype JSON, a DARTS Genotype(...) string nor an NB201 arch string"
    )


def load_genotype_file(path: str | Path) -> Genotype:
    path = Path(path)
    if not path.is_file():
        raise UserError(f"genotype file not found: {path}")
    try:
        if path.stat().st_size > MAX_GENOTYPE_BYTES:
            raise UserError(
                f"{path} is {path.stat().st_size:,} bytes; a genotype is at most {MAX_GENOTYPE_BYTES:,}"
            )
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"cannot read genotype file {path}: {exc}") from None
    return parse_genotype_text(text, source=str(path))


def save_genotype(path: str | Path, genotype: Genotype) -> None:
    atomic_write_text(path, json.dumps(genotype.to_dict(), indent=2) + "\n")


def describe(genotype: Genotype) -> str:
    """A text view of every cell, one line per node."""
    lines = [f"space: {genotype.space}"]
    prov = genotype.provenance
    if prov:
        keys = [k for k in ("run", "epoch", "seed", "sampler", "source") if k in prov]
        lines.append("provenance: " + ", ".join(f"{k}={prov[k]}" for k in keys))
    for name, cell in genotype.cells.items():
        first = 1 if genotype.space == "nb201" else 2  # state index of the first intermediate node
        lines.append(f"{name} cell (output = concat of states {', '.join(map(str, cell.concat))}):")
        for i, node in enumerate(cell.nodes):
            inputs = ", ".join(f"{op}({j})" for op, j in node)
            lines.append(f"  node {first + i} <- {inputs}")
    return "\n".join(lines)
