"""Loading a config: schema defaults <- YAML file <- `key=value` overrides (OmegaConf), every key and type
checked against the schema, keys renamed since kept readable, one line naming the key for every mistake;
and writing one back (`to_yaml`, `to_dict`, `flat`)."""

from __future__ import annotations

from dataclasses import fields, is_dataclass
from pathlib import Path
from typing import Any, TypeVar

from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.errors import ConfigKeyError, OmegaConfBaseException

from nas.arch.space import SPACES
from nas.config.checks import validate
from nas.config.schema import DEFAULT_SPACE, SearchRunConfig, TrainRunConfig
from nas.core.errors import UserError, warn
from nas.sampling import SAMPLERS
from nas.sampling.base import SamplerConfig

T = TypeVar("T")


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
