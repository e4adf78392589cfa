"""Genotypes: discrete architectures as plain data.

A genotype is a set of named cells ("normal", "reduce" for DARTS; "cell" for NAS-Bench-201). Each cell
lists, per intermediate node, its incoming edges as (op, input) pairs, where input indexes the cell's
states (for DARTS: 0 and 1 are the two cell inputs, 2.. the intermediate nodes), and the states
concatenated into the cell's output.

Genotypes round-trip through a versioned JSON file and through the string formats the spaces register
(`FORMATS`: the DARTS `Genotype(...)` string, the NAS-Bench-201 arch string, in `search_spaces`). Parsing
never calls `eval`, and every cell is built by `Cell.make`, which bounds its size. Structural checks that
depend on a search space (op names, inputs per node) live in `check_cell`, which each space calls with its
own rules.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nas.core.atomic import atomic_write_text
from nas.core.errors import UserError, printable
from nas.core.limits import MAX_CELLS, MAX_EDGES_PER_NODE, MAX_GENOTYPE_BYTES, MAX_NODES, MAX_OP_NAME
from nas.core.registry import Registry

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
        """A cell from plain sequences, checked against the bounds every genotype obeys (`nas.core.limits`):
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


# --- string formats: each space registers its own (search_spaces/<space>/formats.py) ----------------


@dataclass(frozen=True)
class GenotypeFormat:
    """A genotype string format, registered by the space whose genotypes it writes (`register_format`).

    Every command that reads a genotype reads a text starting with `prefix` through `parse`; `nas genotype
    convert --to NAME` writes through `write`. Both raise UserError in one line. `parse` never `eval`s and
    builds its cells with `Cell.make`, so the bounds of `nas.core.limits` hold for every format.
    """

    name: str  # `nas genotype convert --to NAME`; the space's `string_format`
    space: str  # the space whose genotypes `parse` makes
    prefix: str  # how a text in this format starts (after whitespace)
    title: str  # how messages name it, e.g. "a DARTS Genotype(...) string"
    parse: Callable[[str], Genotype]
    write: Callable[[Genotype], str]


FORMATS: Registry[GenotypeFormat] = Registry("genotype format", plugins="search_spaces")


def register_format(fmt: GenotypeFormat) -> GenotypeFormat:
    """Register `fmt` under its name. Its prefix must tell it apart from JSON and every other format, so
    that `format_of` reads each text one way only."""
    taken = ["{"] + [other.prefix for other in formats()]
    if not fmt.prefix or any(p.startswith(fmt.prefix) or fmt.prefix.startswith(p) for p in taken):
        raise ValueError(f"genotype format {fmt.name!r}: prefix {fmt.prefix!r} is empty or overlaps {taken}")
    return FORMATS.register(fmt.name, fmt)


def formats() -> list[GenotypeFormat]:
    """The registered string formats, by name."""
    return [FORMATS.get(name) for name in FORMATS]


def format_of(text: str) -> GenotypeFormat | None:
    """The registered string format `text` is written in (by its prefix), or None."""
    stripped = text.lstrip()
    return next((fmt for fmt in formats() if stripped.startswith(fmt.prefix)), None)


def listed(items: Sequence[str], last: str) -> str:
    """`a, b and c` (`last` = "and", "nor", ...)."""
    return ", ".join(items[:-1]) + f" {last} " + items[-1] if len(items) > 1 else "".join(items)


# --- files -------------------------------------------------------------------------------------------


def parse_genotype_text(text: str, source: str = "genotype") -> Genotype:
    """Read genotype JSON or any registered string format (`FORMATS`, told apart by their prefixes)."""
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
    fmt = format_of(stripped)
    if fmt is not None:
        return fmt.parse(stripped)
    titles = [other.title for other in formats()]
    what = f"neither {listed(['genotype JSON', *titles], 'nor')}" if titles else "not genotype JSON"
    raise UserError(f"{source} is {what}")


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


def describe(genotype: Genotype, input_states: int) -> str:
    """A text view of every cell, one line per node; nodes are numbered after the cell's `input_states`
    (its space's `input_states`)."""
    lines = [f"space: {genotype.space}"]
    prov = genotype.provenance
    if prov:
        keys = [k for k in ("run", "epoch", "seed", "sampler", "source") if k in prov]
        lines.append("provenance: " + ", ".join(f"{k}={printable(prov[k], 80)}" for k in keys))
    for name, cell in genotype.cells.items():
        states = ", ".join(map(str, cell.concat))
        output = f"state {states}" if len(cell.concat) == 1 else f"concat of states {states}"
        lines.append(f"{name} cell (output = {output}):")
        for i, node in enumerate(cell.nodes):
            inputs = ", ".join(f"{op}({j})" for op, j in node)
            lines.append(f"  node {input_states + i} <- {inputs}")
    return "\n".join(lines)
