"""Every numeric config key has one range (nas.core.limits.RANGES), and a value outside it, or NaN, is refused
in one line naming the key."""

import dataclasses
import typing

import pytest

from nas.arch.space import SPACES
from nas.config import SearchRunConfig, SpaceConfig, TrainRunConfig, load_config
from nas.core.errors import UserError
from nas.core.limits import INF, RANGES, Range, check_flags


def _numeric_keys(schema: type, prefix: str = "") -> typing.Iterator[tuple[str, bool]]:
    """(dotted key, is an int) of every field typed int, float (optional or not) or a tuple of them."""
    hints = typing.get_type_hints(schema)
    for f in dataclasses.fields(schema):
        kind = hints[f.name]
        if dataclasses.is_dataclass(kind):
            yield from _numeric_keys(kind, f"{prefix}{f.name}.")
            continue
        kinds = {kind, *typing.get_args(kind)}
        if kinds & {int, float} or any(typing.get_origin(k) is tuple for k in kinds):
            yield prefix + f.name, int in kinds


SCHEMAS = {schema: dict(_numeric_keys(schema)) for schema in (SearchRunConfig, TrainRunConfig)}


# each space's `space` section (its Options): its own numeric keys, beyond SpaceConfig's
SPACE_KEYS = {
    name: {
        key: is_int
        for key, is_int in _numeric_keys(SPACES.get(name).Options)
        if key not in {f.name for f in dataclasses.fields(SpaceConfig)}
    }
    for name in SPACES.names()
}


def test_every_numeric_key_has_a_range_and_every_range_a_key():
    assert all(len(keys) > 20 for keys in SCHEMAS.values())  # the walk finds the fields
    assert {key for keys in SCHEMAS.values() for key in keys} == set(RANGES)


@pytest.mark.parametrize("space", sorted(SPACE_KEYS))
def test_every_numeric_key_of_a_space_has_exactly_one_range(space):
    """A space's own keys have their range in its Options.RANGES, never also in nas.core.limits.RANGES."""
    options = SPACES.get(space).Options
    assert set(options.RANGES) == set(SPACE_KEYS[space])
    assert not {f"space.{key}" for key in options.RANGES} & set(RANGES)
    assert {f"space.{key}" for key, _ in _numeric_keys(SpaceConfig)} <= set(RANGES)  # the shared keys


def _outside(allowed: Range, is_int: bool) -> str:
    """A value just outside `allowed` (NaN for a float with no finite bound)."""
    if allowed.lo != -INF:
        below = allowed.lo if allowed.lo_open else allowed.lo - (1 if is_int else 1e-3)
        return str(int(below) if is_int else below)
    if allowed.hi != INF:
        return str(allowed.hi + 1)
    return "nan"


CASES = [(schema, key) for schema, keys in SCHEMAS.items() for key in sorted(keys)]  # shared keys: twice


@pytest.mark.parametrize(("schema", "key"), CASES, ids=[f"{s.__name__}:{k}" for s, k in CASES])
def test_a_value_outside_its_range_is_refused_naming_the_key(schema, key):
    default = schema()
    for part in key.split("."):
        default = getattr(default, part)
    is_int = SCHEMAS[schema][key]
    bad = _outside(RANGES[key], is_int)
    value = f"[{bad},{bad}]" if isinstance(default, (tuple, list)) else bad
    with pytest.raises(UserError, match=f"^{key} must be .*, got "):
        load_config(schema, None, [f"{key}={value}"])
    if not is_int:  # NaN and infinity are refused for every float, whatever its range
        for odd in ("nan", "inf"):
            value = f"[{odd},{odd}]" if isinstance(default, tuple) else odd
            with pytest.raises(UserError, match=f"^{key} must be finite"):
                load_config(schema, None, [f"{key}={value}"])


SPACE_CASES = [(space, key) for space, keys in SPACE_KEYS.items() for key in sorted(keys)]


@pytest.mark.parametrize(("space", "key"), SPACE_CASES, ids=[f"{s}:{k}" for s, k in SPACE_CASES])
def test_a_space_key_outside_its_range_is_refused_naming_the_key(space, key):
    bad = _outside(SPACES.get(space).Options.RANGES[key], SPACE_KEYS[space][key])
    with pytest.raises(UserError, match=f"^space.{key} must be .*, got {bad}$"):
        load_config(SearchRunConfig, None, [f"space.name={space}", f"space.{key}={bad}"])


def test_defaults_are_inside_their_ranges():
    for schema in SCHEMAS:
        load_config(schema)  # raises if a default broke its own range
    for space in SPACES.names():
        load_config(SearchRunConfig, None, [f"space.name={space}"])


def test_flags_are_checked_against_their_ranges():
    ranges = {"--layers": Range(1, 100)}
    check_flags({"layers": 100}, ranges)
    with pytest.raises(UserError, match=r"^--layers must be in \[1, 100\], got 101$"):
        check_flags({"layers": 101}, ranges)
