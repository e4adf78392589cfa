"""`nas rank`: a search run's supernet scores given genotypes on its architecture split (the
part of the training set alpha was trained on)."""

from __future__ import annotations

import json

import pytest

from nas.cli import main


@pytest.fixture(scope="module")
def nb201_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("rank") / "search"
    args = ["search", "--config", "configs/search/tiny_synthetic.yaml", "space.name=nb201", "space.layers=1",
            "search.epochs=1", f"out_dir={out}"]  # fmt: skip
    assert main(args) == 0
    return out


def test_rank_scores_each_genotype_deterministically(nb201_run, tmp_path, capsys):
    specs = ["zoo:NB201_BEST_CIFAR10", "zoo:NB201_RESNET", str(nb201_run)]
    assert main(["rank", str(nb201_run), *specs, "-o", str(tmp_path / "a.json")]) == 0
    assert main(["rank", str(nb201_run), *specs, "-o", str(tmp_path / "b.json")]) == 0
    first = json.loads((tmp_path / "a.json").read_text())
    assert [r["genotype"] for r in first["results"]] == specs
    assert first == json.loads((tmp_path / "b.json").read_text())
    printed = capsys.readouterr().out.splitlines()
    assert len(printed) == 6 and printed[0].endswith("zoo:NB201_BEST_CIFAR10")


@pytest.mark.parametrize(
    "args, message",
    [
        (["zoo:DARTS_V2"], "cannot run in a 'nb201' supernet"),
        (["zoo:NOPE"], "unknown zoo genotype 'NOPE'"),
        (["missing.json"], "genotype file not found"),
    ],
)
def test_rank_refuses_bad_input_in_one_line(nb201_run, capsys, args, message):
    assert main(["rank", str(nb201_run), *args]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1


def test_rank_needs_a_search_run(tmp_path, capsys):
    assert main(["rank", str(tmp_path), "zoo:NB201_BEST_CIFAR10"]) == 2
    assert "is not a run directory" in capsys.readouterr().err
