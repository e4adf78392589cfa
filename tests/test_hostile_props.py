"""Hostile input as properties, not examples: for every numeric config key and command-line flag, values
generated from its range (`nas.core.limits`) must either run or be refused in one line (`nas: error: ...`,
exit 2, no traceback), and no command may add more than `MEMORY` to the process's peak memory on the
way. Crafted files (checkpoint fields of the wrong type, run JSON that is not what nas wrote, cost
tables, image caches, genotype strings) are generated per field in the same way.

A new command gets its row in `COMMANDS` (its numeric flags and their ranges); a new config key, sampler
option or space option is picked up from the schemas by itself.
"""

import argparse
import dataclasses
import json
import math
import random
import shutil
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch

from nas.arch.space import SPACES
from nas.cli import build_parser, main
from nas.config import SearchRunConfig, SpaceConfig, TrainRunConfig
from nas.core import limits
from nas.core.errors import printable
from nas.core.limits import INF, Range
from nas.sampling import SAMPLERS
from nas.sampling.base import SamplerConfig
from tests.conftest import ROOT
from tests.test_limits import SCHEMAS, SPACE_KEYS, _numeric_keys

MEMORY = 1 << 30  # what one command may add to the peak resident memory of the test process
SEED = 0  # the generated values; another seed explores others

TINY_CONFIG = str(ROOT / "configs/search/tiny_synthetic.yaml")
DATA = ["progress=false", "data.name=synthetic", "data.batch_size=4", "data.synthetic.train_size=8",
        "data.synthetic.test_size=4", "data.synthetic.image_size=8", "data.synthetic.classes=2"]  # fmt: skip
SEARCH = ["--config", TINY_CONFIG, *DATA, "space.name=nb201", "space.init_channels=2", "space.layers=1",
          "search.epochs=1"]  # fmt: skip
SEARCH_DARTS = ["--config", TINY_CONFIG, *DATA, "space.init_channels=2", "space.layers=3", "search.epochs=1"]
TRAIN = ["--genotype", "zoo:DARTS_V1", *DATA, "model.init_channels=2", "model.layers=1", "train.epochs=1"]

# keys whose cost grows with the value as a legitimate run's does (10^6 epochs, 10^5 classes or 4096-pixel
# images are not hostile, only large, and the memory verdict lets what fits run): their largest generated
# value is capped here. What cannot fit is refused before it is allocated (`ran_or_refused` checks that
# of every refusal; tests/test_hostile.py holds the edges that cannot fit)
CAPS = {"search.epochs": 2, "train.epochs": 2, "space.layers": 5, "model.layers": 5,
        "data.synthetic.train_size": 32, "data.synthetic.test_size": 32, "data.synthetic.image_size": 32,
        "data.synthetic.classes": 1000}  # fmt: skip


# --- measuring one command ----------------------------------------------------------------------------


def _rss(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise LookupError(field)


def _reset_peak() -> int:
    """Reset the kernel's peak-RSS mark of this process to its current RSS (Linux >= 4.0) and return it."""
    Path("/proc/self/clear_refs").write_text("5")
    return _rss("VmRSS")


@pytest.fixture(autouse=True)
def _no_figures(monkeypatch):
    """TensorBoard heatmaps cost most of a tiny search's time and nothing here reads them."""
    monkeypatch.setattr("nas.run.runlog.RunLogger.figure", lambda self, *args, **kwargs: None)


def ran_or_refused(capsys, argv: list[str]) -> tuple[int, str]:
    """Run the CLI in this process: exit 0, or exit 2 with `nas: error:` as its one error line and no
    traceback, refused without taking more than MEMORY above the memory it started at (what a run that
    fits then uses is its own). Any other exception propagates (a crash is what this suite looks for)."""
    capsys.readouterr()
    base = _reset_peak()
    code = main([str(a) for a in argv])
    grown = _rss("VmHWM") - base
    err = capsys.readouterr().err
    assert code in (0, 2), err
    if code == 2:
        errors = [line for line in err.splitlines() if line.startswith("nas: error: ")]
        assert len(errors) == 1 and err.rstrip().endswith(errors[0]) and "Traceback" not in err, err
        assert errors[0].isprintable(), errors[0]
    assert code == 0 or grown < MEMORY, f"{argv}: refused after the peak grew by {grown / 2**30:.2f} GiB"
    return code, err


# --- generated values ---------------------------------------------------------------------------------


def edges(allowed: Range, is_int: bool) -> tuple[float, float]:
    """The smallest and the largest value inside `allowed` (an open end: the next value in)."""
    assert allowed.lo > -INF and allowed.hi < INF, "every range is finite at both ends"
    step = 1 if is_int else None
    lo = allowed.lo + (step or max(1e-12, abs(allowed.lo) * 1e-9)) if allowed.lo_open else allowed.lo
    hi = allowed.hi - (step or max(1e-12, abs(allowed.hi) * 1e-9)) if allowed.hi_open else allowed.hi
    return (int(lo), int(hi)) if is_int else (float(lo), float(hi))


def inside(allowed: Range, is_int: bool, rng: random.Random) -> float:
    """A value drawn inside `allowed`: log-uniform where it spans decades of positive values."""
    lo, hi = edges(allowed, is_int)
    if lo > 0 and hi / lo > 100:
        value = math.exp(rng.uniform(math.log(lo), math.log(hi)))
    else:
        value = rng.uniform(lo, hi)
    return min(max(round(value), lo), hi) if is_int else value


def outside(allowed: Range, is_int: bool) -> list[str]:
    """Values just outside `allowed`, and the ones no float range holds."""
    out = [str(allowed.lo - 1 if is_int else allowed.lo - 1e-3 if not allowed.lo_open else allowed.lo)]
    out.append(str(allowed.hi + 1 if is_int else allowed.hi * 2 + 1))
    out += ["10" + "0" * 30] if is_int else ["nan", "inf", "-inf", "2e300"]
    return out


def as_override(key: str, value: float, default: object) -> str:
    return as_override_text(key, repr(value), default)


def _default(schema: type, key: str) -> object:
    value = schema()
    for part in key.split("."):
        value = getattr(value, part)
    return value


def _range(key: str, own: dict[str, Range]) -> Range:
    return limits.RANGES.get(key) or own[key.rsplit(".", 1)[-1]]


# every (command, base arguments, key, is int, range, default) of the config tier
SHARED = set(SCHEMAS[SearchRunConfig]) & set(SCHEMAS[TrainRunConfig])
SAMPLER_KEYS = {
    name: {k: i for k, i in _numeric_keys(SAMPLERS.get(name).Options) if k not in
           {f.name for f in dataclasses.fields(SamplerConfig)}}
    for name in SAMPLERS.names()
}  # fmt: skip
KEYS = [("train", TRAIN, [], key, is_int, limits.RANGES[key], _default(TrainRunConfig, key))
        for key, is_int in sorted(SCHEMAS[TrainRunConfig].items())]  # fmt: skip
KEYS += [("search", SEARCH, [], key, is_int, limits.RANGES[key], _default(SearchRunConfig, key))
         for key, is_int in sorted(SCHEMAS[SearchRunConfig].items()) if key not in SHARED
         and not key.startswith("space.")]  # fmt: skip
KEYS += [("search", SEARCH_DARTS, [], f"space.{key}", is_int, limits.RANGES[f"space.{key}"], 0)
         for key, is_int in _numeric_keys(SpaceConfig)]  # fmt: skip
KEYS += [("search", SEARCH_DARTS if space == "darts" else SEARCH, [f"space.name={space}"], f"space.{key}", is_int,
          SPACES.get(space).Options.RANGES[key], 0) for space, keys in sorted(SPACE_KEYS.items())
         for key, is_int in sorted(keys.items())]  # fmt: skip
KEYS += [("search", SEARCH, [f"sampler.name={name}"], f"sampler.{key}", is_int,
          SAMPLERS.get(name).Options.RANGES[key], 0) for name, keys in sorted(SAMPLER_KEYS.items())
         for key, is_int in sorted(keys.items())]  # fmt: skip
IDS = [f"{c}:{extra[0].split('=')[1] + ':' if extra else ''}{key}" for c, _, extra, key, *_ in KEYS]


def test_every_numeric_key_is_generated_here():
    """The tables above are read from the schemas: every key of nas.core.limits and of every options class."""
    keys = {key for _, _, _, key, *_ in KEYS}
    assert set(limits.RANGES) <= keys
    assert all(f"sampler.{k}" in keys for ks in SAMPLER_KEYS.values() for k in ks)
    assert all(f"space.{k}" in keys for ks in SPACE_KEYS.values() for k in ks)
    assert {name for name, keys in SAMPLER_KEYS.items() if keys} >= {"drnas", "gumbel_rao", "gdas"}


def _unranged(schema: type, prefix: str = "") -> list[str]:
    """The numeric fields of a dataclass schema (nested ones too, optional or not) without a range."""
    import typing

    hints, own = typing.get_type_hints(schema), getattr(schema, "RANGES", {})
    missing = []
    for f in dataclasses.fields(schema):
        kinds = {hints[f.name], *typing.get_args(hints[f.name])}
        nested = [k for k in kinds if dataclasses.is_dataclass(k)]
        if nested:
            missing += _unranged(nested[0], f"{prefix}{f.name}.")
        elif kinds & {int, float} or any(typing.get_origin(k) in (tuple, list) and
                                         set(typing.get_args(k)) & {int, float} for k in kinds):  # fmt: skip
            if prefix + f.name not in limits.RANGES and f.name not in own:
                missing.append(prefix + f.name)
    return missing


def test_every_numeric_field_of_every_file_schema_has_a_range():
    """The other files a user writes (ablations, gradcheck configs) are bounded like run configs."""
    from nas.ablate.spec import AblationConfig
    from nas.gradcheck.setup import GradcheckConfig

    for schema in (AblationConfig, GradcheckConfig, SearchRunConfig, TrainRunConfig):
        assert _unranged(schema) == [], schema.__name__
    for name in SAMPLERS.names():
        assert _unranged(SAMPLERS.get(name).Options, "sampler.") == [], name
    for name in SPACES.names():
        assert _unranged(SPACES.get(name).Options, "space.") == [], name


@pytest.mark.parametrize(("command", "base", "extra", "key", "is_int", "allowed", "default"), KEYS, ids=IDS)
def test_a_key_at_generated_values_runs_or_is_refused_in_one_line(
    tmp_path, capsys, command, base, extra, key, is_int, allowed, default
):
    """Its largest value (capped where the cost is a legitimate run's, `CAPS`), for int keys also its
    smallest, for train keys (whose runs cost a fifth of a search's) a value drawn from its smallest and
    the inside: each runs to the end or is refused in one line. A sampler option outside its range, or NaN,
    is refused naming it (tests/test_limits.py does that for every other key)."""
    rng = random.Random(f"{SEED} {key}")
    lo, hi = edges(allowed, is_int)
    values = [min(hi, CAPS.get(key, hi))]
    if is_int and key.startswith("space."):  # the sizes of the supernet; other keys' smallest: a train row
        values.append(lo)
    if command == "train":
        values.append(min(rng.choice([lo, inside(allowed, is_int, rng)]), CAPS.get(key, hi)))
    for i, value in enumerate(values):
        out = f"out_dir={tmp_path / str(i)}"
        ran_or_refused(capsys, [command, *base, *extra, as_override(key, value, default), out])
    if key.startswith("sampler."):
        bad = random.Random(f"{SEED} {key} outside").choice(outside(allowed, is_int))
        code, err = ran_or_refused(capsys, [command, *base, *extra, as_override_text(key, bad, default), out])
        assert code == 2 and f"{key} must be" in err, err


def as_override_text(key: str, text: str, default: object) -> str:
    """`key=text`; for a list or tuple key, every element `text` (as many as its default has, at least one)."""
    if not isinstance(default, (list, tuple)):
        return f"{key}={text}"
    return f"{key}=[{','.join([text] * max(1, len(default)))}]"


# --- command-line flags ---------------------------------------------------------------------------------


# command -> (arguments before the flags, {flag: range}, caps for flags whose cost is a legitimate run's;
# None: a command whose every run takes seconds, of which only the values outside the ranges are run)
COMMANDS: dict[str, tuple[list[str], dict[str, Range], dict[str, float] | None]] = {
    # a small network first: the flag under test, given after, overrides it
    "genotype info": (["zoo:DARTS_V2", "--init-channels", "4", "--layers", "3", "--image-size", "8"],
                      limits.INFO_RANGES | limits.GROUND_TRUTH_RANGES,
                      {"--layers": 8, "--image-size": 64, "--classes": 100, "--in-channels": 4}),
    "cost table": (["--space", "nb201", "--layers", "1", "--init-channels", "2", "--image-size", "8", "-o",
                    "{tmp}/t.json"], limits.COST_RANGES,
                   {"--layers": 1, "--init-channels": 16, "--image-size": 16, "--classes": 100, "--in-channels": 4}),
    "cost profile": (["--space", "nb201", "--cache", "{tmp}/c.json", "-o", "{tmp}/t.json"],
                     limits.COST_RANGES | limits.PROFILE_RANGES, None),
    "rank": (["{run}", "-o", "{tmp}/r.json"], limits.RANK_RANGES | limits.GROUND_TRUTH_RANGES, {"--random": 2}),
    "derive": (["{run}"], {f"--max-{m}": limits.BUDGET for m in ("flops", "params", "latency")}
               | {"--derive-cap": limits.RANGES["search.derive_cap.max_ops"]}, {}),
    "bench": (["--config", TINY_CONFIG, "-o", "{tmp}/b.json"], limits.BENCH_RANGES, None),
}  # fmt: skip
NO_NUMERIC_FLAGS = {"search", "train", "export", "ablate", "gradcheck", "genotype show",
                    "genotype convert", "genotype plot", "genotype list"}  # fmt: skip


def _commands(parser: argparse.ArgumentParser, prefix: str = "") -> dict[str, argparse.ArgumentParser]:
    out = {}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                nested = _commands(sub, f"{prefix}{name} ")
                out |= nested or {f"{prefix}{name}": sub}
    return out


def test_every_command_has_its_row_and_every_numeric_flag_a_range():
    commands = _commands(build_parser())
    assert set(commands) == set(COMMANDS) | NO_NUMERIC_FLAGS, "a new command needs its row here"
    for name, parser in commands.items():
        numeric = {
            a.option_strings[-1] for a in parser._actions if a.type in (int, float) and a.option_strings
        }
        long = {f for f in numeric if f.startswith("--")}
        ranges = COMMANDS[name][1] if name in COMMANDS else {}
        assert long <= set(ranges), f"nas {name}: {sorted(long - set(ranges))} have no range"


FLAGS = [(command, flag) for command, (_, ranges, _) in COMMANDS.items() for flag in ranges]


@pytest.mark.parametrize(("command", "flag"), FLAGS, ids=[f"{c}:{f}" for c, f in FLAGS])
def test_a_flag_at_generated_values_runs_or_is_refused_in_one_line(
    finished_search, tmp_path, capsys, command, flag
):
    before, ranges, caps = COMMANDS[command]
    run = tmp_path / "run"
    shutil.copytree(finished_search, run)
    args = [a.replace("{tmp}", str(tmp_path)).replace("{run}", str(run)) for a in before]
    allowed = ranges[flag]
    is_int = allowed is not limits.BUDGET
    lo, hi = edges(allowed, is_int)
    for value in (lo, min(hi, caps.get(flag, hi))) if caps is not None else ():
        ran_or_refused(capsys, [*command.split(), *args, flag, str(value)])
    for bad in outside(allowed, is_int)[:3]:
        code, err = ran_or_refused(capsys, [*command.split(), *args, flag, bad])
        assert code == 2, err


# --- crafted files: every field of a real one, replaced by values of other types -----------------------

ODD = ["x", -1, 10**30, [], {"a": 1}, None, 1.5, True]


def _finished(finished_search: Path, tmp: Path) -> Path:
    run = tmp / "run"
    shutil.copytree(finished_search, run)
    return run


@pytest.fixture(scope="module")
def checkpoint_fields(finished_search) -> list[str]:
    return sorted(torch.load(finished_search / "checkpoints/last.pt", weights_only=True))


def test_a_checkpoint_field_of_another_type_is_refused_in_one_line(finished_search, checkpoint_fields, tmp_path,
                                                                   capsys):  # fmt: skip
    """Every top-level field of a real search checkpoint, replaced by a generated value of another type:
    `nas derive` and `nas search --resume` run or refuse in one line; nothing is ever a traceback."""
    rng = random.Random(SEED)
    assert "model" in checkpoint_fields and "epoch" in checkpoint_fields
    resumed = set(rng.sample(checkpoint_fields, 2))  # a resume costs a search's setup: two fields a time
    for i, field in enumerate(checkpoint_fields):
        run = tmp_path / f"r{i}"
        shutil.copytree(finished_search, run)
        state = torch.load(run / "checkpoints/last.pt", weights_only=True)
        state[field] = rng.choice([v for v in ODD if type(v) is not type(state[field])])
        torch.save(state, run / "checkpoints/last.pt")
        ran_or_refused(capsys, ["derive", run])
        if field in resumed:
            ran_or_refused(capsys, ["search", "--resume", run])


def test_model_entries_of_another_shape_or_type_are_refused_in_one_line(finished_search, tmp_path, capsys):
    run = _finished(finished_search, tmp_path)
    state = torch.load(run / "checkpoints/last.pt", weights_only=True)
    for i, key in enumerate(sorted(k for k in state["model"] if k.startswith("alphas."))):
        for j, odd in enumerate(
            [torch.zeros(3), torch.zeros(2, 2, dtype=torch.int64), "x", torch.full((14, 8), math.nan)]
        ):
            copy = tmp_path / f"m{i}{j}"
            shutil.copytree(run, copy)
            crafted = {**state, "model": {**state["model"], key: odd}}
            torch.save(crafted, copy / "checkpoints/last.pt")
            ran_or_refused(capsys, ["derive", copy])


@pytest.fixture(scope="module")
def finished_train(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("train") / "run"
    assert main(["train", *TRAIN, f"out_dir={out}"]) == 0
    return out


@pytest.mark.parametrize(
    "content", [b"{not json", b"[1, 2]", b"\x00\xff" * 64, b'{"test_acc": {"a": []}}', b"1e999"]
)
def test_export_reads_a_corrupt_result_file_in_one_line(finished_train, tmp_path, capsys, content):
    run = _finished(finished_train, tmp_path)
    (run / "metrics.json").write_bytes(content)
    ran_or_refused(capsys, ["export", run, "-o", tmp_path / "net.safetensors"])


def test_export_of_a_checkpoint_from_another_space_is_one_line(
    finished_train, finished_search, tmp_path, capsys
):
    run = _finished(finished_train, tmp_path)
    shutil.copy(finished_search / "checkpoints/last.pt", run / "checkpoints/last.pt")
    code, err = ran_or_refused(capsys, ["export", run, "-o", tmp_path / "net.safetensors"])
    assert code == 2
    (run / "checkpoints/last.pt").write_bytes(bytes(random.Random(SEED).randbytes(4096)))
    code, err = ran_or_refused(capsys, ["export", run, "-o", tmp_path / "net.safetensors"])
    assert code == 2 and "checkpoint" in err


def _cost_table(tmp: Path) -> Path:
    path = tmp / "table.json"
    assert (
        main(["cost", "table", "--space", "darts", "--layers", "5", "--init-channels", "4", "-o", str(path)])
        == 0
    )
    return path


def test_a_cost_table_field_of_another_type_is_refused_in_one_line(finished_search, tmp_path, capsys):
    table = json.loads(_cost_table(tmp_path).read_text())
    run = _finished(finished_search, tmp_path)
    rng = random.Random(SEED)
    for field in sorted(table):
        crafted = {**table, field: rng.choice([v for v in ODD if type(v) is not type(table[field])])}
        path = tmp_path / f"{field}.json"
        path.write_text(json.dumps(crafted))
        code, err = ran_or_refused(capsys, ["derive", run, "--max-params", "1e9", "--table", path])
    for i, content in enumerate((b"\x00" * 100, bytes(rng.randbytes(500)), b'{"k": "x"}')):
        cache = tmp_path / f"cache{i}.json"  # a latency cache: ignored with a warning
        cache.write_bytes(content)
        code, err = ran_or_refused(capsys, ["cost", "profile", "--space", "nb201", "--layers", "1",
                                            "--init-channels", "2", "--image-size", "8", "--repeats", "1",
                                            "--warmup", "0", "--cache", cache, "-o",
                                            tmp_path / "p.json"])  # fmt: skip
        assert code == 0 and "ignoring latency cache" in err


# --- image folders ----------------------------------------------------------------------------------------


def _png_claiming(path: Path, width: int, height: int) -> None:
    """A PNG of a few hundred bytes whose header claims width x height RGB pixels."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 4096))
                     + chunk(b"IEND", b""))  # fmt: skip


def _folder(root: Path) -> Path:
    from PIL import Image

    for split in ("train", "test"):
        for label in ("a", "b"):
            (root / split / label).mkdir(parents=True)
            for i in range(4):
                Image.fromarray(np.full((8, 8, 3), 40 * i, np.uint8)).save(root / split / label / f"{i}.png")
    return root


def _image_search(root: Path, tmp: Path) -> list:
    return ["search", *SEARCH, "data.name=image_folder", f"data.root={root}", "data.batch_size=2",
            f"data.cache_dir={tmp / 'cache'}", f"out_dir={tmp / 'out'}"]  # fmt: skip


@pytest.mark.parametrize("side", [9000, 13000, 40000, 2**31 - 1])
def test_an_image_claiming_a_huge_size_is_refused_from_its_header(tmp_path, capsys, side):
    root = _folder(tmp_path / "images")
    for i in range(3):
        _png_claiming(root / "train" / "a" / f"{i}.png", side, side)
    code, err = ran_or_refused(capsys, _image_search(root, tmp_path))
    assert code == 2 and "pixels" in err


@pytest.mark.parametrize("where", ["train/z", "train/a/9.png", "test/a/9.png"])
def test_a_symlink_loop_in_an_image_folder_is_one_line(tmp_path, capsys, where):
    root = _folder(tmp_path / "images")
    (root / where).symlink_to(root / where)
    ran_or_refused(capsys, _image_search(root, tmp_path) + (["search.epochs=1"] if "test" in where else []))


def test_a_poisoned_decode_cache_is_decoded_again(tmp_path, capsys):
    """Cached labels, images or statistics that are not what decoding gives (and compressed members) are
    ignored and the split decoded again: every label stays a class of the folder."""
    from nas.config import DataConfig
    from nas.data.loaders import load_dataset

    root = _folder(tmp_path / "images")
    cfg = DataConfig(name="image_folder", root=str(root), cache_dir=str(tmp_path / "cache"))
    clean = load_dataset(cfg, train=True)
    (cache,) = (tmp_path / "cache").glob("train-*.npz")
    arrays = dict(np.load(cache))
    rng = np.random.default_rng(SEED)
    poisons = {
        "labels": lambda a: {**a, "labels": a["labels"] + int(rng.integers(2, 10**6))},
        "shape": lambda a: {**a, "images": a["images"][:, :, :4]},
        "std": lambda a: {**a, "std": np.full_like(a["std"], np.nan)},
        "dtype": lambda a: {**a, "images": a["images"].astype(np.float32)},
    }
    for name, poison in poisons.items():
        np.savez(cache, **poison(arrays))
        loaded = load_dataset(cfg, train=True)
        assert torch.equal(loaded.labels, clean.labels) and torch.equal(loaded.images, clean.images), name
        assert "ignoring" in capsys.readouterr().err
    np.savez_compressed(cache, **arrays)  # a compressed member could inflate: never read
    assert torch.equal(load_dataset(cfg, train=True).labels, clean.labels)
    assert "ignoring" in capsys.readouterr().err


# --- ablations ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, message",
    [
        ("grid: [1, 2, 3]", "grid must be a mapping"),
        ("grid: {seed: 0}", "must be a non-empty list"),
        ("grid: {seed: [" + ",".join(map(str, range(40))) + "], search.weights.lr: ["
         + ",".join(str(0.01 * i + 0.01) for i in range(40)) + "]}", "points; an ablation runs at most"),
        ("grid: {seed: [0]}\nproxy_train: {}\nbaselines: {random: 1000000000}", "baselines.random must be"),
        ("grid: {seed: [0]}\njobs: 100000", "jobs must be"),
        ("grid: {seed: [0]}\nexecutor: {retries: -1}", "executor.retries must be"),
        ("overrides: [1]", "overrides must be a mapping"),
    ],
)  # fmt: skip
def test_a_hostile_ablation_file_is_one_line(tmp_path, capsys, text, message):
    path = tmp_path / "ablation.yaml"
    path.write_text(f"base: {TINY_CONFIG}\n{text}\n")
    code, err = ran_or_refused(capsys, ["ablate", "--config", path, f"out_dir={tmp_path / 'out'}"])
    assert code == 2 and message in err, err
    assert not (tmp_path / "out").exists()


# --- genotype strings, samplers, printing ----------------------------------------------------------------

DARTS = (
    "Genotype(normal=[('sep_conv_3x3', 0), ('sep_conv_3x3', 1), ('sep_conv_3x3', 0), ('sep_conv_3x3', 1), "
    "('sep_conv_3x3', 1), ('skip_connect', 0), ('skip_connect', 0), ('dil_conv_3x3', 2)], normal_concat={c}, "
    "reduce=[('max_pool_3x3', 0), ('max_pool_3x3', 1), ('skip_connect', 2), ('max_pool_3x3', 1), "
    "('max_pool_3x3', 0), ('skip_connect', 2), ('skip_connect', 2), ('max_pool_3x3', 1)], reduce_concat=[2, 3, 4, 5])"
)


def _concats(rng: random.Random) -> list[str]:
    """range() with generated integers from 0 to 10**40 (either sign, 1 to 4 arguments), and the concat as
    a set, a dict, a tuple, a string."""

    def big() -> int:
        return rng.choice([1, -1]) * rng.randrange(10 ** rng.randrange(0, 41) + 1)

    out = [f"range({', '.join(str(big()) for _ in range(rng.randrange(1, 5)))})" for _ in range(12)]
    return out + ["{2, 3, 4, 5}", "{2: 3, 4: 5}", "(2, 3, 4, 5)", "'2345'", "[2, 3, 4, 5][::-1]"]


@pytest.mark.parametrize("command", ["show", "info", "convert", "plot", "train"])
def test_generated_concats_never_crash_a_genotype_command(tmp_path, capsys, command):
    for i, concat in enumerate(_concats(random.Random(f"{SEED} {command}"))):
        path = tmp_path / f"g{i}.txt"
        path.write_text(DARTS.format(c=concat))
        argv = {"show": ["genotype", "show", path], "info": ["genotype", "info", path, "--layers", "3"],
                "convert": ["genotype", "convert", path, "--to", "json"],
                "plot": ["genotype", "plot", path, "-o", tmp_path / f"g{i}.png"],
                "train": ["train", "--genotype", path, *TRAIN[2:], f"out_dir={tmp_path / str(i)}"]}[command]  # fmt: skip
        code, err = ran_or_refused(capsys, argv)
        if concat.startswith("{") or concat.startswith("'"):
            assert code == 2, f"{concat} accepted as a concat"


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_the_gamma_sampler_refuses_non_finite_concentrations_instead_of_looping(bad):
    from nas.core.errors import UserError
    from nas.sampling.drnas import _marsaglia_tsang

    a = torch.tensor([1.5, bad, 3.0], dtype=torch.float64)
    with pytest.raises(UserError, match="not finite"):
        _marsaglia_tsang(a, torch.Generator().manual_seed(0))


def test_printable_strings_hold_no_control_character():
    rng = random.Random(SEED)
    controls = [chr(c) for c in (*range(32), *range(0x7F, 0xA0), 0x2028, 0x202E)]
    for _ in range(200):
        text = "".join(rng.choice(controls + ["a", "é", "\u4e2d", " "]) for _ in range(rng.randrange(1, 30)))
        shown = printable(text)
        assert shown.isprintable() and "\n" not in shown
        assert printable(text, 10) == shown or len(printable(text, 10)) == 10


def test_a_provenance_with_escape_sequences_is_shown_escaped(finished_search, tmp_path, capsys):
    data = json.loads((finished_search / "genotype.json").read_text())
    data["provenance"] |= {"run": "evil\x1b]0;title\x07\x1b[2J\nsecond line", "source": "\x9b31m"}
    (tmp_path / "g.json").write_text(json.dumps(data))
    assert main(["genotype", "show", str(tmp_path / "g.json")]) == 0
    out = capsys.readouterr().out
    assert all(line.isprintable() for line in out.splitlines()) and "second line" in out
    assert "\x1b" not in out and "\\x1b" in out
