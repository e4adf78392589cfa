"""The command line end to end, as a user runs it, and the one-line errors for bad input."""

import contextlib
import io
import json
import os
import subprocess
import sys

import pytest

from nas.arch.space import SPACES
from nas.cli import main
from nas.config import TrainRunConfig, load_config
from nas.train.recipe import default_recipe
from tests.conftest import ROOT, TINY_SEARCH, TINY_TRAIN


def nas(*args, check=True, process=False):
    """`nas ARGS` from the repository root: in this process (`main`, its stdout and stderr captured), or with
    `process=True` as its own `python -m nas` process (what a user runs; ~5 s of imports each, so only the
    end-to-end test pays for it). Returns a CompletedProcess either way."""
    args = [*map(str, args)]
    if process:
        proc = subprocess.run([sys.executable, "-m", "nas", *args], capture_output=True, text=True, cwd=ROOT)
    else:
        out, err, cwd = io.StringIO(), io.StringIO(), os.getcwd()
        os.chdir(ROOT)
        try:
            with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
                try:
                    code = main(args)
                except SystemExit as stop:  # argparse's usage errors
                    code = stop.code if isinstance(stop.code, int) else int(stop.code is not None)
        finally:
            os.chdir(cwd)
        proc = subprocess.CompletedProcess(["nas", *args], code, out.getvalue(), err.getvalue())
    if check:
        assert proc.returncode == 0, proc.stderr
    return proc


def test_search_genotype_train_end_to_end(tmp_path):
    run = tmp_path / "search"
    nas(
        "search",
        "--config",
        "configs/search/tiny_synthetic.yaml",
        *TINY_SEARCH,
        f"out_dir={run}",
        process=True,
    )
    genotype = json.loads((run / "genotype.json").read_text())
    assert genotype["space"] == "darts" and set(genotype["cells"]) == {"normal", "reduce"}

    shown = nas("genotype", "show", run / "genotype.json").stdout
    assert "normal cell" in shown and "node 5" in shown
    darts = nas("genotype", "convert", run / "genotype.json", "--to", "darts").stdout.strip()
    assert darts.startswith("Genotype(normal=[") and darts.endswith("reduce_concat=range(2, 6))")
    (tmp_path / "g.txt").write_text(darts)
    back = json.loads(nas("genotype", "convert", tmp_path / "g.txt", "--to", "json").stdout)
    assert back["cells"] == genotype["cells"]

    rederived = nas("derive", run).stdout
    assert "reduce cell" in rederived
    assert json.loads((run / "genotype.json").read_text())["cells"] == genotype["cells"]

    train = tmp_path / "train"
    nas("train", "--genotype", run / "genotype.json", *TINY_TRAIN, f"out_dir={train}", process=True)
    metrics = json.loads((train / "metrics.json").read_text())
    last_epoch = json.loads((train / "metrics.jsonl").read_text().splitlines()[-1])
    assert metrics["test_acc"] == last_epoch["test_acc"]  # the summary is the last evaluation, not a new one
    assert (
        metrics["params"] > 0
        and metrics["params_with_auxiliary"] > metrics["params"]
        and metrics["flops"] > 0
    )


def test_genotype_info_counts_darts_v2_exactly():
    out = nas("genotype", "info", "zoo:DARTS_V2", "--init-channels", "36", "--layers", "20").stdout
    assert "parameters (without auxiliary head): 3,349,342" in out


def test_genotype_info_defaults_to_each_spaces_standard_network():
    """NB201 at the benchmark's 16 channels x 5 cells per stage (the best cell: 1,288,506 parameters,
    NAS-Bench-201's count), no auxiliary-head line; DARTS at 36 x 20; a network the space lacks: exit 2."""
    nb201 = nas("genotype", "info", "zoo:NB201_BEST_CIFAR10").stdout
    assert "16 channels, 5 layers" in nb201 and "parameters: 1,288,506" in nb201 and "auxiliary" not in nb201
    assert "parameters (without auxiliary head): 3,349,342" in nas("genotype", "info", "zoo:DARTS_V2").stdout
    bad = nas("genotype", "info", "zoo:NB201_RESNET", "--network", "imagenet", check=False)
    assert bad.returncode == 2 and "no imagenet network" in bad.stderr


def test_train_resume_continues_to_the_end(tmp_path, tiny_train):
    out = tmp_path / "t"
    nas("train", "--genotype", "zoo:DARTS_V1", *tiny_train, f"out_dir={out}")
    nas("train", "--resume", out, "train.epochs=2")
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [0, 1]


@pytest.mark.parametrize("name", list(SPACES))
def test_each_space_names_a_retrain_recipe_of_its_standard_network(name):
    space = SPACES.get(name)
    cfg = load_config(TrainRunConfig, default_recipe(space))
    standard = next(iter(space.networks.values()))  # the first is the default
    assert (cfg.model.init_channels, cfg.model.layers) == (standard["init_channels"], standard["layers"])


@pytest.mark.parametrize(
    "genotype, recipe", [("zoo:DARTS_V1", "darts_cifar10"), ("zoo:NB201_BEST_CIFAR10", "nb201_cifar10")]
)
def test_train_without_config_retrains_by_its_spaces_recipe_and_says_so(tmp_path, capsys, genotype, recipe):
    out = tmp_path / "t"
    assert main(["train", "--genotype", genotype, *TINY_TRAIN, "model.layers=1", f"out_dir={out}"]) == 0
    said = [line for line in capsys.readouterr().err.splitlines() if "recipe" in line]
    assert len(said) == 1 and f"configs/train/{recipe}.yaml" in said[0]
    saved = load_config(TrainRunConfig, out / "config.yaml")
    assert saved == load_config(
        TrainRunConfig,
        ROOT / f"configs/train/{recipe}.yaml",
        [*TINY_TRAIN, "model.layers=1", f"out_dir={out}"],
    )


def test_train_without_config_for_a_space_without_a_recipe_is_refused(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(type(SPACES.get("nb201")), "train_recipe", None)
    err = _error(capsys, "train", "--genotype", "zoo:NB201_BEST_CIFAR10", f"out_dir={tmp_path / 't'}")
    assert "nas train needs --config FILE: space nb201 names no retrain recipe" in err
    assert not (tmp_path / "t").exists()


def _error(capsys, *argv):
    code = main([str(a) for a in argv])
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.count("\n") == 1 and "Traceback" not in err
    return err


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["bogus.key=1"], "bogus: unknown key (the top level takes: name, out_dir"),
        (["tau.start=0"], "tau.start must be finite and in [0.01, 10000]"),
        (["tau.end=-1"], "tau.end must be finite and in [0.01, 10000]"),
        (["tau.start=nan"], "tau.start must be finite"),
        (["data.batch_size=many"], "data.batch_size: Value 'many' of type 'str' could not be converted"),
        (["sampler.name=argmax"], "unknown sampler"),
        (["data.name=cifar10", "data.root=/nonexistent"], "CIFAR-10 not found"),
        (["space.name=nope"], "unknown search space"),
    ],
)
def test_bad_search_input_is_one_line_and_exit_2(tmp_path, capsys, overrides, message):
    out = tmp_path / "run"
    err = _error(
        capsys,
        "search",
        "--config",
        ROOT / "configs/search/tiny_synthetic.yaml",
        f"out_dir={out}",
        *overrides,
    )
    assert message in err
    assert not out.exists()  # nothing was created


def test_existing_run_is_never_overwritten(tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    (out / "precious.txt").write_text("keep")
    err = _error(capsys, "search", "--config", ROOT / "configs/search/tiny_synthetic.yaml", f"out_dir={out}")
    assert "not empty" in err
    assert (out / "precious.txt").read_text() == "keep"


def _genotype_json(normal_first_node, nodes=4):
    ok = [["sep_conv_3x3", 0], ["sep_conv_3x3", 1]]
    normal = [normal_first_node] + [ok] * (nodes - 1)
    cells = {"normal": {"nodes": normal, "concat": list(range(2, 2 + nodes))},
             "reduce": {"nodes": [ok] * nodes, "concat": list(range(2, 2 + nodes))}}  # fmt: skip
    return json.dumps({"format": "nas.genotype", "version": 1, "space": "darts", "cells": cells})


@pytest.mark.parametrize(
    "content, message",
    [
        ("not a genotype", "neither"),
        ("{broken", "not valid JSON"),
        (_genotype_json([["sep_conv_3x3", 0], ["warp_drive", 1]]), "unknown op 'warp_drive'"),
        (_genotype_json([["sep_conv_3x3", 0], ["sep_conv_3x3", 7]]), "input index 7 out of range"),
        (
            _genotype_json([["sep_conv_3x3", 0], ["sep_conv_3x3", 1]], nodes=2),
            "has 2 nodes, this space needs 4",
        ),
        (_genotype_json([["sep_conv_3x3", 0]]), "has 1 inputs"),
    ],
)
def test_bad_genotype_file_is_one_line_and_exit_2(tmp_path, capsys, content, message):
    path = tmp_path / "g.json"
    path.write_text(content)
    for argv in (["genotype", "show", path], ["train", "--genotype", path, f"out_dir={tmp_path / 't'}"]):
        assert message in _error(capsys, *argv)
    assert not (tmp_path / "t").exists()


def test_missing_files_and_bad_usage(tmp_path, capsys):
    assert "config file not found" in _error(capsys, "search", "--config", tmp_path / "nope.yaml")
    assert "genotype file not found" in _error(capsys, "genotype", "show", tmp_path / "nope.json")
    assert "unknown zoo genotype" in _error(capsys, "genotype", "show", "zoo:NOPE")
    assert "not a run directory" in _error(capsys, "search", "--resume", tmp_path)
    with pytest.raises(SystemExit) as info:
        main(["frobnicate"])
    assert info.value.code == 2


def test_nb201_search_round_trips_through_the_arch_string(tmp_path, tiny_train):
    run = tmp_path / "nb201"
    nas("search", "--config", "configs/search/tiny_synthetic.yaml", *TINY_SEARCH, "space.name=nb201",
        "space.layers=1", "search.epochs=1", f"out_dir={run}")  # fmt: skip
    arch = nas("genotype", "convert", run / "genotype.json", "--to", "nb201").stdout.strip()
    assert arch.count("+") == 2 and arch.count("~") == 6
    (tmp_path / "arch.txt").write_text(arch)
    back = json.loads(nas("genotype", "convert", tmp_path / "arch.txt", "--to", "json").stdout)
    assert back["cells"] == json.loads((run / "genotype.json").read_text())["cells"]
    nas(
        "train",
        "--genotype",
        tmp_path / "arch.txt",
        *tiny_train,
        "model.layers=1",
        f"out_dir={tmp_path / 't'}",
    )
    assert json.loads((tmp_path / "t" / "metrics.json").read_text())["params"] > 0


def test_genotype_list_and_plot(tmp_path):
    listed = nas("genotype", "list").stdout
    for name in ("DARTS_V1", "DARTS_V2", "GDAS_V1", "PC_DARTS", "SNAS", "NB201_BEST_CIFAR10", "NB201_RESNET"):
        assert f"zoo:{name}" in listed
    nas("genotype", "plot", "zoo:GDAS_V1", "-o", tmp_path / "cell.png")
    assert (tmp_path / "cell.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    nas("genotype", "plot", "zoo:NB201_BEST_CIFAR10", "-o", tmp_path / "cell.dot")
    assert "nor_conv_3x3" in (tmp_path / "cell.dot").read_text()


def test_inline_genotype_strings_are_accepted_wherever_a_genotype_is_named(capsys):
    nb201 = "|nor_conv_3x3~0|+|nor_conv_3x3~0|skip_connect~1|+|none~0|nor_conv_1x1~1|avg_pool_3x3~2|"
    assert main(["genotype", "show", nb201]) == 0
    assert "nor_conv_1x1" in capsys.readouterr().out
    assert main(["genotype", "convert", nb201, "--to", "nb201"]) == 0
    assert capsys.readouterr().out.strip() == nb201
    assert main(["genotype", "show", "|nor_conv_3x3~0|+|bogus~0|none~1|"]) == 2  # checked like a file
    assert len(capsys.readouterr().err.strip().splitlines()) == 1
