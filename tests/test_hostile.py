"""Hostile but fair input through the command line: every case exits 2 with one line and no traceback,
and leaves every file as it was. A pickle payload in a checkpoint is refused and never runs."""

import hashlib
import json
import os
import pickle
import shutil
from pathlib import Path

import pytest
import torch
import yaml

from nas.arch.genotype import save_genotype
from nas.cli import main
from nas.config import TrainRunConfig, load_config, to_yaml
from nas.run.checkpoint import CHECKPOINT
from search_spaces import zoo
from tests.conftest import ROOT, TINY_SEARCH, TINY_TRAIN

TINY_CONFIG = str(ROOT / "configs/search/tiny_synthetic.yaml")
DARTS = (
    "Genotype(normal=[('sep_conv_3x3', 0), ('sep_conv_3x3', 1), ('sep_conv_3x3', 0), ('sep_conv_3x3', 1), "
    "('sep_conv_3x3', 1), ('skip_connect', 0), ('skip_connect', 0), ('dil_conv_3x3', 2)], normal_concat={n}, "
    "reduce=[('max_pool_3x3', 0), ('max_pool_3x3', 1), ('skip_connect', 2), ('max_pool_3x3', 1), "
    "('max_pool_3x3', 0), ('skip_connect', 2), ('skip_connect', 2), ('max_pool_3x3', 1)], reduce_concat=[2, 3, 4, 5])"
)
NB201 = "|nor_conv_3x3~0|+|nor_conv_3x3~{j}|skip_connect~1|+|none~0|none~1|{op}~2|"
GENOTYPES = {  # file name: (content, what the one line says)
    "concat_bomb.txt": (DARTS.format(n="range(0, 100000000)"), "must name 1 to"),
    "concat_empty.txt": (DARTS.format(n="[]"), "concat must list 1 to"),
    "concat_repeated.txt": (DARTS.format(n="[2, 2, 3, 4]"), "repeats a state"),
    "fractional_input.txt": (
        DARTS.format(n="[2, 3, 4, 5]").replace("('sep_conv_3x3', 1)", "('sep_conv_3x3', 1.5)", 1),
        "1.5 is not an integer",
    ),
    "nb201_superscript.txt": (NB201.format(j="\u00b2", op="none"), "bad edge"),
    "nb201_nul.txt": (NB201.format(j="0", op="no\x00ne"), "is not an op name"),
    "huge_int.json": (
        '{"format": "nas.genotype", "version": 1, "space": "darts", "cells": {"normal": '
        '{"nodes": [[["none", ' + "9" * 5000 + "]]], " + '"concat": [2]}}}',
        "beyond any genotype",
    ),
    "deep.json": ('{"cells": ' + "[" * 100000 + "]" * 100000 + "}", "beyond any genotype"),
    "too_big.txt": ("Genotype(" + " " * (1 << 20), "a genotype is at most"),
}


class Evil:
    """A pickle payload: unpickling it with weights_only=False would create the marker file."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (exec, (f"open({str(self.marker)!r}, 'w').write('pwned')",))


def _snapshot(root: Path) -> dict[str, str]:
    """Every path under root with a digest of its bytes (directories: '-')."""
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "-"
        for p in sorted(root.rglob("*"))
    }


def _refused(capsys, *argv) -> str:
    code = main([str(a) for a in argv])
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.count("\n") == 1 and err.startswith("nas: error: ") and "Traceback" not in err, err
    return err


@pytest.fixture(scope="module")
def world(tmp_path_factory, finished_search) -> Path:
    """A finished one-epoch search run and two copies with edited configs, bad genotype files, a corrupt
    dataset, a file and a directory."""
    root = tmp_path_factory.mktemp("world")
    shutil.copytree(finished_search, root / "run")
    mismatched = root / "mismatched"
    shutil.copytree(root / "run", mismatched)
    cfg = yaml.safe_load((mismatched / "config.yaml").read_text())
    cfg["space"]["init_channels"] = 6  # the checkpoint holds a 4-channel supernet
    (mismatched / "config.yaml").write_text(yaml.safe_dump(cfg))
    other = root / "otherspace"
    shutil.copytree(root / "run", other)
    cfg["space"] = {"name": "nb201", "init_channels": 4, "layers": 1}  # its alphas are DARTS'
    (other / "config.yaml").write_text(yaml.safe_dump(cfg))
    for name, (text, _) in GENOTYPES.items():
        (root / name).write_text(text)
    (root / "fm").mkdir()
    for stem in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"):
        (root / "fm" / f"{stem}.gz").write_bytes(b"\x1f\x8b\x08\x00" + b"not really gzip")
    (root / "a_file").write_text("x")
    (root / "adir").mkdir()
    return root


CASES = {
    # configs: every numeric key against its range, NaN anywhere
    "negative momentum": (["search", "search.weights.momentum=-0.9"], "search.weights.momentum must be"),
    "negative weight decay": (
        ["search", "search.arch.weight_decay=-1e-3"],
        "search.arch.weight_decay must be",
    ),
    "adam beta 1": (
        ["search", "search.arch.betas=[0.5,1.0]"],
        "search.arch.betas must be finite and in [0, 1)",
    ),
    "zero nodes": (["search", "space.nodes=0"], "space.nodes must be"),
    "zero channels": (["search", "space.init_channels=0"], "space.init_channels must be"),
    "a million layers": (["search", "space.layers=1000000"], "space.layers must be"),
    "nan grad clip": (["search", "search.weights.grad_clip=nan"], "search.weights.grad_clip must be finite"),
    "negative grad clip": (["search", "search.weights.grad_clip=-1"], "grad_clip must be finite and in [0, "),
    "negative seed": (["search", "seed=-1"], "seed must be"),
    "infinite tau": (["search", "tau.start=inf"], "tau.start must be finite"),
    "nesterov without momentum": (
        ["search", "search.weights.nesterov=true", "search.weights.momentum=0"],
        "nesterov",
    ),
    "label smoothing 1": (["train", "train.label_smoothing=1.0"], "train.label_smoothing must be"),
    "nan auxiliary weight": (
        ["train", "model.auxiliary_weight=nan"],
        "model.auxiliary_weight must be finite",
    ),
    "no cells": (["train", "model.layers=0"], "model.layers must be"),
    "negative train grad clip": (["train", "train.grad_clip=-5"], "train.grad_clip must be"),
    # resources: refused before anything is allocated, saying how much it would take
    "100k channels": (
        ["search", "space.init_channels=100000"],
        "for its parameters and their training state alone",
    ),
    "10M synthetic 4096 px images": (
        ["search", "data.synthetic.image_size=4096", "data.synthetic.train_size=10000000"],
        "data.synthetic (10,000,000 images of 3x4096x4096) needs",
    ),
    "info layers -5": (["info", "--layers", "-5"], "--layers must be in [1, 100]"),
    "info layers 100000": (["info", "--layers", "100000"], "--layers must be"),
    "info 100k channels": (
        ["info", "--init-channels", "100000"],
        "for its parameters and their training state alone",
    ),
    "info zero classes": (["info", "--classes", "0"], "--classes must be"),
    # genotypes: bounded, exact, in every format
    **{f"genotype {name}": (["show", "{w}/" + name], message) for name, (_, message) in GENOTYPES.items()},
    # paths
    "-o a directory": (["convert", "zoo:DARTS_V2", "--to", "darts", "-o", "{w}/adir"], "is a directory"),
    "-o under a file": (["convert", "zoo:DARTS_V2", "--to", "json", "-o", "{w}/a_file/g.json"], "is a file"),
    "plot to a directory": (["plot", "zoo:DARTS_V2", "-o", "{w}/adir"], "is a directory"),
    "--config a directory": (["search_raw", "--config", "{w}/adir"], "is a directory"),
    "out_dir under a file": (["search", "out_dir={w}/a_file/run"], "out_dir"),
    "out_dir is a file": (["search", "out_dir={w}/a_file"], "not a directory"),
    "corrupt dataset": (["search", "data.name=fashion_mnist", "data.root={w}/fm"], "cannot read"),
    # runs: never reused, resumed into something else, or restored from another config
    "new run over a finished one": (["search", "out_dir={w}/run"], "holds a"),
    "resume with another batch size": (
        ["search_raw", "--resume", "{w}/run", "data.batch_size=8"],
        "data.batch_size",
    ),
    "resume into another space": (["search_raw", "--resume", "{w}/run", "space.name=nb201"], "space.name"),
    "resume elsewhere": (["search_raw", "--resume", "{w}/run", "out_dir={w}/other"], "out_dir"),
    "checkpoint of another config": (
        ["search_raw", "--resume", "{w}/mismatched"],
        "does not match this run's config",
    ),
    "derive from another space": (["derive", "{w}/otherspace"], "does not match this run's config"),
}


def _argv(kind: list[str], world: Path) -> list[str]:
    args = [a.replace("{w}", str(world)) for a in kind[1:]]
    out = f"out_dir={world / 'new'}"
    return {
        "search": ["search", "--config", TINY_CONFIG, *TINY_SEARCH, out, *args],
        "search_raw": ["search", *args],
        "train": ["train", "--genotype", "zoo:DARTS_V1", *TINY_TRAIN, out, *args],
        "info": ["genotype", "info", "zoo:DARTS_V2", *args],
        "show": ["genotype", "show", *args],
        "convert": ["genotype", "convert", *args],
        "plot": ["genotype", "plot", *args],
        "derive": ["derive", *args],
    }[kind[0]]


@pytest.mark.parametrize("case", list(CASES))
def test_hostile_input_is_one_line_exit_2_and_changes_nothing(world, capsys, case):
    kind, message = CASES[case]
    before = _snapshot(world)
    err = _refused(capsys, *_argv(kind, world))
    assert message in err
    assert _snapshot(world) == before


def _payload_run(world: Path, tmp: Path, command: str) -> tuple[Path, Path]:
    """A copy of a run directory whose last.pt is a pickle payload; returns (run dir, marker path)."""
    run, marker = tmp / command, tmp / "pwned"
    if command == "train":
        run.mkdir()
        cfg = load_config(TrainRunConfig, None, [*TINY_TRAIN, f"out_dir={run}"])
        (run / "config.yaml").write_text(to_yaml(cfg))
        save_genotype(run / "genotype.json", zoo.get("DARTS_V1"))
        (run / CHECKPOINT).parent.mkdir()
    else:
        shutil.copytree(world / "run", run)
    torch.save({"epoch": 1, "model": Evil(marker)}, run / CHECKPOINT)
    return run, marker


@pytest.mark.parametrize("command", ["search", "derive", "train"])
def test_a_pickle_payload_in_a_checkpoint_never_runs(world, tmp_path, capsys, command):
    run, marker = _payload_run(world, tmp_path, command)
    before = _snapshot(run)
    argv = ["derive", run] if command == "derive" else [command, "--resume", run]
    err = _refused(capsys, *argv)
    assert "refusing checkpoint" in err and "the global 'exec'" in err
    assert not marker.exists(), "the payload ran"
    assert _snapshot(run) == before
    with pytest.raises(pickle.UnpicklingError):
        torch.load(run / CHECKPOINT, weights_only=True)
    torch.load(run / CHECKPOINT, weights_only=False)  # the payload is real: an unrestricted load runs it
    assert marker.read_text() == "pwned"
    os.remove(marker)


def test_checkpoints_hold_only_tensors_and_plain_values(world):
    """What makes weights_only loading possible: no global outside torch's own in a real checkpoint."""
    from torch.serialization import get_unsafe_globals_in_checkpoint

    assert get_unsafe_globals_in_checkpoint(world / "run" / CHECKPOINT) == []
    assert json.loads((world / "run" / "metrics.jsonl").read_text().splitlines()[0])["epoch"] == 0
