"""Per-epoch architecture diagnostics: entropy, parameter-free op count, genotype string, heatmap and
TensorBoard logging."""

from __future__ import annotations

import math

import pytest
import torch

import search_spaces  # noqa: F401  (registers the spaces)
from nas.arch import diagnostics
from nas.arch.space import SPACES
from nas.run.runlog import RunLogger
from search_spaces import zoo
from search_spaces.darts.formats import from_darts_string
from search_spaces.nb201.formats import from_nb201_string


def random_alphas(space, edges: int = 14, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {c: torch.randn(edges, len(space.primitives), generator=g) for c in space.cell_types}


@pytest.mark.parametrize("k", [2, 5, 8])
def test_entropy_is_ln_k_for_uniform_and_zero_for_decided(k):
    assert diagnostics.entropy(torch.zeros(6, k)) == pytest.approx(math.log(k))
    decided = torch.full((6, k), -1e4)
    decided[:, 0] = 1e4
    assert diagnostics.entropy(decided) == pytest.approx(0.0, abs=1e-12)


def test_entropy_ignores_a_shift_per_edge_and_falls_as_alpha_sharpens():
    alpha = torch.randn(10, 8, generator=torch.Generator().manual_seed(1))
    assert diagnostics.entropy(alpha + torch.arange(10.0)[:, None]) == pytest.approx(
        diagnostics.entropy(alpha)
    )
    values = [diagnostics.entropy(alpha * s) for s in (0.0, 0.5, 1.0, 2.0, 8.0)]
    assert values == sorted(values, reverse=True) and values[0] == pytest.approx(math.log(8))


@pytest.mark.parametrize(
    "space_name, expected",
    [
        ("darts", {"none", "skip_connect", "max_pool_3x3", "avg_pool_3x3"}),
        ("nb201", {"none", "skip_connect", "avg_pool_3x3"}),
    ],
)
def test_each_space_knows_its_weightless_ops(space_name, expected):
    """Measured from the ops as built, so a new space or op needs no list kept in the engine."""
    assert SPACES.get(space_name).parameter_free == expected


@pytest.mark.parametrize(
    "name, normal, reduce",
    # counted by hand from the papers' genotypes: DARTS_V2's normal cell has two skips, its reduce cell
    # is all max-pooling and skips; GDAS' normal cell has four skips, its reduce cell only convolutions
    [("DARTS_V1", 3, 8), ("DARTS_V2", 2, 8), ("GDAS_V1", 4, 0), ("PC_DARTS", 2, 1)],
)
def test_parameter_free_count_matches_the_published_cells(name, normal, reduce):
    genotype, free = zoo.get(name), SPACES.get("darts").parameter_free
    assert diagnostics.parameter_free_ops(genotype, "normal", free) == normal
    assert diagnostics.parameter_free_ops(genotype, "reduce", free) == reduce


@pytest.mark.parametrize("space_name", ["darts", "nb201"])
def test_epoch_diagnostics_names_and_round_trips_the_genotype(space_name):
    space = SPACES.get(space_name)
    edges = 14 if space_name == "darts" else 6
    alphas = random_alphas(space, edges)
    genotype = space.derive(alphas)
    out = diagnostics.epoch_diagnostics(alphas, genotype, space)
    first = space.cell_types[0]
    assert set(out) == {f"entropy_{c}" for c in space.cell_types} | {f"param_free_{first}", "genotype"}
    assert out[f"param_free_{first}"] == diagnostics.parameter_free_ops(genotype, first, space.parameter_free)
    for c in space.cell_types:
        assert 0 < out[f"entropy_{c}"] < math.log(len(space.primitives))
    parse = from_nb201_string if space_name == "nb201" else from_darts_string
    assert parse(out["genotype"]).cells == genotype.cells


def test_probabilities_are_rows_that_sum_to_one():
    space = SPACES.get("darts")
    probs = diagnostics.probabilities(random_alphas(space), space.primitives)
    assert probs["primitives"] == list(space.primitives)
    for cell in space.cell_types:
        assert torch.allclose(
            torch.tensor(probs[cell], dtype=torch.float64).sum(-1), torch.ones(14, dtype=torch.float64)
        )


def test_heatmap_has_one_edges_x_ops_panel_per_cell_type():
    space = SPACES.get("darts")
    alphas = random_alphas(space)
    fig = diagnostics.heatmap_figure(alphas, space.primitives, "epoch 3")
    panels = [ax for ax in fig.axes if ax.images]
    assert [ax.get_title() for ax in panels] == [f"{c} epoch 3" for c in space.cell_types]
    for ax, cell in zip(panels, space.cell_types):
        image = torch.as_tensor(ax.images[0].get_array())
        assert image.shape == (14, len(space.primitives))
        assert torch.allclose(image.double(), torch.softmax(alphas[cell].double(), -1), atol=1e-6)
        assert [t.get_text() for t in ax.get_xticklabels()] == list(space.primitives)


def test_log_alphas_writes_scalars_and_an_image_only_when_enabled(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    space = SPACES.get("darts")
    off = RunLogger(tmp_path / "off", enabled=False)
    diagnostics.log_alphas(off, random_alphas(space), space.primitives, 0)
    assert not (tmp_path / "off").exists()
    logger = RunLogger(tmp_path / "on")
    diagnostics.log_alphas(logger, random_alphas(space), space.primitives, 2)
    logger.close()
    events = EventAccumulator(str(tmp_path / "on" / "tb"))
    events.Reload()
    assert events.Tags()["images"] == ["alpha/heatmap"]
    scalars = events.Tags()["scalars"]
    assert len(scalars) == len(space.cell_types) * 14 * len(space.primitives)
    assert "alpha_normal/edge00/skip_connect" in scalars
