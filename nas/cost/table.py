"""Cost tables: what every candidate op costs at every edge of the network the user will retrain.

A table is counted from the ops *as built*: for each op, the space builds its retrain network
(`build_network`, the same channels, strides, reduction cells and inputs as `nas train`) with that op on
every edge (for DARTS, whose cells keep 2 inputs per node, a few such networks together keep every edge),
runs it once, and records each edge op's input and output shape (`edge_modules`). Each distinct
(op, input, output) is a *site*, counted once: FLOPs by `torch.utils.flop_counter` at batch 1 (a
multiply-add is 2 FLOPs, as `nas genotype info` and `metrics.json` count), parameters by `numel`, and,
with a `nas.cost.latency.LatencyTimer`, measured latency (`nas cost profile`).

table[metric][cell type][row][op] is the sum over every cell of that type of the op's cost on that row, so
the cost of a genotype is `fixed + sum over kept (row, op) of table[row][op]`, where `fixed` (stem,
preprocessing, reductions, classifier) is the whole network's count minus its edge ops (checked to be the
same in every network built). For FLOPs and parameters this equals the count of the whole network exactly
(tested); latency is not additive (caches, memory traffic, the adds at each node), so its fixed part is an
estimate: the median over the built networks of the measured network minus its measured ops.
"""

from __future__ import annotations

import contextlib
import json
import math
import random
import statistics
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
from torch.utils.flop_counter import FlopCounterMode

from nas.arch.genotype import Genotype
from nas.arch.rule import CellRule, one_hot
from nas.arch.space import space_options
from nas.config import ModelConfig, SpaceConfig
from nas.core.atomic import atomic_write_text, read_json_object
from nas.core.errors import UserError

FORMAT = "nas.cost_table"
VERSION = 1
METRICS = ("flops", "params", "latency")
UNITS = {"flops": "FLOPs", "params": "parameters", "latency": "ms"}


@dataclass(frozen=True)
class NetworkSpec:
    """The retrain network a table is for (what `nas genotype info` takes)."""

    space: str
    network: str = "cifar"
    init_channels: int = 36
    layers: int = 20
    nodes: int = 4  # the searched space's `space.nodes`, where it has that key (DARTS: nodes per cell)
    classes: int = 10
    in_channels: int = 3
    image_size: int = 32

    def space_config(self, space: Any) -> SpaceConfig:
        """The space's config whose cells the table is for: its defaults, with the keys of its own that a
        spec records (`nodes`, where the space has it)."""
        return space.Options(name=space.name, **{k: getattr(self, k) for k in _recorded_keys(space)})

    def model_config(self) -> ModelConfig:
        return ModelConfig(init_channels=self.init_channels, layers=self.layers, auxiliary=False,
                           network=self.network)  # fmt: skip

    def input_shape(self) -> tuple[int, int, int]:
        return (self.in_channels, self.image_size, self.image_size)


def _recorded_keys(space: Any) -> list[str]:
    """The space's own `space.*` keys (beyond SpaceConfig's) that a NetworkSpec records."""
    common = {f.name for f in fields(SpaceConfig)}
    spec = {f.name for f in fields(NetworkSpec)}
    return [f.name for f in fields(space.Options) if f.name not in common and f.name in spec]


@dataclass
class CostTable:
    """Per-edge costs of one space and retrain network; see the module doc."""

    net: NetworkSpec
    primitives: tuple[str, ...]
    fixed: dict[str, float]  # metric -> the cost of what does not depend on the cell
    cells: dict[str, dict[str, list[list[float]]]]  # metric -> cell type -> (E, K)
    sites: list[dict[str, Any]] = field(default_factory=list)  # distinct (op, input, output) and their costs
    latency: dict[str, Any] | None = None  # how latency was measured (device, torch, dtype, batch, ...)

    def metric(self, metric: str) -> tuple[float, dict[str, torch.Tensor]]:
        """(fixed, {cell type: (E, K) float64}) of one metric; UserError if the table lacks it."""
        if metric not in self.cells:
            hint = " (measure it with `nas cost profile`)" if metric == "latency" else ""
            raise UserError(f"the cost table has no {metric}{hint}")
        cells = {ct: torch.tensor(rows, dtype=torch.float64) for ct, rows in self.cells[metric].items()}
        return self.fixed[metric], cells

    def cost_of(self, genotype: Genotype, space: Any, metric: str) -> float:
        """The whole network's cost: fixed + the table's entries at the genotype's kept (row, op)."""
        fixed, cells = self.metric(metric)
        weights = space.one_hot(genotype)
        return fixed + sum(float((weights[ct].double() * cells[ct]).sum()) for ct in cells)

    def check(self, space: Any, shapes: dict[str, tuple[int, int]]) -> None:
        """Refuse a table for another space or another supernet shape (cell type -> (E, K))."""
        mine = {ct: (len(rows), len(rows[0])) for ct, rows in next(iter(self.cells.values())).items()}
        if self.net.space != space.name or tuple(self.primitives) != tuple(space.primitives):
            raise UserError(f"the cost table is for space {self.net.space!r}, the search is {space.name!r}")
        if mine != {ct: tuple(s) for ct, s in shapes.items()}:
            raise UserError(f"the cost table's cells {mine} do not match the supernet's alphas {shapes}")

    def to_dict(self) -> dict[str, Any]:
        return {"format": FORMAT, "version": VERSION, "network": asdict(self.net),
                "primitives": list(self.primitives), "fixed": self.fixed, "cells": self.cells,
                "latency": self.latency, "sites": self.sites}  # fmt: skip

    def save(self, path: str | Path) -> None:
        atomic_write_text(path, json.dumps(self.to_dict(), indent=1) + "\n")


def load_table(path: str | Path) -> CostTable:
    """Read a table written by `nas cost table|profile`; UserError on a missing or foreign file."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"cost table not found: {path}")
    data = read_json_object(path, "cost table")
    foreign = UserError(f"{path} is not a cost table (made by `nas cost table` or `nas cost profile`)")
    if data.get("format") != FORMAT or data.get("version") != VERSION:
        raise foreign
    try:
        table = CostTable(NetworkSpec(**data["network"]), tuple(data["primitives"]), dict(data["fixed"]),
                          dict(data["cells"]), data.get("sites", []), data.get("latency"))  # fmt: skip
    except (KeyError, TypeError, ValueError):
        raise foreign from None
    if not _well_formed(table):
        raise foreign
    return table


def _number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def _well_formed(table: CostTable) -> bool:
    """Every metric a fixed number and per cell type a non-empty (E, K) grid of numbers, K the primitives."""
    k = len(table.primitives)
    if not table.cells or set(table.cells) - set(METRICS) or set(table.cells) - set(table.fixed):
        return False
    for metric, per_cell in table.cells.items():
        if not _number(table.fixed[metric]) or not isinstance(per_cell, dict) or not per_cell:
            return False
        for rows in per_cell.values():
            if not isinstance(rows, list) or not rows:
                return False
            if not all(isinstance(r, list) and len(r) == k and all(map(_number, r)) for r in rows):
                return False
    return all(isinstance(p, str) for p in table.primitives)


# --- counting -----------------------------------------------------------------------------------------


def rules_of(space: Any, cfg: SpaceConfig) -> tuple[dict[str, CellRule], dict[str, tuple[int, int]]]:
    """The derive rule and alpha shape (E, K) of each cell type of the space configured by `cfg`, read
    from a random genotype's one-hot form (so the table needs no supernet)."""
    genotype = space.sample_random(random.Random(0), cfg)
    shapes = {ct: tuple(w.shape) for ct, w in space.one_hot(genotype).items()}
    return {ct: space.cell_rule(ct, e) for ct, (e, _) in shapes.items()}, shapes


def off_column(rule: CellRule, ops: int) -> int | None:
    """The column one-hot rows of unkept edges carry: the first op derive never keeps (DARTS: `none`)."""
    return next((k for k in range(ops) if k not in rule.allowed), None)


def cover_genotypes(space: Any, cfg: SpaceConfig, op: int) -> list[tuple[Genotype, dict[str, str]]]:
    """Genotypes with `op` on every kept edge that together keep every row, each with the op its cells
    carry per cell type (a cell type whose derive never keeps `op` carries its first allowed op)."""
    rules, shapes = rules_of(space, cfg)
    out = []
    for r in range(max(rule.rounds() for rule in rules.values())):
        weights, names = {}, {}
        for ct, rule in rules.items():
            k = op if op in rule.allowed else rule.allowed[0]
            weights[ct] = one_hot(
                [(e, k) for e in rule.cover(r)], *shapes[ct], off_column(rule, shapes[ct][1])
            )
            names[ct] = space.primitives[k]
        out.append((space.from_one_hot(weights), names))
    return out


def _device(module: nn.Module) -> torch.device:
    return next(module.parameters(), torch.empty(0)).device


def _flops(module: nn.Module, shape: tuple[int, ...]) -> int:
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        module(torch.zeros((1, *shape), device=_device(module)))
    return int(counter.get_total_flops())


def _edge_shapes(
    space: Any, network: nn.Module, input_shape: tuple[int, ...], flops: bool
) -> tuple[list, int]:
    """[(cell type, row, module, input shape, output shape)] of every edge op, and the network's FLOPs
    (-1 unless `flops`: the counter's dispatch costs more than the pass), from one batch-1 forward pass."""
    edges = space.edge_modules(network)
    shapes: dict[int, tuple] = {}
    hooks = [m.register_forward_hook(lambda mod, a, out: shapes.__setitem__(id(mod), (a[0].shape, out.shape)))
             for _, _, m in edges]  # fmt: skip
    counter = FlopCounterMode(display=False)
    try:
        with counter if flops else contextlib.nullcontext(), torch.no_grad():
            network(torch.zeros((1, *input_shape), device=_device(network)))
    except (RuntimeError, ValueError, IndexError) as exc:  # e.g. reductions that shrink the image to nothing
        shape = "x".join(map(str, input_shape))
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        raise UserError(f"the network cannot process {shape} images ({reason})") from None
    for h in hooks:
        h.remove()
    found = [(ct, row, m, tuple(shapes[id(m)][0][1:]), tuple(shapes[id(m)][1][1:])) for ct, row, m in edges]
    return found, int(counter.get_total_flops()) if flops else -1


def count_table(space: Any, net: NetworkSpec, timer: Any | None = None) -> CostTable:
    """The FLOPs and parameter table of `net` (and latency with a `LatencyTimer`); see the module doc.

    FLOPs and parameters are counted on the meta device (shapes only): no network is ever allocated, so
    the table of a network far too large for the machine costs Python time only. Latency needs the real
    ops: each network is then built only after its meta twin was judged to fit the CPU
    (`nas.run.memory.build_checked`)."""
    space_cfg = net.space_config(space)
    rules, shapes = rules_of(space, space_cfg)
    metrics = ["flops", "params"] + ["latency"] * (timer is not None)
    cells = {m: {ct: torch.zeros(s, dtype=torch.float64) for ct, s in shapes.items()} for m in metrics}
    sites: dict[tuple, dict[str, Any]] = {}
    fixed: dict[str, list[float]] = {m: [] for m in metrics}
    for k in sorted(set().union(*(rule.allowed for rule in rules.values()))):
        done: set[tuple[str, int]] = set()  # (cell type, row) entries of column k filled so far
        for round_, (genotype, names) in enumerate(cover_genotypes(space, space_cfg, k)):
            network = _build(space, genotype, net, timed=timer is not None, first=round_ == 0).eval()
            # the whole network's FLOPs in the first round of each op: enough to check the additive model
            edges, total_flops = _edge_shapes(space, network, net.input_shape(), flops=round_ == 0)
            spent = dict.fromkeys(metrics, 0.0)
            fresh = {(ct, row) for ct, row, *_ in edges if k in rules[ct].allowed} - done
            for ct, row, module, shape_in, shape_out in edges:
                site = _site(sites, (net.space, names[ct], shape_in, shape_out), module, timer)
                site["count"] += (ct, row) in fresh
                for m in metrics:
                    spent[m] += site[m]
                    if (ct, row) in fresh:
                        cells[m][ct][row, k] += site[m]
            done |= fresh
            if round_ == 0:
                fixed["flops"].append(total_flops - spent["flops"])
            fixed["params"].append(sum(p.numel() for p in network.parameters()) - spent["params"])
            if timer is not None and round_ == 0:
                fixed["latency"].append(timer.network(network, net.input_shape()) - spent["latency"])
    for m in ("flops", "params"):
        if len(set(fixed[m])) != 1:  # the additive model of this module would be wrong for this space
            raise RuntimeError(f"{space.name}: the {m} outside the edge ops differ between cells: {fixed[m]}")
    fixed_cost = {m: fixed[m][0] for m in ("flops", "params")}
    if timer is not None:
        fixed_cost["latency"] = max(0.0, statistics.median(fixed["latency"]))
    table = {m: {ct: t.tolist() for ct, t in c.items()} for m, c in cells.items()}
    return CostTable(net, tuple(space.primitives), fixed_cost, table, list(sites.values()),
                     timer.meta() if timer is not None else None)  # fmt: skip


def _build(space: Any, genotype: Genotype, net: NetworkSpec, timed: bool, first: bool) -> nn.Module:
    """The retrain network of `genotype`: on the meta device unless `timed` (latency); then built for
    real, after a check on its meta twin where `first` (the first network of each op: the later ones have
    the same sizes)."""
    from nas.run.memory import build_checked, check_inference

    def build() -> nn.Module:
        return space.build_network(genotype, net.model_config(), net.classes, net.in_channels, net.image_size)

    if not timed:
        with torch.device("meta"):
            return build()
    if not first:
        return build()
    knobs = "--init-channels, --layers or --image-size"
    return build_checked(build, lambda m: check_inference(m, net.input_shape(), knobs), torch.device("cpu"),
                         4, "the network", knobs)  # fmt: skip


def _site(sites: dict, key: tuple, module: nn.Module, timer) -> dict:
    """The costs of one (space, op, input, output), counted the first time it is seen; `count`: how many
    table entries it adds to (cells x rows)."""
    _, op, shape_in, shape_out = key
    if key not in sites:
        stride = max(1, round(shape_in[-1] / shape_out[-1]))
        site = {"op": op, "input": list(shape_in), "output": list(shape_out), "stride": stride, "count": 0,
                "flops": _flops(module, shape_in), "params": sum(p.numel() for p in module.parameters())}  # fmt: skip
        if timer is not None:  # `none` costs nothing by definition: a deployed cell never computes it
            site["latency"] = (
                0.0 if getattr(module, "is_zero", False) else timer.module(module, shape_in, key)
            )
        sites[key] = site
    return sites[key]


def standard_spec(
    space: Any, classes: int, in_channels: int, image_size: int, cfg: SpaceConfig | None = None
) -> NetworkSpec:
    """The space's standard CIFAR retrain network (`space.networks`: DARTS 36 x 20, NB201 16 x 5) for a
    dataset, with the cells of the search configured by `cfg` (its `space` section; None: the defaults)."""
    sizes = space.networks["cifar"]
    own = space_options(space, cfg) if cfg is not None else space.Options(name=space.name)
    return NetworkSpec(space.name, "cifar", sizes["init_channels"], sizes["layers"], classes=classes,
                       in_channels=in_channels, image_size=image_size,
                       **{k: getattr(own, k) for k in _recorded_keys(space)})  # fmt: skip


def table_for(space: Any, path: str | None, spec: NetworkSpec) -> CostTable:
    """The table at `path`, or (None) FLOPs and parameters counted now for `spec`."""
    return load_table(path) if path else count_table(space, spec)
