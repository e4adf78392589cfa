"""Typed configuration: dataclass schemas, YAML presets and `key=value` overrides (OmegaConf).

`load_config(schema, path, overrides)` merges schema defaults <- YAML file <- dotlist overrides, checks
every key and type against the schema, and returns a plain dataclass instance. Library code only ever
sees these dataclasses, never a raw DictConfig.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Any, TypeVar

from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.errors import ConfigKeyError, OmegaConfBaseException

# Each component owns its config section's schema and this module assembles them: the space and model
# sections live with the space contract, tau with its schedules, the sampler's with the samplers, ground
# truth with its lookup.
from nas.arch.ground_truth import GroundTruthConfig
from nas.arch.space import SPACES, ModelConfig, SpaceConfig
from nas.core.errors import UserError, warn
from nas.core.limits import check_ranges
from nas.sampling import SAMPLERS, build_sampler
from nas.sampling.base import SamplerConfig
from nas.sampling.schedules import TauConfig, validate_schedule

T = TypeVar("T")
DEFAULT_SPACE = "darts"  # the space a config that names none searches


@dataclass
class SyntheticConfig:
    """Deterministic class-conditional random images (for tests and smoke runs)."""

    train_size: int = 512
    test_size: int = 256
    image_size: int = 32
    channels: int = 3
    classes: int = 10


@dataclass
class DataConfig:
    name: str = "cifar10"  # cifar10 | cifar100 | fashion_mnist | image_folder | synthetic
    root: str = "data"  # image_folder: the folder holding train/<class>/* and test/<class>/*
    download: bool = False
    batch_size: int = 64
    eval_batch_size: int = 256
    subset: int | None = None  # use only the first N training images; null = all
    train_portion: float = 0.5  # search: fraction of the training images used for weights, rest for alpha
    split_seed: int | None = (
        0  # search: seed of the weight/alpha split; fixed by default; null = the run seed
    )
    image_size: int | None = None  # image_folder: resize every image to this square size once; null = keep
    cache_dir: str | None = (
        None  # image_folder: decoded-array cache; null = <root>/.nas-cache (or ~/.cache/nas)
    )
    crop_padding: int = 4  # random crop with this zero padding; 0 = off
    flip: bool = True
    cutout: int = 0  # cutout square side in pixels; 0 = off
    device_resident: bool = True  # keep the uint8 dataset on the compute device, augment there
    # image_folder streaming (nas.data.stream): decode per batch in worker processes instead of holding the split
    stream: bool | None = None  # null = stream when the decoded training split would exceed stream_above_gb
    stream_above_gb: float = 8.0
    workers: int = 4  # streaming: decoding processes per training process (0 = in the training process)
    color_jitter: float = 0.0  # streaming: ColorJitter brightness/contrast/saturation (hue: half); DARTS 0.4
    synthetic: SyntheticConfig = field(default_factory=SyntheticConfig)


@dataclass
class WeightOptimConfig:
    lr: float = 0.025
    lr_min: float = 0.001
    momentum: float = 0.9
    nesterov: bool = False
    weight_decay: float = 3e-4
    grad_clip: float = 5.0  # 0 = off
    warmup_epochs: int = 0


@dataclass
class ArchOptimConfig:
    lr: float = 3e-4
    betas: tuple[float, float] = (0.5, 0.999)
    weight_decay: float = 1e-3
    # regularisers on alpha (nas.search.regularizers), each ramped from 0 over the architecture epochs
    beta_decay: float = 0.0  # beta-DARTS: lambda * mean logsumexp(alpha) per edge (the paper: 50); 0 = off
    entropy: float = 0.0  # w * mean op entropy: > 0 sharpens, < 0 keeps the distribution spread; 0 = off


@dataclass
class CostConfig:
    """Resource-aware search (`nas.cost`): a cost term in the architecture loss, off while weight is 0."""

    metric: str = "flops"  # flops | params | latency (latency needs a table from `nas cost profile`)
    weight: float = 0.0  # lambda; 0 = no term (a table given is still read to log the costs)
    target: float | None = None  # null: lambda * E[cost]; a value: lambda * max(0, E[cost] - target)
    table: str | None = None  # cost table file; null = count the space's standard retrain network


@dataclass
class GuardConfig:
    """The collapse guard (`nas.search.guard`; DARTS+, Liang et al. 2019): once alpha trains and a derived
    first cell (DARTS: normal) has held at most `max_ops` edges with an op of `ops`, a search stops at the
    first epoch whose cell holds more, and keeps the architecture of the epoch before. Off while null."""

    max_ops: int | None = None
    ops: list[str] | None = None  # null = the space's parameter-free ops (DARTS: pooling, skip_connect)


@dataclass
class DeriveCapConfig:
    """A cap on derive (`nas.cost.budget.derive_capped`; P-DARTS' limit of 2 skip connections, Chen et al.
    2019): the derived first cell (DARTS: normal) holds at most `max_ops` edges with an op of `ops`, the
    derive rule's best cell among those that do. Off while null."""

    max_ops: int | None = None
    ops: list[str] | None = (
        None  # null = the space's parameter-free ops (NB201: none, skip_connect, avg_pool_3x3)
    )


@dataclass
class SearchConfig:
    epochs: int = 50
    bilevel: str = "first_order"  # first_order | second_order
    unrolled_xi: float | None = None  # virtual step size for second order; null = the weight lr
    arch_start_epoch: int = 0  # update alpha only from this epoch on (weights warm up first)
    derive_exclude: list[str] = field(default_factory=list)  # ops derive never picks, e.g. [none]
    weights: WeightOptimConfig = field(default_factory=WeightOptimConfig)
    arch: ArchOptimConfig = field(default_factory=ArchOptimConfig)
    cost: CostConfig = field(default_factory=CostConfig)
    guard: GuardConfig = field(default_factory=GuardConfig)
    derive_cap: DeriveCapConfig = field(default_factory=DeriveCapConfig)


@dataclass
class RunConfig:
    """The keys every run command has (`nas search`, `nas train`), first in its config.yaml."""

    name: str = "run"
    out_dir: str = "runs/run"
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    amp: str = "none"  # none | bf16
    channels_last: bool = False
    deterministic: bool = False  # cudnn deterministic algorithms (CPU runs are deterministic anyway)
    # search: steps between updates of the progress bar's running loss and tau (`log_every` until issue 25)
    progress_every: int = 50
    progress: bool = True  # tqdm bar
    keep_checkpoints: list[int] = field(default_factory=list)  # epochs whose checkpoint is kept as well
    lr_scaling: str = "none"  # under torchrun: none | linear | sqrt in the number of processes (weight lr)


@dataclass
class SearchRunConfig(RunConfig):
    """Everything `nas search` needs."""

    name: str = "search"  # a redeclared field keeps its place: the key order of config.yaml stays
    out_dir: str = "runs/search"
    data: DataConfig = field(default_factory=lambda: DataConfig(batch_size=64))
    space: SpaceConfig = field(default_factory=lambda: SpaceConfig(name=DEFAULT_SPACE))
    sampler: SamplerConfig = field(default_factory=SamplerConfig)
    tau: TauConfig = field(default_factory=TauConfig)
    search: SearchConfig = field(default_factory=SearchConfig)
    # the space's ground truth (nas.arch.ground_truth), where it has one: the derived cell's accuracy per epoch
    ground_truth: GroundTruthConfig = field(default_factory=GroundTruthConfig)


@dataclass
class TrainConfig:
    epochs: int = 600
    lr: float = 0.025
    lr_schedule: str = "cosine"  # cosine (to lr_min) | step (x lr_decay_rate every lr_decay_epochs epochs)
    lr_min: float = 0.0
    lr_decay_rate: float = 0.97  # step: DARTS' ImageNet recipe multiplies the lr by 0.97 every epoch
    lr_decay_epochs: int = 1
    momentum: float = 0.9
    nesterov: bool = False
    weight_decay: float = 3e-4
    grad_clip: float = 5.0
    warmup_epochs: int = 0
    label_smoothing: float = 0.0
    ema: bool = False  # also evaluate an exponential moving average of the weights (timm ModelEmaV3)
    ema_decay: float = 0.9998
    sync_bn: bool = False  # under torchrun on GPUs: BatchNorm statistics over the global batch


@dataclass
class TrainRunConfig(RunConfig):
    """Everything `nas train` needs (retraining a genotype from scratch)."""

    name: str = "train"
    out_dir: str = "runs/train"
    data: DataConfig = field(default_factory=lambda: DataConfig(batch_size=96, cutout=16))
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)


def _first_line(exc: BaseException) -> str:
    """The message's first line, led by the key it is about where OmegaConf knows it (`search.epochs: ...`)."""
    text = str(exc).strip().splitlines()
    line = text[0] if text else type(exc).__name__
    key = getattr(exc, "full_key", None)
    return f"{key}: {line}" if key and not line.startswith(f"{key}:") else line


def _unknown_key(base: DictConfig, key: str) -> str:
    """`space.nodes: unknown key (space nb201 takes: name, init_channels, layers)`: the keys of the section
    the unknown key was put in, that section named with its `name` where it has one (a space, a sampler)."""
    section, _, _ = key.rpartition(".")
    node = OmegaConf.select(base, section) if section else base
    if not isinstance(node, DictConfig):
        return f"{key}: unknown key"
    top = key.split(".")[0]
    commands = {"nas search": SearchRunConfig, "nas train": TrainRunConfig}
    owner = [
        c for c, schema in commands.items() if top not in base and top in {f.name for f in fields(schema)}
    ]
    if owner:  # e.g. `train.epochs` given to nas search
        return f"{key}: unknown key here: {top}.* is a section of {owner[0]}'s config"
    label = section or "the top level"
    if section and isinstance(node.get("name"), str):
        label = f"{section} {node.name}"
    return f"{key}: unknown key ({label} takes: {', '.join(str(k) for k in node.keys())})"


def _merge(base: DictConfig, other: DictConfig, where: str) -> DictConfig:
    try:
        return OmegaConf.merge(base, other)
    except ConfigKeyError as exc:  # OmegaConf's "Key 'x' not in 'NB201Options'": name what the section takes
        raise UserError(f"bad {where}: {_unknown_key(base, str(exc.full_key))}") from None
    except OmegaConfBaseException as exc:
        message, key = _first_line(exc), getattr(exc, "full_key", None)
        if key and str(key).split(".")[-1] not in message:  # e.g. a value of the wrong type: name its key
            message = f"{key}: {message}"
        raise UserError(f"bad {where}: {message}") from None
    except (TypeError, ValueError):  # OmegaConf's "Cannot merge incompatible container types"
        found = _container_mismatch(base, other)
        what = f"{found[0]} must be a {found[1]}" if found else "a list and a mapping (key: value) do not mix"
        raise UserError(f"bad {where}: {what}") from None


def _kind(node: Any) -> str:
    return (
        "mapping (key: value)"
        if isinstance(node, DictConfig)
        else "list"
        if isinstance(node, ListConfig)
        else "value"
    )


def _container_mismatch(base: Any, other: Any, prefix: str = "") -> tuple[str, str] | None:
    """(dotted key, what `base` has there) of the first key that is a mapping in one and a list in the
    other (or a container in one and a plain value in the other)."""
    if not isinstance(base, DictConfig) or not isinstance(other, DictConfig):
        return None
    for key in other:
        if key not in base:
            continue
        a, b = base._get_node(key), other._get_node(key)
        if _kind(a) != _kind(b) and "value" != _kind(a) and not (a._is_none() or b._is_none()):
            return f"{prefix}{key}", _kind(a)
        found = _container_mismatch(a, b, f"{prefix}{key}.")
        if found:
            return found
    return None


def load_config(schema: type[T], path: str | Path | None = None, overrides: list[str] | None = None) -> T:
    """Merge schema defaults, a YAML file and `key=value` overrides into a validated dataclass.

    Raises:
        UserError: unknown key, wrong type, unreadable file, or a value the checks below refuse.
    """
    obj = load_structured(schema, path, overrides)
    validate(obj)
    return obj


def load_structured(
    schema: type[T], path: str | Path | None = None, overrides: list[str] | None = None, kind: str = "config"
) -> T:
    """`load_config` without the run-config value checks: for any dataclass schema (e.g. an ablation file,
    `kind` naming it in messages). Raises UserError on an unknown key, wrong type or unreadable file."""
    loaded = _read_yaml(Path(path), kind) if path is not None else None
    saved = loaded is not None and loaded.pop("_meta", None) is not None  # a run's config.yaml
    bad = [o for o in overrides or [] if "=" not in o]
    if bad:
        raise UserError(f"override {bad[0]!r} is not of the form key=value")
    try:
        dotlist = OmegaConf.from_dotlist(list(overrides or []))
    except Exception as exc:  # OmegaConf's errors, and YAML syntax errors in a value (e.g. `k={a:{b:1}}`)
        raise UserError(f"bad override: {_first_line(exc)}") from None
    for layer, where in ((loaded, f"{kind} {path}"), (dotlist, "overrides")):
        if layer is not None:
            _rename_keys(layer, schema, where)
    cfg = _defaults(schema, [c for c in (loaded, dotlist) if c is not None])
    if loaded is not None:
        if saved:
            _drop_legacy_space_keys(loaded, cfg)
        cfg = _merge(cfg, loaded, f"{kind} {path}")
    cfg = _merge(cfg, dotlist, "overrides")
    try:
        return OmegaConf.to_object(cfg)
    except OmegaConfBaseException as exc:
        raise UserError(f"bad {kind}: {_first_line(exc)}") from None


def _read_yaml(path: Path, kind: str) -> DictConfig:
    """The file's mapping, with its `_meta` provenance block (a saved run config) if it has one."""
    if path.is_dir():
        raise UserError(f"{kind} {path} is a directory; name a YAML file")
    if not path.is_file():
        raise UserError(f"{kind} file not found: {path}")
    try:
        loaded = OmegaConf.load(path)
    except Exception as exc:  # YAML syntax errors and the like
        raise UserError(f"cannot read {kind} {path}: {_first_line(exc)}") from None
    if not isinstance(loaded, DictConfig):
        raise UserError(f"{kind} {path} must be a YAML mapping of keys to values")
    return loaded


# Keys every run's config.yaml had in its `space` section while one DARTS-shaped schema served every space
# (before the spaces owned their sections): a saved run of a space without them still loads.
LEGACY_SPACE_KEYS = ("nodes", "stem_multiplier")


def _drop_legacy_space_keys(saved: DictConfig, defaults: DictConfig) -> None:
    """Remove from a saved run config the legacy `space` keys its space's schema does not have."""
    space, schema = saved.get("space"), defaults.get("space")
    if isinstance(space, DictConfig) and isinstance(schema, DictConfig):
        for key in LEGACY_SPACE_KEYS:
            if key in space and key not in schema:
                space.pop(key)


# Keys renamed to say what they do, old -> new (top-level keys): old configs, ablation files and saved runs
# (config.yaml, read again by --resume, derive, rank) still load, with one warning line.
RENAMED_KEYS = {
    "log_every": "progress_every",  # it never set TensorBoard scalars: it paces the search's progress bar
}


def _rename_keys(layer: DictConfig, schema: type, where: str) -> None:
    """Read a renamed key of `layer` under its new name (the new name wins where both are given)."""
    names = {f.name for f in fields(schema)} if is_dataclass(schema) else set()
    for old, new in RENAMED_KEYS.items():
        if old in layer and new in names:
            value = layer.pop(old)
            if new not in layer:
                layer[new] = value
            warn(f"{old} (in {where}) is deprecated: it is now {new}, read as such", once=old)


def _chosen(layers: list[DictConfig], key: str, default: str) -> str:
    """The value of `key` (e.g. `sampler.name`) that the layers (file, then overrides) leave."""
    name = default
    for layer in layers:
        try:
            name = OmegaConf.select(layer, key, default=name)
        except OmegaConfBaseException as exc:
            raise UserError(f"bad {key}: {_first_line(exc)}") from None
    return str(name)


def _defaults(schema: type, layers: list[DictConfig]) -> DictConfig:
    """The schema's defaults; for a search config, with the `space` and `sampler` sections typed by the
    options classes of the space and the sampler that the layers (file, then overrides) name, so that
    their own keys (and defaults) are known and checked. Raises UserError for an unknown name."""
    if schema is not SearchRunConfig:
        return OmegaConf.structured(schema)
    space = _chosen(layers, "space.name", DEFAULT_SPACE)
    sampler = _chosen(layers, "sampler.name", SamplerConfig.name)
    space_options, sampler_options = SPACES.get(space).Options, SAMPLERS.get(sampler).Options
    return OmegaConf.structured(
        SearchRunConfig(space=space_options(name=space), sampler=sampler_options(name=sampler))
    )


def to_yaml(cfg: Any, meta: dict | None = None) -> str:
    """The resolved config as YAML, with an optional `_meta` provenance block."""
    node = OmegaConf.structured(cfg)
    if meta:
        node = OmegaConf.merge(OmegaConf.create({"_meta": meta}), node)
    return OmegaConf.to_yaml(node)


def flat(tree: dict, prefix: str = "") -> dict[str, Any]:
    """A nested dict as {dotted key: leaf value}."""
    out: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            out.update(flat(value, f"{prefix}{key}."))
        else:
            out[prefix + key] = value
    return out


def to_dict(cfg: Any) -> dict:
    return OmegaConf.to_container(OmegaConf.structured(cfg), resolve=True)


def _check(ok: bool, message: str) -> None:
    if not ok:
        raise UserError(message)


def validate(cfg: Any) -> None:
    """Value checks the type system cannot express: every numeric field against its range
    (`nas.core.limits.RANGES`), then the choices and the rules between fields. Raises UserError on the first
    problem."""
    check_ranges(cfg)
    _check(cfg.amp in ("none", "bf16"), f"amp must be 'none' or 'bf16', got {cfg.amp!r}")
    _check(
        cfg.lr_scaling in ("none", "linear", "sqrt"),
        f"lr_scaling must be none, linear or sqrt, got {cfg.lr_scaling!r}",
    )
    if isinstance(cfg, SearchRunConfig):
        validate_schedule(cfg.tau)
        _check(
            cfg.search.bilevel in ("first_order", "second_order"),
            f"search.bilevel must be 'first_order' or 'second_order', got {cfg.search.bilevel!r}",
        )
        _nesterov(cfg.search.weights, "search.weights")
        sampler = build_sampler(cfg.sampler)  # the sampler checks its own options
        cfg.space.check(cfg)  # and the space its own
        if cfg.tau.schedule == "learned":
            learners = ", ".join(n for n in SAMPLERS if SAMPLERS.get(n).learns_tau)
            _check(sampler.learns_tau, f"tau.schedule=learned needs a sampler whose sample is differentiable in "
                                       f"tau ({learners}); {cfg.sampler.name} is not")  # fmt: skip
            _check(
                cfg.search.bilevel == "first_order", "tau.schedule=learned needs search.bilevel=first_order"
            )
        primitives = SPACES.get(cfg.space.name).primitives
        for op in cfg.search.derive_exclude:
            _check(op in primitives, f"search.derive_exclude: {op!r} is not an op of space {cfg.space.name} "
                                     f"({', '.join(primitives)})")  # fmt: skip
        _check(set(primitives) - set(cfg.search.derive_exclude) != set(),
               "search.derive_exclude excludes every op of the space")  # fmt: skip
        _guard(cfg.search.guard, primitives)
        _derive_cap(cfg.search, primitives)
        cost = cfg.search.cost
        _check(cost.metric in ("flops", "params", "latency"),
               f"search.cost.metric must be flops, params or latency, got {cost.metric!r}")  # fmt: skip
        _check(cost.metric != "latency" or cost.table is not None,
               "search.cost.metric=latency needs search.cost.table (made by `nas cost profile`)")  # fmt: skip
    if isinstance(cfg, TrainRunConfig):
        _check(
            cfg.model.network in ("cifar", "imagenet"),
            f"model.network must be 'cifar' or 'imagenet', got {cfg.model.network!r}",
        )
        _check(
            cfg.train.lr_schedule in ("cosine", "step"),
            f"train.lr_schedule must be cosine or step, got {cfg.train.lr_schedule!r}",
        )
        _nesterov(cfg.train, "train")


def _guard(guard: GuardConfig, primitives: tuple[str, ...]) -> None:
    for op in guard.ops or []:
        _check(
            op in primitives, f"search.guard.ops: {op!r} is not an op of the space ({', '.join(primitives)})"
        )
    _check(guard.ops is None or guard.max_ops is not None, "search.guard.ops needs search.guard.max_ops")


def _derive_cap(search: SearchConfig, primitives: tuple[str, ...]) -> None:
    cap = search.derive_cap
    for op in cap.ops or []:
        _check(op in primitives,
               f"search.derive_cap.ops: {op!r} is not an op of the space ({', '.join(primitives)})")  # fmt: skip
    _check(
        cap.ops is None or cap.max_ops is not None, "search.derive_cap.ops needs search.derive_cap.max_ops"
    )
    if cap.ops is not None and cap.max_ops == 0:
        left = set(primitives) - set(cap.ops) - set(search.derive_exclude)
        _check(left != set(), "search.derive_cap.max_ops=0 with search.derive_cap.ops and search.derive_exclude "
               "covering every op leaves derive nothing to pick")  # fmt: skip


def _nesterov(optim: Any, prefix: str) -> None:
    _check(
        not optim.nesterov or optim.momentum > 0,
        f"{prefix}.nesterov=true needs {prefix}.momentum > 0, got {optim.momentum}",
    )
