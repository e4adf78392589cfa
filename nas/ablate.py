"""`nas ablate`: search every point of a grid of settings x seeds, retrain what each finds, compare.

An ablation file (schema `AblationConfig`) names a base search config, overrides for every run, a grid
(config key -> list of values; the runs are the product) and an optional proxy retrain. Each grid point
becomes its own search run directory `out_dir/runs/<id>` (`tau.schedule=linear, seed=0` ->
`schedule-linear_seed-0`), searched by a `python -m nas search` subprocess, then retrained by
`python -m nas train --genotype` into `out_dir/proxy/<id>` (`nas.ablate_run`). `jobs` runs go at once,
one GPU each (round robin) where GPUs exist.

Every stage is idempotent, so re-running the same command after a kill loses at most one epoch per run:
a finished stage is skipped, one with a checkpoint resumes (`--resume`), one killed before its first
checkpoint starts over. A run directory made from a different config is refused rather than mixed in.
All configs are validated before anything is launched. `nas.ablate_report` builds the tables and plots
from whatever runs exist, so a sweep split over many machines (`--print-commands`, one `--run` each) is
aggregated with `--aggregate OUT_DIR`.
"""

from __future__ import annotations

import itertools
import re
import shlex
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from nas.config import SearchRunConfig, TrainRunConfig, load_config, load_structured, to_dict, to_yaml
from nas.errors import UserError
from nas.genotype import atomic_write_text

ABLATION_FILE = "ablation.yaml"  # the resolved ablation, what `--aggregate` reads
BASE_SEARCH = "base_search.yaml"  # resolved snapshots of the base configs that every run starts from
BASE_TRAIN = "base_train.yaml"
DONE = {"search": "alphas.json", "proxy": "metrics.json"}  # written last, once a stage has finished


@dataclass
class ProxyTrainSpec:
    """A short retrain of every derived genotype with `nas train`."""

    config: str | None = None  # train config file; null = the TrainRunConfig defaults
    overrides: dict[str, Any] = field(default_factory=dict)  # train keys; data.name/root come from the search


@dataclass
class AblationConfig:
    """What `nas ablate --config FILE` reads."""

    name: str = "ablation"
    base: str | None = None  # search config file every run starts from; null = the SearchRunConfig defaults
    overrides: dict[str, Any] = field(default_factory=dict)  # search keys set for every run
    grid: dict[str, Any] = field(default_factory=dict)  # search key -> list of values
    seed_key: str = "seed"  # the grid key whose values are repeats: tables show mean +- std over it
    jobs: int = 1  # runs at once
    proxy_train: ProxyTrainSpec | None = None  # null = no retrain
    out_dir: str = "runs/ablation"


@dataclass
class Run:
    """One grid point: its id, its values, its settings (the point without the seed) and overrides."""

    id: str
    point: dict[str, Any]
    label: str  # the setting in words, e.g. "linear" or "schedule=linear, lr=0.1"
    search_args: list[str]  # dotlist on top of the base search config (out_dir not included)


def load_ablation(path: str | Path, overrides: list[str] | None = None) -> AblationConfig:
    """Read an ablation file with `key=value` overrides; raises UserError on an unknown key or wrong type."""
    spec = load_structured(AblationConfig, path, overrides, kind="ablation")
    if spec.jobs < 1:
        raise UserError(f"jobs must be >= 1, got {spec.jobs}")
    return spec


def flatten(mapping: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested or dotted keys -> dotted keys; a later key overrides an earlier one with the same path."""
    flat: dict[str, Any] = {}
    for key, value in mapping.items():
        if isinstance(value, dict) and value:
            flat.update(flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def dotlist_value(value: Any) -> str:
    """`value` as the right-hand side of an OmegaConf `key=value` override that reads back as `value`."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(dotlist_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ",".join(f"{k}:{dotlist_value(v)}" for k, v in value.items()) + "}"
    text = str(value)
    if _reads_back(text, text):
        return text
    escaped = text.replace("\\", "\\\\").replace("${", "\\${")
    quoted = '"' + escaped.replace('"', '\\"') + '"' if "'" in text else f"'{escaped}'"
    if not _reads_back(quoted, text):
        raise UserError(f"cannot write {text!r} as a key=value override")
    return quoted


def _reads_back(rhs: str, value: str) -> bool:
    try:
        return OmegaConf.from_dotlist([f"k={rhs}"])["k"] == value
    except (OmegaConfBaseException, yaml.YAMLError):  # not override grammar ("{a"), or a dangling "${x}"
        return False


def _slug(value: Any) -> str:
    text = dotlist_value(value) if not isinstance(value, str) else value
    return re.sub(r"[^A-Za-z0-9.+-]+", "-", text).strip("-") or "x"


def grid_points(spec: AblationConfig) -> list[dict[str, Any]]:
    """Every combination of the grid's values, in the grid's key order; seed outermost, so an interrupted
    sweep has every setting's first seed before any second seed."""
    grid = flatten(spec.grid)
    for key, values in grid.items():
        if not isinstance(values, list) or not values:
            raise UserError(f"grid.{key} must be a non-empty list of values, got {values!r}")
    keys = sorted(grid, key=lambda k: k != spec.seed_key)  # stable: seed first, then the grid's order
    points = [dict(zip(keys, combo)) for combo in itertools.product(*(grid[k] for k in keys))]
    return [{k: p[k] for k in grid} for p in points]


def short_keys(keys: list[str]) -> dict[str, str]:
    """The last component of each dotted key, or the whole key where two would share it."""
    last = [k.rsplit(".", 1)[-1] for k in keys]
    return {k: s if last.count(s) == 1 else k.replace(".", "-") for k, s in zip(keys, last)}


def plan(spec: AblationConfig) -> list[Run]:
    """The runs of an ablation, in launch order, with readable unique ids."""
    points = grid_points(spec)
    keys = list(flatten(spec.grid))
    short = short_keys(keys)
    common = [f"{k}={dotlist_value(v)}" for k, v in flatten(spec.overrides).items()]
    runs = []
    for point in points:
        rid = "_".join(f"{short[k]}-{_slug(v)}" for k, v in point.items()) or "base"
        setting = {k: v for k, v in point.items() if k != spec.seed_key}
        if len(setting) == 1:
            label = str(next(iter(setting.values())))
        else:
            label = ", ".join(f"{short[k]}={v}" for k, v in setting.items()) or "base"
        args = ["progress=false", *common, *(f"{k}={dotlist_value(v)}" for k, v in point.items())]
        runs.append(Run(rid, point, label, args))
    ids = [r.id for r in runs]
    dup = next((i for i in ids if ids.count(i) > 1), None)
    if dup:
        raise UserError(f"two grid points share the run id {dup!r}; make the grid values distinct")
    return runs


# --- configs of each stage ----------------------------------------------------------------------------


def search_config(spec: AblationConfig, run: Run, out: Path) -> SearchRunConfig:
    """The resolved search config of `run` (validated: keys, types, schedule, sampler, space)."""
    from nas.sampling import SAMPLERS
    from nas.schedules import validate_schedule
    from nas.space import SPACES

    try:
        cfg = load_config(SearchRunConfig, spec.base, [*run.search_args, f"out_dir={out / 'runs' / run.id}"])
        validate_schedule(cfg.tau)
        SAMPLERS.get(cfg.sampler.name)
        SPACES.get(cfg.space.name)
    except UserError as exc:
        raise UserError(f"run {run.id}: {exc}") from None
    return cfg


def proxy_args(spec: AblationConfig, search_cfg: SearchRunConfig) -> list[str]:
    """Overrides of the proxy retrain: the search's dataset and seed, then the ablation's own overrides."""
    assert spec.proxy_train is not None
    data = search_cfg.data
    same = {"seed": search_cfg.seed, "data.name": data.name, "data.root": data.root}
    same.update(flatten({"data": {"synthetic": to_dict(data.synthetic)}}))
    same["progress"] = False
    merged = {**same, **flatten(spec.proxy_train.overrides)}
    return [f"{k}={dotlist_value(v)}" for k, v in merged.items()]


def proxy_config(spec: AblationConfig, run: Run, out: Path, search_cfg: SearchRunConfig) -> TrainRunConfig:
    assert spec.proxy_train is not None
    args = [*proxy_args(spec, search_cfg), f"out_dir={out / 'proxy' / run.id}"]
    try:
        return load_config(TrainRunConfig, spec.proxy_train.config, args)
    except UserError as exc:
        raise UserError(f"run {run.id} (proxy_train): {exc}") from None


def _first_difference(a: dict, b: dict) -> str | None:
    fa, fb = flatten(a), flatten(b)
    for key in sorted(set(fa) | set(fb)):
        if key not in ("out_dir", "progress") and fa.get(key) != fb.get(key):
            return f"{key}: {fa.get(key)!r} there, {fb.get(key)!r} now"
    return None


def check_existing(run_dir: Path, schema: type, expected: Any) -> None:
    """Refuse to resume or skip a run directory that was made from a different config."""
    if not (run_dir / "config.yaml").is_file():
        return
    diff = _first_difference(to_dict(load_config(schema, run_dir / "config.yaml")), to_dict(expected))
    if diff:
        raise UserError(f"{run_dir} was made with a different config ({diff}); use another out_dir")


def check_plan(spec: AblationConfig, runs: list[Run], out: Path, data: bool = True) -> None:
    """Validate every run's configs (and, with `data`, that each dataset loads) before any work starts."""
    from nas.data import load_dataset

    seen_data = set()
    for run in runs:
        cfg = search_config(spec, run, out)
        check_existing(out / "runs" / run.id, SearchRunConfig, cfg)
        if spec.proxy_train is not None:
            check_existing(out / "proxy" / run.id, TrainRunConfig, proxy_config(spec, run, out, cfg))
        key = repr(to_dict(cfg.data))
        if data and key not in seen_data:
            seen_data.add(key)
            load_dataset(cfg.data, train=True)


def write_snapshots(spec: AblationConfig, out: Path) -> None:
    """ablation.yaml and the resolved base configs, which every run's command reads."""
    files = {ABLATION_FILE: OmegaConf.to_yaml(OmegaConf.structured(spec))}
    files[BASE_SEARCH] = to_yaml(load_config(SearchRunConfig, spec.base))
    if spec.proxy_train is not None:
        files[BASE_TRAIN] = to_yaml(load_config(TrainRunConfig, spec.proxy_train.config))
    for name, text in files.items():
        path = out / name
        if not path.is_file() or path.read_text() != text:
            atomic_write_text(path, text)


def select(runs: list[Run], ids: list[str]) -> list[Run]:
    known = {r.id: r for r in runs}
    unknown = [i for i in ids if i not in known]
    if unknown:
        raise UserError(f"unknown run id {unknown[0]!r} (known: {', '.join(known)})")
    return [known[i] for i in ids]


def print_commands(config: str, overrides: list[str], runs: list[Run]) -> None:
    """One self-contained command per run, e.g. for the lines of a cluster job array."""
    extra = "".join(" " + shlex.quote(o) for o in overrides)
    for run in runs:
        print(f"nas ablate --config {shlex.quote(config)} --run {shlex.quote(run.id)}{extra}")


def main(
    config: str | None,
    overrides: list[str],
    commands: bool = False,
    aggregate: str | None = None,
    only: list[str] | None = None,
) -> int:
    """`nas ablate`: run (or print, or aggregate) an ablation. Returns the exit code."""
    from nas.ablate_report import write_report
    from nas.ablate_run import execute

    if aggregate is not None:
        out = Path(aggregate)
        spec = load_ablation(out / ABLATION_FILE, overrides)
        for path in write_report(spec, plan(spec), out):
            print(path)
        return 0
    if config is None:
        raise UserError("nas ablate needs --config FILE (or --aggregate OUT_DIR)")
    spec = load_ablation(config, overrides)
    out = Path(spec.out_dir)
    runs = select(plan(spec), only) if only else plan(spec)
    check_plan(spec, runs, out, data=not commands)
    if commands:
        print_commands(config, overrides, runs)
        return 0
    out.mkdir(parents=True, exist_ok=True)
    write_snapshots(spec, out)
    start = time.perf_counter()
    failures = execute(spec, runs, out)
    seconds = time.perf_counter() - start
    print(f"{len(runs) - len(failures)}/{len(runs)} runs finished in {seconds:.0f}s", file=sys.stderr)
    for message in failures:
        print(f"nas ablate: failed: {message}", file=sys.stderr)
    if not only:  # runs is the whole plan
        for path in write_report(spec, runs, out):
            print(path)
    return 1 if failures else 0
