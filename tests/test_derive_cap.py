"""The derive cap (`search.derive_cap`, `nas derive --derive-cap N`; P-DARTS' limit on skip connections): the
derived first cell holds at most N capped edges, and is the derive rule's best cell among those that do."""

import itertools
import json
import shutil

import pytest
import torch

import search_spaces  # noqa: F401
from nas.arch.diagnostics import parameter_free_ops
from nas.arch.space import SPACES, exclude_ops
from nas.cli import main
from nas.config import SearchRunConfig, load_config
from nas.core.errors import UserError
from nas.core.rundir import GENOTYPE_FILE
from nas.cost.budget import derive_capped
from tests.conftest import ROOT, TINY_SEARCH

NB201 = SPACES.get("nb201")
DARTS = SPACES.get("darts")


def _alphas(space, seed: int, edges: int) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {ct: 2 * torch.randn(edges, len(space.primitives), generator=g) for ct in space.cell_types}


def _score(space, genotype, log_probs: torch.Tensor) -> float:
    """The derive rule's score of an NB201 cell: its ops' summed log probabilities."""
    weights = space.one_hot(genotype)["cell"].double()  # (6, K) one-hot
    return float(log_probs.where(weights > 0, torch.zeros_like(log_probs)).sum())


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("max_ops", [0, 1, 2, 3])
def test_nb201_capped_cell_is_the_best_cell_within_the_cap_by_enumeration(seed, max_ops):
    alphas = exclude_ops(_alphas(NB201, seed, 6), NB201.primitives, ["none"] if seed % 2 else [])
    ops = sorted(NB201.parameter_free)
    genotype, before = derive_capped(NB201, alphas, None, ops, max_ops)
    assert before == parameter_free_ops(NB201.derive(alphas), "cell", frozenset(ops))
    assert parameter_free_ops(genotype, "cell", frozenset(ops)) <= max_ops
    log_probs = torch.log_softmax(alphas["cell"].double(), dim=-1)  # (6, K)
    capped = [NB201.primitives.index(op) for op in ops]
    best = max(
        sum(float(log_probs[e, k]) for e, k in enumerate(cell))
        for cell in itertools.product(range(len(NB201.primitives)), repeat=6)
        if sum(k in capped for k in cell) <= max_ops
    )
    assert _score(NB201, genotype, log_probs) == pytest.approx(best, abs=1e-9)
    if before <= max_ops:  # within the cap: derive's own cell, untouched
        assert genotype.cells == NB201.derive(alphas).cells


@pytest.mark.parametrize("seed", range(4))
def test_darts_cap_touches_only_the_normal_cell_and_keeps_derive_rule_structure(seed):
    alphas = _alphas(DARTS, seed, 14)
    for ct in alphas:  # skip connections dominate both cells
        alphas[ct][:, DARTS.primitives.index("skip_connect")] += 3.0
    plain = DARTS.derive(alphas)
    genotype, before = derive_capped(DARTS, alphas, None, ["skip_connect"], 2)
    assert before == parameter_free_ops(plain, "normal", frozenset(["skip_connect"])) > 2
    assert parameter_free_ops(genotype, "normal", frozenset(["skip_connect"])) == 2  # drops only the excess
    assert genotype.cells["reduce"] == plain.cells["reduce"]
    DARTS.validate(genotype)  # two inputs per node, no `none`
    for node in genotype.cells["normal"].nodes:
        assert all(op != "none" for op, _ in node)


def test_a_cap_no_cell_can_keep_is_one_line():
    alphas = exclude_ops(_alphas(NB201, 0, 6), NB201.primitives, ["nor_conv_1x1", "nor_conv_3x3"])
    with pytest.raises(UserError, match="no nb201 cell of type 'cell' has at most 0 edges"):
        derive_capped(NB201, alphas, None, sorted(NB201.parameter_free), 0)


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["search.derive_cap.max_ops=-1"], "search.derive_cap.max_ops"),
        (["search.derive_cap.max_ops=1", "search.derive_cap.ops=[conv_9x9]"], "is not an op of the space"),
        (["search.derive_cap.ops=[skip_connect]"], "needs search.derive_cap.max_ops"),
        (
            ["space.name=nb201", "search.derive_cap.max_ops=0", "search.derive_exclude=[nor_conv_1x1]",
             "search.derive_cap.ops=[none,skip_connect,avg_pool_3x3,nor_conv_3x3]"],
            "leaves derive nothing to pick",
        ),
    ],
)  # fmt: skip
def test_bad_derive_cap_is_refused_at_load(overrides, message):
    with pytest.raises(UserError, match=message):
        load_config(SearchRunConfig, None, [*TINY_SEARCH, *overrides])


def test_search_and_nas_derive_apply_the_cap_and_record_it(finished_search, tmp_path, capsys):
    capped = tmp_path / "capped"
    config = str(ROOT / "configs/search/tiny_synthetic.yaml")
    assert main(["search", "--config", config, *TINY_SEARCH, "search.epochs=1", "search.derive_cap.max_ops=0",
                 f"out_dir={capped}"]) == 0  # fmt: skip
    genotype = json.loads((capped / GENOTYPE_FILE).read_text())
    assert genotype["provenance"]["derive_cap"]["max_ops"] == 0
    assert all(op not in DARTS.parameter_free for op, _ in _edges(genotype, "normal"))
    # the cap acts on derive only: the search trains exactly as without it (so re-deriving a finished run
    # under a cap gives what a search with the cap would have given)
    plain = tmp_path / "plain"
    assert main(["search", "--config", config, *TINY_SEARCH, "search.epochs=1", f"out_dir={plain}"]) == 0
    assert (
        json.loads((plain / "alphas.json").read_text())["alphas"]
        == json.loads((capped / "alphas.json").read_text())["alphas"]
    )

    run = tmp_path / "run"
    shutil.copytree(finished_search, run)
    uncapped = json.loads((run / GENOTYPE_FILE).read_text())  # the search's own derive, from the same alphas
    before = sum(op in DARTS.parameter_free for op, _ in _edges(uncapped, "normal"))
    assert main(["derive", str(run), "--derive-cap", "0"]) == 0
    genotype = json.loads((run / GENOTYPE_FILE).read_text())
    assert genotype["provenance"]["derive_cap"] == {
        "max_ops": 0,
        "ops": sorted(DARTS.parameter_free),
        "before": before,
    }
    assert all(op not in DARTS.parameter_free for op, _ in _edges(genotype, "normal"))
    before = (run / GENOTYPE_FILE).read_bytes()
    for bad in (["--derive-cap", "-1"], ["--derive-cap", "0", "--max-params", "1e9"]):
        assert main(["derive", str(run), *bad]) == 2
        assert (run / GENOTYPE_FILE).read_bytes() == before  # nothing rewritten
    capsys.readouterr()


def _edges(genotype: dict, cell: str) -> list[tuple[str, int]]:
    return [(op, j) for node in genotype["cells"][cell]["nodes"] for op, j in node]
