"""Cell pictures: DOT text, and files drawn with matplotlib (always) or Graphviz (when installed)."""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest
from matplotlib.figure import Figure

import nas.arch.plot as plot
from nas.core.errors import UserError
from search_spaces import zoo
from search_spaces.nb201.formats import from_nb201_string

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
HAS_DOT = shutil.which("dot") is not None


@pytest.fixture
def no_graphviz(monkeypatch):
    monkeypatch.setattr(shutil, "which", lambda name, *args, **kwargs: None)


@pytest.mark.parametrize("name", zoo.names())
def test_dot_has_every_node_and_op(name):
    genotype = zoo.get(name)
    dot = plot.cell_to_dot(genotype)
    assert dot.startswith("digraph") and dot.count("{") == dot.count("}")
    edge_lines = [line for line in dot.splitlines() if "->" in line]
    for cell_name, cell in genotype.cells.items():
        assert f'subgraph "cluster_{cell_name}"' in dot
        inputs = ["0"] if genotype.space == "nb201" else ["c_{k-2}", "c_{k-1}"]
        first = 1 if genotype.space == "nb201" else 0
        for label in inputs + [str(first + i) for i in range(len(cell.nodes))] + ["c_{k}"]:
            assert f'"{cell_name}/{label}"' in dot
        ops = [op for op, _ in cell.edges() if op != "none"]
        labelled = [line for line in edge_lines if line.strip().startswith(f'"{cell_name}/')]
        assert sorted(re.findall(r'label="([^"]+)"', "\n".join(labelled))) == sorted(ops)
        assert len(labelled) == len(ops) + len(cell.concat)  # + the unlabelled edges into c_{k}
    assert 'label="none"' not in dot


def test_dot_leaves_out_none_edges():
    dot = plot.cell_to_dot(from_nb201_string("|none~0|+|none~0|none~1|+|none~0|none~1|none~2|"))
    assert [line for line in dot.splitlines() if "->" in line] == [
        '    "cell/3" -> "cell/c_{k}" [color="#999999"];'
    ]


def test_cell_figure_has_a_panel_per_cell():
    fig = plot.cell_figure(zoo.get("DARTS_V2"))
    assert isinstance(fig, Figure) and len(fig.axes) == 2
    assert len(plot.cell_figure(zoo.get("NB201_RESNET")).axes) == 1


@pytest.mark.parametrize("name", ["DARTS_V2", "NB201_BEST_CIFAR10"])
def test_png_with_matplotlib(tmp_path, no_graphviz, name):
    path = plot.plot_genotype(zoo.get(name), tmp_path / "sub" / f"{name}.png")
    assert path.read_bytes()[:8] == PNG_MAGIC and path.stat().st_size > 10_000


def test_svg_and_pdf_with_matplotlib(tmp_path, no_graphviz):
    genotype = from_nb201_string("|none~0|+|skip_connect~0|none~1|+|none~0|none~1|avg_pool_3x3~2|")
    svg = plot.plot_genotype(genotype, tmp_path / "cell.svg").read_text()
    assert "<svg" in svg and "</svg>" in svg
    assert plot.plot_genotype(genotype, tmp_path / "cell.pdf").read_bytes()[:5] == b"%PDF-"


def test_dot_file_and_bad_suffix(tmp_path):
    genotype = zoo.get("GDAS_V1")
    assert plot.plot_genotype(genotype, tmp_path / "g.dot").read_text() == plot.cell_to_dot(genotype)
    with pytest.raises(UserError, match=r"\.png"):
        plot.plot_genotype(genotype, tmp_path / "g.jpg")


def test_graphviz_failure_falls_back_to_matplotlib(tmp_path, monkeypatch):
    calls = []

    def failing_dot(cmd, **kwargs):
        calls.append(cmd)
        return subprocess.CompletedProcess(cmd, 1, "", "dot: broken")

    monkeypatch.setattr(shutil, "which", lambda name, *args, **kwargs: "/usr/bin/dot")
    monkeypatch.setattr(subprocess, "run", failing_dot)
    with pytest.warns(UserWarning, match="graphviz failed"):
        path = plot.plot_genotype(zoo.get("NB201_RESNET"), tmp_path / "r.png")
    assert calls and calls[0][:2] == ["dot", "-Tpng"]
    assert path.read_bytes()[:8] == PNG_MAGIC


@pytest.mark.skipif(not HAS_DOT, reason="Graphviz `dot` is not installed")
@pytest.mark.parametrize("suffix", ["png", "svg"])
def test_graphviz_renders(tmp_path, suffix):
    path = plot.plot_genotype(zoo.get("DARTS_V2"), tmp_path / f"g.{suffix}")
    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC if suffix == "png" else b"<svg" in data
