"""Cell pictures in the style of the DARTS paper (Liu et al., 2019, Fig. 4-5; `cnn/visualize.py`).

- `cell_to_dot(genotype)`: Graphviz DOT text, one cluster per cell: input states on the left
  (c_{k-2}, c_{k-1} for two-input cells, node 0 for NAS-Bench-201), intermediate nodes, edges labelled
  with their op (`none` edges left out), and the output node c_{k} fed by the concatenated states.
- `plot_genotype(genotype, path)`: `.dot` always; `.png` / `.svg` / `.pdf` rendered by Graphviz's `dot`
  when it is installed, otherwise drawn with matplotlib (Agg, no display needed).
- `cell_figure(genotype)`: the matplotlib drawing as a Figure, e.g. for TensorBoard's `add_figure`.

The module knows no search space; it reads the genotype's shape and one fact of its space, how many input
states a cell has (`space.input_states`): a single input is drawn as state 0 (NAS-Bench-201's figures),
several as c_{k-2}, c_{k-1} with the intermediate nodes numbered from 0 (DARTS').
"""

from __future__ import annotations

import math
import shutil
import subprocess
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from matplotlib.patches import Circle, FancyArrowPatch

from nas.arch.genotype import Cell, Genotype
from nas.arch.space import SPACES
from nas.core.atomic import atomic_write_text
from nas.core.errors import UserError

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
    n = SPACES.get(genotype.space).input_states
    if n == 1:
        return ["0"], 1
    return [f"c_{{k-{n - i}}}" for i in range(n)], 0


def _state_labels(genotype: Genotype, cell: Cell) -> list[str]:
    inputs, first_label = _layout(genotype)
    return inputs + [str(first_label + i) for i in range(len(cell.nodes))]


def _edges(cell: Cell, num_inputs: int) -> list[tuple[int, int, str]]:
    """(source state, target state, op) for every edge that is not `none`."""
    return [(j, num_inputs + i, op) for i, node in enumerate(cell.nodes) for op, j in node if op != "none"]


def _title(name: str) -> str:
    return name if name.endswith("cell") else f"{name} cell"


def _q(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def cell_to_dot(genotype: Genotype) -> str:
    """Graphviz DOT source for every cell of `genotype`, each as a `cluster_<name>` subgraph."""
    lines = [
        "digraph genotype {",
        '  graph [rankdir=LR, fontname="Helvetica", fontsize=16];',
        '  node [shape=rect, style="rounded,filled", fontname="Helvetica", fontsize=16, penwidth=2];',
        '  edge [fontname="Helvetica", fontsize=14, penwidth=1.5];',
    ]
    for name, cell in genotype.cells.items():
        labels = _state_labels(genotype, cell)
        num_inputs = len(_layout(genotype)[0])
        node_id = [_q(f"{name}/{label}") for label in labels]
        out_id = _q(f"{name}/c_{{k}}")
        lines += [f"  subgraph {_q('cluster_' + name)} {{", f"    label={_q(_title(name))};"]
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


# --- matplotlib drawing: a small layered layout (inches, drawn at equal aspect) ---------------------

XSEP, YSEP, RADIUS = 2.3, 1.2, 0.3  # least rank spacing, spacing within a rank, node radius
LABEL_PT = 9.0  # edge-label font size
MARGIN, TITLE = 0.15, 0.45  # around a panel, and above it for the title
RADS = (0.0, 0.18, -0.18, 0.32, -0.32, 0.5, -0.5)  # candidate edge curvatures (matplotlib arc3)
LABEL_TS = (0.5, 0.4, 0.6, 0.3, 0.7, 0.22, 0.78, 0.15, 0.85)  # candidate label spots along an edge


def _positions(cell: Cell, num_inputs: int) -> np.ndarray:
    """(S + 1, 2) centres of the states and the output, layered as Graphviz's `dot` does: each node one
    rank right of its deepest non-`none` input (longest path), the members of a rank stacked by the mean
    height of their inputs (barycentre order, fewer crossings; ties in index order), then centred."""
    sources = [[] for _ in range(num_inputs)] + [[j for op, j in node if op != "none"] for node in cell.nodes]
    ranks = [0] * num_inputs
    for srcs in sources[num_inputs:]:
        ranks.append(1 + max((ranks[j] for j in srcs), default=0))
    sources.append(list(cell.concat))
    ranks.append(max(ranks) + 1)  # the output, rightmost
    pos, x = np.zeros((len(ranks), 2)), 0.0
    for r in sorted(set(ranks)):
        members = [k for k, rank in enumerate(ranks) if rank == r]
        members.sort(key=lambda k: -np.mean([pos[j, 1] for j in sources[k]]) if sources[k] else 0.0)
        if r:  # wider gaps before ranks that many edges enter, so their labels have room
            x += max(XSEP, 0.45 * sum(len(sources[k]) for k in members))
        for m, k in enumerate(members):
            pos[k] = (x, ((len(members) - 1) / 2 - m) * YSEP)
    return pos


def _curve(p: np.ndarray, q: np.ndarray, rad: float, n: int = 41) -> np.ndarray:
    """(n, 2) points of matplotlib's `arc3,rad=rad` quadratic Bezier from p to q (equal aspect)."""
    control = (p + q) / 2 + rad * np.array([q[1] - p[1], p[0] - q[0]])
    t = np.linspace(0.0, 1.0, n)[:, None]
    return (1 - t) ** 2 * p + 2 * (1 - t) * t * control + t**2 * q


def _gap(points: np.ndarray, others: np.ndarray) -> float:
    if len(others) == 0:
        return math.inf
    return float(np.min(np.linalg.norm(points[:, None, :] - others[None, :, :], axis=-1)))


def _edge_score(pos: np.ndarray, a: int, b: int, rad: float, routed: list) -> tuple[bool, float, float]:
    """How good curvature `rad` is for the edge a -> b, given the `routed` ((from, to), rad) edges."""
    curve = _curve(pos[a], pos[b], rad)
    clear = _gap(curve[4:-4], np.delete(pos, [a, b], axis=0)) > RADIUS + 0.12
    gap = 0.15  # enough separation; beyond it, the straighter curve wins
    for (c, d), other in routed:
        shared = bool({a, b} & {c, d})  # edges sharing an end meet there: compare their middles only
        mine, cut = (curve[10:-10], 10) if shared else (curve[4:-4], 8)
        gap = min(gap, _gap(mine, _curve(pos[c], pos[d], other)[cut:-cut]))
    return clear, gap, -abs(rad)


def _route(edges: list[tuple[int, int]], pos: np.ndarray) -> list[float]:
    """A curvature per edge, shortest edges first: clear every node it does not touch, then keep away
    from the edges already routed, then bend as little as possible."""
    rads: dict[int, float] = {}
    for e in sorted(range(len(edges)), key=lambda e: pos[edges[e][1], 0] - pos[edges[e][0], 0]):
        routed = [(edges[f], rad) for f, rad in rads.items()]
        scores = [_edge_score(pos, *edges[e], rad, routed) for rad in RADS]
        rads[e] = RADS[scores.index(max(scores))]
    return [rads[e] for e in range(len(edges))]


def _label_box(curve: np.ndarray, text: str, pos: np.ndarray, boxes: list) -> np.ndarray:
    """The label's box (x0, y0, x1, y1): the first point along the edge (in LABEL_TS order) where it covers
    no node and no earlier label (`boxes`), else the point where it overlaps them least."""
    half = np.array([(0.62 * len(text) + 0.8), 1.6]) * LABEL_PT / 72 / 2  # half width, half height
    best, best_cost = None, (True, math.inf)
    for t in LABEL_TS:
        centre = curve[round(t * (len(curve) - 1))]
        box = np.concatenate([centre - half, centre + half])
        near = np.clip(pos, box[:2], box[2:])  # the point of the box closest to each node centre
        hits_node = bool(np.any(np.linalg.norm(near - pos, axis=1) < RADIUS))
        overlap = sum(
            np.prod(np.clip(np.minimum(box[2:], o[2:]) - np.maximum(box[:2], o[:2]), 0, None)) for o in boxes
        )
        if (hits_node, overlap) < best_cost:
            best, best_cost = box, (hits_node, overlap)
        if best_cost == (False, 0):
            break
    boxes.append(best)
    return best


@dataclass
class _CellLayout:
    pos: np.ndarray  # (S + 1, 2) node centres, the output last
    texts: list[str]  # node labels (mathtext)
    colors: list[str]  # node fill colours
    edges: list[tuple[int, int, str, float, np.ndarray | None]]  # (from, to, op or "", rad, label box)
    bounds: np.ndarray  # (x0, y0, x1, y1) of everything drawn, title excluded


def _cell_layout(genotype: Genotype, cell: Cell) -> _CellLayout:
    num_inputs = len(_layout(genotype)[0])
    pos = _positions(cell, num_inputs)
    edges = _edges(cell, num_inputs) + [(c, len(pos) - 1, "") for c in cell.concat]
    rads = _route([(a, b) for a, b, _ in edges], pos)
    boxes: list[np.ndarray] = []
    placed, points = [], [pos - RADIUS, pos + RADIUS]
    for (a, b, op), rad in zip(edges, rads):
        curve = _curve(pos[a], pos[b], rad)
        box = _label_box(curve, op, pos, boxes) if op else None
        placed.append((a, b, op, rad, box))
        points += [curve] + ([box.reshape(2, 2)] if box is not None else [])
    points = np.concatenate(points)
    labels = [f"${label}$" if "_" in label else label for label in _state_labels(genotype, cell)]
    colors = [INPUT_COLOR] * num_inputs + [NODE_COLOR] * len(cell.nodes) + [OUTPUT_COLOR]
    return _CellLayout(
        pos, labels + ["$c_{k}$"], colors, placed, np.concatenate([points.min(0), points.max(0)])
    )


def _draw_cell(ax, name: str, layout: _CellLayout) -> None:
    pos = layout.pos
    shrink = RADIUS * 72 + 2  # points: stop arrows at the node rim (1 unit = 1 inch, see cell_figure)
    for a, b, op, rad, box in layout.edges:
        color = OP_COLORS.get(op, "#000000") if op else "#9a9a9a"
        arrow = FancyArrowPatch(
            tuple(pos[a]), tuple(pos[b]), connectionstyle=f"arc3,rad={rad}", arrowstyle="-|>",
            mutation_scale=13, shrinkA=shrink, shrinkB=shrink, color=color, lw=1.5, zorder=1,
        )  # fmt: skip
        ax.add_patch(arrow)
        if box is not None:
            x, y = (box[:2] + box[2:]) / 2
            style = {"boxstyle": "round,pad=0.12", "fc": "white", "ec": "none", "alpha": 0.85}
            ax.text(x, y, op, ha="center", va="center", fontsize=LABEL_PT, color=color, bbox=style, zorder=3)
    for (x, y), color, text in zip(pos, layout.colors, layout.texts):
        ax.add_patch(Circle((x, y), RADIUS, fc=color, ec="black", lw=1.4, zorder=2))
        ax.text(x, y, text, ha="center", va="center", fontsize=13, zorder=4)
    x0, y0, x1, y1 = layout.bounds + np.array([-MARGIN, -MARGIN, MARGIN, MARGIN + TITLE])
    ax.text((x0 + x1) / 2, y1 - 0.1, _title(name), ha="center", va="top", fontsize=12, fontweight="bold")
    ax.set_xlim(x0, x1)
    ax.set_ylim(y0, y1)
    ax.set_aspect("equal")
    ax.axis("off")


def cell_figure(genotype: Genotype) -> Figure:
    """A matplotlib Figure with one panel per cell, drawn at 1 inch per layout unit (no pyplot: safe
    headless and off the main thread)."""
    layouts = {name: _cell_layout(genotype, cell) for name, cell in genotype.cells.items()}
    sizes = np.array([lay.bounds[2:] - lay.bounds[:2] for lay in layouts.values()])  # (cells, 2) inches
    width = sizes[:, 0].max() + 2 * MARGIN
    heights = sizes[:, 1] + 2 * MARGIN + TITLE
    fig = Figure(figsize=(width, heights.sum()))
    grid = fig.add_gridspec(len(layouts), 1, height_ratios=heights, left=0, right=1, bottom=0, top=1)
    for k, (name, layout) in enumerate(layouts.items()):
        _draw_cell(fig.add_subplot(grid[k, 0]), name, layout)
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
