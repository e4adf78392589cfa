"""The plan of an ablation (`nas ablate`): its file, its runs, their configs, checked before any work.

An ablation file (schema `AblationConfig`) names a base search config, overrides for every run, a grid
(config key -> list of values; the runs are the product), an optional proxy retrain and optional
baselines. Each grid point becomes its own search run directory `out_dir/runs/<id>`
(`tau.schedule=linear, seed=0` -> `schedule-linear_seed-0`), then a proxy retrain `out_dir/proxy/<id>`.
Each baseline (`random-03`, `zoo-NB201_BEST_CIFAR10`, `file-mycell`) is a proxy retrain only, of a
genotype written to `out_dir/baselines/<id>.json` (random draws: `space.sample_random`), so searched and
baseline cells are retrained by exactly the same recipe. With baselines, every finished search is also
asked how its supernet ranks them (`nas rank` -> `out_dir/rank/<id>.json`).
"""

from __future__ import annotations

import itertools
import math
import random
import re
import shlex
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, ClassVar

import yaml
from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from nas.arch.genotype import Genotype, load_genotype_file, save_genotype, short
from nas.arch.ground_truth import GroundTruth, GroundTruthConfig, ground_truth_of
from nas.config import SearchRunConfig, TrainRunConfig, load_config, load_structured, to_dict
from nas.core.atomic import atomic_write_text
from nas.core.errors import UserError
from nas.core.limits import SEED, Range, check_ranges
from nas.core.rundir import ALPHAS_FILE, CONFIG_FILE, RESULT_FILE

ABLATION_FILE = "ablation.yaml"  # the resolved ablation, what `--aggregate` reads
BASE_SEARCH = "base_search.yaml"  # resolved snapshots of the base configs that every run starts from
BASE_TRAIN = "base_train.yaml"
DONE = {"search": ALPHAS_FILE, "proxy": RESULT_FILE}  # written last, once a stage has finished
MAX_RUNS = 1000  # grid points, and random baselines: each is a search or a retrain (weeks of compute)


@dataclass
class ProxyTrainSpec:
    """A short retrain of every derived genotype with `nas train`."""

    config: str | None = None  # train config file; null = the TrainRunConfig defaults
    overrides: dict[str, Any] = field(default_factory=dict)  # train keys; data.name/root come from the search
    # retrains per cell, with seeds s, s + 1, ... (s: the search's seed, or baselines.seed); a cell's score is
    # their mean, once all have finished: a short retrain's noise can be as large as the cells' differences
    seeds: int = 1

    RANGES: ClassVar[dict[str, Range]] = {"seeds": Range(1, 100)}


@dataclass
class BaselineSpec:
    """Architectures retrained by the same proxy recipe as the searched ones, for comparison."""

    random: int = 0  # M architectures drawn uniformly from the searched space (the derive rule's constraints)
    seed: int = 0  # draws the random architectures (random-i from (seed, i)); the baselines' retrain seed
    zoo: list[str] = field(default_factory=list)  # published genotypes, by zoo name
    genotypes: list[str] = field(default_factory=list)  # genotype files (any format nas reads)
    rank: bool = True  # score every baseline inside each finished search's supernet (`nas rank`, Kendall tau)

    RANGES: ClassVar[dict[str, Range]] = {"random": Range(0, MAX_RUNS), "seed": SEED}


@dataclass
class AblationTruth(GroundTruthConfig):
    """The ground truth an ablation reads (`nas.arch.ground_truth`): where it comes from, and which dataset's
    accuracy judges the cells."""

    dataset: str | None = None  # null = the benchmark's first (NAS-Bench-201: cifar10)


EVALUATE = ("proxy", "ground_truth")


@dataclass
class ExecutorSpec:
    """What runs the grid points (`nas.ablate.executors`): `local` processes, `jobs` at once, or `ray` tasks."""

    name: str = "local"
    address: str | None = None  # ray: the cluster (`auto`, `HOST:6379`); null = a new instance for the run
    cpus: float = 1.0  # ray: CPUs each point's task asks for (its torch threads)
    gpus: float | None = None  # ray: GPUs per task; null = 1 where the cluster has GPUs, else 0
    retries: int = 3  # ray: how often a point whose worker was lost (or whose stage was killed) is retried

    RANGES: ClassVar[dict[str, Range]] = {
        "cpus": Range(0, 1024, lo_open=True),
        "gpus": Range(0, 64),
        "retries": Range(0, 100),
    }


@dataclass
class AblationConfig:
    """What `nas ablate --config FILE` reads."""

    name: str = "ablation"
    base: str | None = None  # search config file every run starts from; null = the SearchRunConfig defaults
    overrides: dict[str, Any] = field(default_factory=dict)  # search keys set for every run
    grid: dict[str, Any] = field(default_factory=dict)  # search key -> list of values
    seed_key: str = "seed"  # the grid key whose values are repeats: tables show mean +- std over it
    jobs: int = 1  # runs at once (the local executor's)
    executor: ExecutorSpec = field(default_factory=ExecutorSpec)
    proxy_train: ProxyTrainSpec | None = None  # null = no retrain
    baselines: BaselineSpec | None = None  # null = none; needs proxy_train unless evaluate=ground_truth
    # what judges the cells in the tables, the tests and the plots: proxy (the proxy retrain's test accuracy)
    # or ground_truth (the space's ground truth, `ground_truth.dataset`; no retrain needed)
    evaluate: str = "proxy"
    ground_truth: AblationTruth = field(default_factory=AblationTruth)
    reference: str | None = None  # a setting every other is tested against (effect size, CI); null = none
    out_dir: str = "runs/ablation"

    RANGES: ClassVar[dict[str, Range]] = {"jobs": Range(1, 1024)}


@dataclass
class Run:
    """One grid point (its values, its setting = the point without the seed, its search overrides), or
    one baseline architecture (`genotype` set: what `nas train --genotype` gets; no search)."""

    id: str
    point: dict[str, Any]
    label: str  # the setting in words, e.g. "linear" or "schedule=linear, lr=0.1"; "random" for random draws
    search_args: list[str]  # dotlist on top of the base search config (out_dir not included)
    genotype: str | None = None

    @property
    def is_baseline(self) -> bool:
        return self.genotype is not None


def load_ablation(path: str | Path, overrides: list[str] | None = None) -> AblationConfig:
    """Read an ablation file with `key=value` overrides; raises UserError on an unknown key or wrong type."""
    spec = load_structured(AblationConfig, path, overrides, kind="ablation")
    check_ranges(spec)
    if spec.evaluate not in EVALUATE:
        raise UserError(f"evaluate must be one of {', '.join(EVALUATE)}, got {spec.evaluate!r}")
    if spec.evaluate == "proxy" and spec.proxy_train is None and spec.baselines is not None:
        raise UserError(
            "baselines are compared by their proxy retrain: set proxy_train (or evaluate: ground_truth)"
        )
    return spec


def truth_config(spec: AblationConfig) -> GroundTruthConfig:
    """The `ground_truth` section without the ablation's own key (what a space's `ground_truth` takes)."""
    keys = {f.name for f in fields(GroundTruthConfig)}
    return GroundTruthConfig(**{k: v for k, v in asdict(spec.ground_truth).items() if k in keys})


def ablation_truth(spec: AblationConfig, base: SearchRunConfig) -> tuple[GroundTruth, str] | None:
    """(ground truth, dataset) of the base search's space, or None where it has none. Raises UserError when
    `evaluate: ground_truth` asks for one the space lacks, or for a dataset the benchmark does not hold."""
    from nas.arch.space import SPACES

    truth = ground_truth_of(SPACES.get(base.space.name), truth_config(spec))
    if truth is None:
        if spec.evaluate == "ground_truth":
            raise UserError(f"evaluate: ground_truth, but space {base.space.name} has no ground truth")
        return None
    dataset = spec.ground_truth.dataset or truth.datasets[0]
    if dataset not in truth.datasets:
        raise UserError(
            f"ground_truth.dataset: {truth.name} has no {dataset!r} (it has: {', '.join(truth.datasets)})"
        )
    return truth, dataset


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
            raise UserError(f"grid.{key} must be a non-empty list of values, got {short(values)}")
    size = math.prod(len(values) for values in grid.values())
    if size > MAX_RUNS:  # measured before the product is built: each point is a search
        raise UserError(f"the grid has {size:,} points; an ablation runs at most {MAX_RUNS:,}")
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
    common = _common(spec)
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
    runs += baseline_runs(spec)
    ids = [r.id for r in runs]
    dup = next((i for i in ids if ids.count(i) > 1), None)
    if dup:
        raise UserError(f"two runs share the id {dup!r}; make the grid values (or baseline files) distinct")
    return runs


def _common(spec: AblationConfig) -> list[str]:
    return [f"{k}={dotlist_value(v)}" for k, v in flatten(spec.overrides).items()]


def baseline_runs(spec: AblationConfig) -> list[Run]:
    """random-00.., zoo-NAME.., file-STEM.. (retrained after every grid point)."""
    b = spec.baselines
    if b is None:
        return []
    width = max(2, len(str(b.random - 1)))  # ids stay the same when more draws are added (up to 100)
    runs = [Run(f"random-{i:0{width}d}", {}, "random", [], f"baselines/random-{i:0{width}d}.json")
            for i in range(b.random)]  # fmt: skip

    def slug(text: str) -> str:  # underscores kept: baseline ids are not split into key-value pairs
        return re.sub(r"[^A-Za-z0-9._+-]+", "-", text).strip("-") or "x"

    runs += [Run(f"zoo-{slug(name)}", {}, f"zoo:{name}", [], f"zoo:{name}") for name in b.zoo]
    runs += [Run(f"file-{slug(Path(f).stem)}", {}, f"file:{Path(f).name}", [], f) for f in b.genotypes]
    return runs


def searches(runs: list[Run]) -> list[Run]:
    return [r for r in runs if not r.is_baseline]


def baseline_genotype(spec: AblationConfig, run: Run, out: Path) -> str:
    """What `nas train --genotype` and `nas rank` get for a baseline run (random draws live in `out`)."""
    assert run.genotype is not None
    return str(out / run.genotype) if run.genotype.startswith("baselines/") else run.genotype


def random_genotypes(spec: AblationConfig, base: SearchRunConfig) -> list[Genotype]:
    """The baseline's random architectures: draw i from its own generator seeded by (seed, i), so adding
    draws keeps the earlier ones."""
    from nas.arch.space import SPACES
    from nas.core.rng import derive_seed

    assert spec.baselines is not None
    space = SPACES.get(base.space.name)
    drawn = []
    for i in range(spec.baselines.random):
        genotype = space.sample_random(random.Random(derive_seed(spec.baselines.seed, i)), base.space)
        prov = {**genotype.provenance, "baseline": "random", "index": i, "seed": spec.baselines.seed}
        drawn.append(Genotype(genotype.space, genotype.cells, prov))
    return drawn


# --- configs of each stage ----------------------------------------------------------------------------


def search_config(spec: AblationConfig, run: Run, out: Path) -> SearchRunConfig:
    """The resolved search config of `run` (validated: keys, types, schedule, sampler, space)."""
    from nas.arch.space import SPACES
    from nas.sampling import SAMPLERS

    try:  # load_config checks the schedule (`validate_schedule`)
        cfg = load_config(SearchRunConfig, spec.base, [*run.search_args, f"out_dir={out / 'runs' / run.id}"])
        SAMPLERS.get(cfg.sampler.name)
        SPACES.get(cfg.space.name)
    except UserError as exc:
        raise UserError(f"run {run.id}: {exc}") from None
    return cfg


def base_search_config(spec: AblationConfig, runs: list[Run], out: Path) -> SearchRunConfig:
    """The search config baselines take their space and data from: the first grid point's. Raises
    UserError when the grid varies the space or the data (a baseline would have no one space to draw from)."""
    configs = [search_config(spec, run, out) for run in searches(runs)] or [
        search_config(spec, Run("base", {}, "base", ["progress=false", *_common(spec)]), out)
    ]
    for cfg in configs[1:]:
        for what in ("space", "data"):
            if to_dict(getattr(cfg, what)) != to_dict(getattr(configs[0], what)):
                raise UserError(
                    f"baselines need one {what} for every grid point, but the grid changes {what}.*"
                )
    return configs[0]


def proxy_stages(spec: AblationConfig) -> list[str]:
    """The proxy retrains of every cell, as stage names: `proxy`, then `proxy-2`, `proxy-3`, ...
    (`proxy_train.seeds`); none without a proxy retrain."""
    if spec.proxy_train is None:
        return []
    return ["proxy"] + [f"proxy-{k + 1}" for k in range(1, spec.proxy_train.seeds)]


def proxy_repeat(stage: str) -> int:
    """0 for `proxy`, k - 1 for `proxy-k`: how far the stage's seed is from the cell's first retrain's."""
    return 0 if stage == "proxy" else int(stage.removeprefix("proxy-")) - 1


def proxy_dir(out: Path, run_id: str, stage: str = "proxy") -> Path:
    """A proxy stage's run directory: out/proxy/<id> for the first retrain (as with one seed),
    out/proxy/<id>.seed-k for `proxy-k`."""
    return out / "proxy" / (run_id if stage == "proxy" else f"{run_id}.seed-{proxy_repeat(stage) + 1}")


def proxy_overrides(
    spec: AblationConfig, run: Run, out: Path, search_cfg: SearchRunConfig, stage: str = "proxy"
) -> list[str]:
    """The `nas train` overrides of a cell's proxy stage: the search's dataset, the seed (a baseline's
    `baselines.seed` or the search's, plus the stage's repeat), the ablation's own overrides, the out_dir."""
    assert spec.proxy_train is not None
    data = search_cfg.data
    first = spec.baselines.seed if run.is_baseline and spec.baselines else search_cfg.seed
    same = {"seed": first + proxy_repeat(stage), "data.name": data.name, "data.root": data.root}
    same.update(flatten({"data": {"synthetic": to_dict(data.synthetic)}}))
    same.update({"data.image_size": data.image_size, "data.cache_dir": data.cache_dir})
    same["progress"] = False
    merged = {**same, **flatten(spec.proxy_train.overrides)}
    return [f"{k}={dotlist_value(v)}" for k, v in merged.items()] + [
        f"out_dir={proxy_dir(out, run.id, stage)}"
    ]


def proxy_config(
    spec: AblationConfig, run: Run, out: Path, search_cfg: SearchRunConfig, stage: str = "proxy"
) -> TrainRunConfig:
    assert spec.proxy_train is not None
    try:
        return load_config(
            TrainRunConfig, spec.proxy_train.config, proxy_overrides(spec, run, out, search_cfg, stage)
        )
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
    if not (run_dir / CONFIG_FILE).is_file():
        return
    diff = _first_difference(to_dict(load_config(schema, run_dir / CONFIG_FILE)), to_dict(expected))
    if diff:
        raise UserError(f"{run_dir} was made with a different config ({diff}); use another out_dir")


def check_plan(spec: AblationConfig, runs: list[Run], out: Path, data: bool = True) -> None:
    """Validate every run's configs, the baseline genotypes and (with `data`) that each dataset loads,
    before any work starts."""
    from nas.arch.space import SPACES, resolve_genotype
    from nas.data.loaders import load_dataset

    base = base_search_config(spec, plan(spec), out) if any(r.is_baseline for r in runs) else None
    ablation_truth(spec, base or base_search_config(spec, plan(spec), out))  # a bad ground_truth: refused now
    seen_data = set()
    for run in runs:
        if run.is_baseline:
            cfg = base
            if not run.genotype.startswith("baselines/"):
                genotype = resolve_genotype(run.genotype)
                if genotype.space != cfg.space.name:
                    raise UserError(f"baseline {run.genotype} is a {genotype.space!r} genotype, the search "
                                    f"space is {cfg.space.name!r}")  # fmt: skip
            SPACES.get(cfg.space.name)
        else:
            cfg = search_config(spec, run, out)
            check_existing(out / "runs" / run.id, SearchRunConfig, cfg)
        for stage in proxy_stages(spec):
            check_existing(
                proxy_dir(out, run.id, stage), TrainRunConfig, proxy_config(spec, run, out, cfg, stage)
            )
        key = repr(to_dict(cfg.data))
        if data and key not in seen_data:
            seen_data.add(key)
            load_dataset(cfg.data, train=True)


def write_snapshots(spec: AblationConfig, out: Path) -> None:
    """ablation.yaml, the resolved base configs, which every run's command reads, and the random baseline
    genotypes (each file rewritten only if it would change)."""
    files = {ABLATION_FILE: OmegaConf.to_yaml(OmegaConf.structured(spec))}
    # the base files as written, not resolved against the schema: a run's overrides may change the section
    # a name types (space.name, sampler.name), and the resolved keys of the base's space or sampler would
    # then be unknown keys of the new one. Each run's resolved config is its own config.yaml.
    files[BASE_SEARCH] = _snapshot(spec.base)
    if spec.proxy_train is not None:
        files[BASE_TRAIN] = _snapshot(spec.proxy_train.config)
    for name, text in files.items():
        path = out / name
        if not path.is_file() or path.read_text() != text:
            atomic_write_text(path, text)
    if spec.baselines is not None and spec.baselines.random:
        drawn = random_genotypes(spec, base_search_config(spec, plan(spec), out))
        for run, genotype in zip([r for r in baseline_runs(spec) if r.label == "random"], drawn):
            path = Path(baseline_genotype(spec, run, out))
            if not path.is_file() or load_genotype_file(path) != genotype:
                save_genotype(path, genotype)


def _snapshot(path: str | None) -> str:
    """A config file's mapping as YAML (`{}` for none: the schema's defaults)."""
    return OmegaConf.to_yaml(OmegaConf.load(path)) if path is not None else "{}\n"


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
