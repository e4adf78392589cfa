"""Cell pictures in the style of the DARTS paper (Liu et al., 2019, Fig. 4-5; `cnn/visualize.py`).

- `cell_to_dot(genotype)`: Graphviz DOT text, one cluster per cell: input states on the left
  (c_{k-2}, c_{k-1} for two-input cells, node 0 for NAS-Bench-201), intermediate nodes, edges labelled
  with their op (`none` edges left out), and the output node c_{k} fed by the concatenated states.
- `plot_genotype(genotype, path)`: `.dot` always; `.png` / `.svg` / `.pdf` rendered by Graphviz's `dot`
  when it is installed, otherwise drawn with matplotlib (Agg, no display needed).
- `cell_figure(genotype)`: the matplotlib drawing as a Figure, e.g. for TensorBoard's `add_figure`.

The module knows no search space; it reads only the genotype's shape. The one space-specific rule is how
many input states a cell has: 1 for "nb201", 2 otherwise (the DARTS convention, as in nas.genotype).
"""

from __future__ import annotations

import math
import shutil
import subprocess
import warnings
from pathlib import Path

from matplotlib.figure import Figure
from matplotlib.patches import FancyArrowPatch

from nas.errors import UserError
from nas.genotype import Cell, Genotype, atomic_write_text

# node colours of the DARTS figures: darkseagreen2, lightblue, palegoldenrod
INPUT_COLOR, NODE_COLOR, OUTPUT_COLOR = "#b4eeb4", "#add8e6", "#eee8aa"
OP_COLORS = {
    "skip_connect": "#555555",
    "max_pool_3x3": "#d62728",
    "avg_pool_3x3": "#ff7f0e",
    "sep_conv_3x3": "#1f77b4",
    "sep_conv_5x5": "#9467bd",
    "sep_conv_7x7": "#8c564b",
    "dil_conv_3x3": "#2ca02c",
    "dil_conv_5x5": "#17becf",
    "nor_conv_1x1": "#2ca02c",
    "nor_conv_3x3": "#1f77b4",
}
RENDERED_FORMATS = ("png", "svg", "pdf")


def _layout(genotype: Genotype) -> tuple[list[str], int]:
    """(labels of the input states, number of the first intermediate node in its label)."""
    if genotype.space == "nb201":
        return ["0"], 1
    return ["c_{k-2}", "c_{k-1}"], 0


def _state_labels(genotype: Genotype, cell: Cell) -> list[str]:
    inputs, first_label = _layout(genotype)
    return inputs + [str(first_label + i) for i in range(len(cell.nodes))]


def _edges(cell: Cell, num_inputs: int) -> list[tuple[int, int, str]]:
    """(source state, target state, op) for every edge that is not `none`."""
    return [(j, num_inputs + i, op) for i, node in enumerate(cell.nodes) for op, j in node if op != "none"]


def _q(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def cell_to_dot(genotype: Genotype) -> str:
    """Graphviz DOT source for every cell of `genotype`, each as a `cluster_<name>` subgraph."""
    lines = [
        "digraph genotype {",
        "  rankdir=LR;",
        '  node [shape=rect, style="rounded,filled", fontname="Helvetica", fontsize=16, penwidth=2];',
        '  edge [fontname="Helvetica", fontsize=14, penwidth=1.5];',
    ]
    for name, cell in genotype.cells.items():
        labels = _state_labels(genotype, cell)
        num_inputs = len(_layout(genotype)[0])
        node_id = [_q(f"{name}/{label}") for label in labels]
        out_id = _q(f"{name}/c_{{k}}")
        lines += [f"  subgraph {_q('cluster_' + name)} {{", f"    label={_q(name + ' cell')};"]
        for k, (nid, label) in enumerate(zip(node_id, labels)):
            color = INPUT_COLOR if k < num_inputs else NODE_COLOR
            lines.append(f"    {nid} [label={_q(label)}, fillcolor={_q(color)}];")
        lines.append(f'    {out_id} [label="c_{{k}}", fillcolor={_q(OUTPUT_COLOR)}];')
        for j, t, op in _edges(cell, num_inputs):
            color = _q(OP_COLORS.get(op, "#000000"))
            lines.append(
                f"    {node_id[j]} -> {node_id[t]} [label={_q(op)}, color={color}, fontcolor={color}];"
            )
        for c in cell.concat:
            lines.append(f'    {node_id[c]} -> {out_id} [color="#999999"];')
        lines.append("  }")
    lines.append("}")
    return "\n".join(lines) + "\n"


def _positions(num_inputs: int, num_nodes: int) -> list[tuple[float, float]]:
    """Layered layout: inputs in column 0, node i in column i + 1 (zig-zag so that long edges pass between
    nodes, not through them), the output in the last column."""
    inputs = [(0.0, 1.0 - 2.0 * k / max(num_inputs - 1, 1)) for k in range(num_inputs)]
    if num_inputs == 1:
        inputs = [(0.0, 0.0)]
    nodes = [(1.0 + i, 0.55 if i % 2 == 0 else -0.55) for i in range(num_nodes)]
    return inputs + nodes + [(num_nodes + 1.0, 0.0)]


def _draw_edge(ax, p, q, color: str, label: str | None, rad: float, shrink: float) -> None:
    arrow = FancyArrowPatch(
        p, q, connectionstyle=f"arc3,rad={rad}", arrowstyle="-|>", mutation_scale=14,
        shrinkA=shrink, shrinkB=shrink, color=color, lw=1.6, zorder=1,
    )  # fmt: skip
    ax.add_patch(arrow)
    if label:
        # midpoint of matplotlib's arc3 Bezier: chord midpoint + rad / 2 * (dy, -dx)
        (x1, y1), (x2, y2) = p, q
        mx, my = (x1 + x2) / 2 + rad / 2 * (y2 - y1), (y1 + y2) / 2 - rad / 2 * (x2 - x1)
        ax.text(
            mx, my, label, ha="center", va="center", fontsize=8.5, color=color, zorder=3,
            bbox={"boxstyle": "round,pad=0.15", "fc": "white", "ec": "none", "alpha": 0.9},
        )  # fmt: skip


def _draw_cell(ax, genotype: Genotype, name: str, cell: Cell) -> None:
    labels = _state_labels(genotype, cell)
    num_inputs = len(_layout(genotype)[0])
    pos = _positions(num_inputs, len(cell.nodes))
    size = 1500.0  # marker area in pt^2
    shrink = math.sqrt(size) / 2 + 2  # stop arrows at the node's rim (points)
    for j, t, op in _edges(cell, num_inputs):
        span = pos[t][0] - pos[j][0]
        rad = 0.0 if span <= 1 else (0.18 if pos[t][1] >= pos[j][1] else -0.18) * min(span - 1, 2)
        _draw_edge(ax, pos[j], pos[t], OP_COLORS.get(op, "#000000"), op, rad, shrink)
    for c in cell.concat:
        _draw_edge(ax, pos[c], pos[-1], "#999999", None, 0.0, shrink)
    colors = [INPUT_COLOR] * num_inputs + [NODE_COLOR] * len(cell.nodes) + [OUTPUT_COLOR]
    texts = [f"${label}$" if "_" in label else label for label in labels] + ["$c_{k}$"]
    for (x, y), color, text in zip(pos, colors, texts):
        ax.scatter([x], [y], s=size, c=color, edgecolors="black", linewidths=1.5, zorder=2)
        ax.text(x, y, text, ha="center", va="center", fontsize=12, zorder=4)
    ax.set_title(f"{name} cell", fontsize=13)
    ax.set_xlim(-0.6, pos[-1][0] + 0.6)
    ax.set_ylim(-1.45, 1.45)
    ax.set_aspect("equal")
    ax.axis("off")


def cell_figure(genotype: Genotype) -> Figure:
    """A matplotlib Figure with one panel per cell (no pyplot: safe off the main thread and headless)."""
    cells = list(genotype.cells.items())
    width = max(2.0 + 1.6 * max(len(c.nodes) + 2 for _, c in cells), 6.0)
    fig = Figure(figsize=(width, 3.0 * len(cells)), layout="constrained")
    for ax, (name, cell) in zip(fig.subplots(len(cells), 1, squeeze=False)[:, 0], cells):
        _draw_cell(ax, genotype, name, cell)
    return fig


def _render_with_graphviz(dot: str, path: Path, fmt: str) -> bool:
    result = subprocess.run(
        ["dot", f"-T{fmt}", "-o", str(path)], input=dot, text=True, capture_output=True, check=False
    )
    if result.returncode != 0:
        warnings.warn(f"graphviz failed ({result.stderr.strip()}); drawing with matplotlib", stacklevel=3)
    return result.returncode == 0


def plot_genotype(genotype: Genotype, path: str | Path) -> Path:
    """Write the cell picture to `path`; the suffix picks the format (.dot, .png, .svg, .pdf).

    Raises:
        UserError: an unsupported suffix.
    """
    path = Path(path)
    fmt = path.suffix.lower().lstrip(".")
    if fmt == "dot":
        atomic_write_text(path, cell_to_dot(genotype))
        return path
    if fmt not in RENDERED_FORMATS:
        raise UserError(f"cannot draw a genotype to {path}: use a .dot, .png, .svg or .pdf file")
    path.parent.mkdir(parents=True, exist_ok=True)
    if shutil.which("dot") and _render_with_graphviz(cell_to_dot(genotype), path, fmt):
        return path
    cell_figure(genotype).savefig(path, format=fmt, dpi=150)
    return path
