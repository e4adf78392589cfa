"""The package layout, checked from the source: `nas/` is packages by concern, and imports run one way.

Every `import` in `nas/` and `search_spaces/` (at module level, inside functions and under `if TYPE_CHECKING:`
alike, since a lazy or annotation-only import that closes a circle is still a circle) is an edge of a graph. Each module belongs to one package of the README's
layout drawing, and a module imports only from its own package or from a package on a lower line of the
drawing, so between packages imports run one way; within a package the graph has no cycle either. At
most a few modules sit loose at the top of `nas/`. The engine reaches the concrete spaces only at its
registration points; the tools (`nas ablate`, `nas bench`, `nas gradcheck`, the CLI) sit on top and
nothing below imports them; no engine module names a concrete space.
"""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TOOLS = ("nas.__main__", "nas.cli", "nas.ablate", "nas.bench", "nas.gradcheck")
# The drawing in the README's Layout section, bottom up: the packages of each line (`nas` is the top-level
# package itself, `__main__` the loose module `python -m nas` runs). A module imports from its own package
# or from a package on a lower line, never from a package on its own line or above.
TIERS = (
    ("core", "nas core"),
    ("sampling", "sampling"),
    ("arch", "arch"),
    ("config", "config"),
    ("run", "run"),
    ("data", "data"),
    ("cost", "cost"),
    ("runs", "search train"),
    ("spaces", "search_spaces"),
    ("tools", "ablate bench gradcheck"),
    ("cli", "cli"),
    ("entry", "__main__"),
)
MAX_LOOSE = 10  # modules directly in nas/ (not in a package), __init__ included


def _modules() -> dict[str, Path]:
    out = {}
    for path in sorted([*(ROOT / "nas").rglob("*.py"), *(ROOT / "search_spaces").rglob("*.py")]):
        parts = path.relative_to(ROOT).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = path
    return out


MODULES = _modules()


def _owner(target: str) -> str | None:
    """The module of `nas` that an imported name lives in (`nas.arch.genotype.Cell` -> `nas.arch.genotype`)."""
    while target and target not in MODULES:
        target = target.rpartition(".")[0]
    return target or None


def _imports(name: str, source: str | None = None) -> set[str]:
    """The modules of nas and search_spaces that module `name` imports (its file, or `source`), wherever the
    import statement stands: module level, a function, `if TYPE_CHECKING:`."""
    path = MODULES[name]
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    tree = ast.parse(source if source is not None else path.read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                pkg = package
                for _ in range(node.level - 1):
                    pkg = pkg.rpartition(".")[0]
                base = f"{pkg}.{base}" if base else pkg
            # `from pkg import sub` imports the submodule; otherwise the names come from `base`
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in MODULES else base for a in node.names]
        else:
            continue
        for target in targets:
            owner = _owner(target)
            if owner and owner != name and not name.startswith(owner + "."):  # a parent package is no edge
                found.add(owner)
    return found


GRAPH = {name: _imports(name) for name in MODULES}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []
    for root in graph:
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root] & graph.keys())))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            v, edges = work[-1]
            w = next(edges, None)
            if w is not None:
                if w not in index:
                    index[w] = low[w] = len(index)
                    stack.append(w)
                    on_stack.add(w)
                    work.append((w, iter(sorted(graph[w] & graph.keys()))))
                elif w in on_stack:
                    low[v] = min(low[v], index[w])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[v])
            if low[v] == index[v]:
                component = []
                while True:
                    w = stack.pop()
                    on_stack.discard(w)
                    component.append(w)
                    if w == v:
                        break
                if len(component) > 1:
                    out.append(sorted(component))
    return out


def _package(name: str) -> str:
    """The package of a module as the drawing names it: `nas.arch.space` -> `arch`, `nas` -> `nas`, every
    module of the plug-in spaces -> `search_spaces`."""
    parts = name.split(".")
    if parts[0] == "search_spaces":
        return "search_spaces"
    return parts[1] if len(parts) > 1 else parts[0]


def _tier(name: str) -> int:
    """The line of the drawing that holds the module's package."""
    found = [i for i, (_, packages) in enumerate(TIERS) if _package(name) in packages.split()]
    assert len(found) == 1, (
        f"{name}: its package {_package(name)} is on {len(found)} lines of the layout drawing"
    )
    return found[0]


def _is_tool(name: str) -> bool:
    return any(name == t or name.startswith(t + ".") for t in TOOLS)


def test_the_graph_sees_imports():
    """The checks below are only as good as the graph: it must hold edges we know exist."""
    assert "nas.arch.genotype" in GRAPH["nas.arch.space"]
    assert "nas.search.runner" in GRAPH["nas.cli.run"]
    assert "nas.cli.genotype" in GRAPH["nas.cli"]  # `from nas.cli.genotype import ...` inside the package
    assert "nas.run.distributed" in GRAPH["nas.cli.run"]  # a lazy `from nas.run import distributed`
    assert "nas.arch.space" in GRAPH["search_spaces.zoo"]
    assert "search_spaces.darts.options" in GRAPH["search_spaces.darts.supernet"]
    hidden = "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from nas.config import TauConfig\n"
    assert "nas.config" in _imports("nas.sampling.schedules", hidden)  # annotation-only imports count
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert (
        _tier("nas.__main__")
        > _tier("nas.cli")
        > _tier("nas.search.runner")
        > _tier("nas.config")
        > _tier("nas.arch.space")
        > _tier("nas.core.errors")
    )
    assert _tier("nas.arch.rule") < _tier("nas.cost.table") < _tier("nas.cli.cost")
    assert _tier("nas.search.runner") == _tier("nas.train.trainer")


def test_no_import_cycles():
    assert _cycles(GRAPH) == []


def test_few_loose_modules():
    """`nas/` is packages by concern: only a few modules sit at its top."""
    loose = sorted(p.name for p in (ROOT / "nas").glob("*.py"))
    assert "__init__.py" in loose and len(loose) <= MAX_LOOSE, loose


def test_every_package_is_drawn_once():
    drawn = [p for _, packages in TIERS for p in packages.split()]
    assert len(drawn) == len(set(drawn))
    assert {_package(name) for name in MODULES} == set(drawn)


@pytest.mark.parametrize("name", sorted(MODULES))
def test_imports_run_down_the_layout_drawing(name):
    """Between packages, imports run one way: down the drawing, never sideways to a package on the same
    line (search and train know nothing of each other) and never up."""
    wrong = [
        f"{d} ({TIERS[_tier(d)][0]})"
        for d in sorted(GRAPH[name])
        if _package(d) != _package(name) and _tier(d) >= _tier(name)
    ]
    assert wrong == [], f"{name} ({TIERS[_tier(name)][0]}) imports sideways or upwards"


def test_the_readme_draws_these_lines():
    """The README's drawing is this one: a line per tier, top down, naming its packages (`pkg/`)."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text[text.index("## Layout") :]
    block = section[section.index("Imports run down this drawing") :].split("```")[1]
    lines = [line for line in block.splitlines() if line.strip() and not line.startswith(" ")]
    assert [line.split()[0] for line in lines] == [name for name, _ in reversed(TIERS)]
    for line, (name, packages) in zip(lines, reversed(TIERS)):
        drawn = set(re.findall(r"(?<![\w/])(\w+)/", line)) | {"__main__"} & set(line.split())
        expected = set(packages.split()) - {"nas"}
        assert drawn == expected, f"README layout line {name!r} draws {sorted(drawn)}, not {sorted(expected)}"


def test_nothing_in_nas_imports_the_spaces():
    """`nas/` finds the spaces only through its registries (SPACES, FORMATS, ZOO), which import
    `search_spaces` by name on their first lookup: no module of nas imports one."""
    assert {n for n, deps in GRAPH.items() if n.startswith("nas") and _package(n) != "search_spaces"
            and any(d.startswith("search_spaces") for d in deps)} == set()  # fmt: skip


@pytest.mark.parametrize("name", sorted(n for n in MODULES if not _is_tool(n)))
def test_engine_never_imports_the_tools(name):
    assert sorted(d for d in GRAPH[name] if _is_tool(d)) == []


def test_engine_names_no_concrete_space():
    """A string equal to a registered space's name, in `nas/`, only as the config default (DEFAULT_SPACE)."""
    from nas.arch.space import SPACES

    names = set(SPACES.names())
    assert len(names) >= 2
    hits = []
    for name, path in MODULES.items():
        if not name.startswith("nas"):
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Constant) and node.value in names:
                hits.append(f"{name}:{node.lineno} {node.value!r}")
    assert [h for h in hits if not h.startswith("nas.config.schema:")] == []


def test_a_library_caller_finds_the_spaces_without_importing_them():
    """The engine's plug-in registries import `search_spaces` on their first lookup."""
    code = (
        "import sys\n"
        "from nas.arch.genotype import parse_genotype_text\n"
        "from nas.arch.space import SPACES\n"
        "assert 'search_spaces' not in sys.modules\n"
        "g = parse_genotype_text('|nor_conv_3x3~0|+|skip_connect~0|none~1|+|avg_pool_3x3~0|none~1|none~2|')\n"
        "print(g.space, SPACES.get(g.space).input_states, ' '.join(SPACES.names()))\n"
        "from nas.arch.space import resolve_genotype\n"
        "print(resolve_genotype('zoo:DARTS_V2').space)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["nb201", "1", "darts", "nb201", "darts"]
