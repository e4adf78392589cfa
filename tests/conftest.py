"""Shared fixtures: tiny configs that make a search or a retrain take seconds on a CPU."""

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TINY_SEARCH = [
    "progress=false",
    "data.name=synthetic",
    "data.batch_size=16",
    "data.synthetic.train_size=128",
    "data.synthetic.test_size=64",
    "data.synthetic.image_size=16",
    "data.synthetic.classes=4",
    "space.init_channels=4",
    "space.layers=3",
    "search.epochs=2",
]
TINY_TRAIN = [
    "progress=false",
    "data.name=synthetic",
    "data.batch_size=16",
    "data.synthetic.train_size=64",
    "data.synthetic.test_size=64",
    "data.synthetic.image_size=16",
    "data.synthetic.classes=4",
    "model.init_channels=4",
    "model.layers=3",
    "train.epochs=1",
]


def pytest_configure(config):
    """Under pytest-xdist (pyproject's `-n auto`: one worker per core, at most 4) each worker and the runs it
    starts use one thread: the intra-op threads of two workers on two cores would spin against each other."""
    if os.environ.get("PYTEST_XDIST_WORKER"):
        import torch

        os.environ["OMP_NUM_THREADS"] = "1"
        torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _warnings_said_again():
    """`nas.core.errors.warn` says each warning once per process: once per test here, so a test sees its own."""
    from nas.core import errors

    errors._warned.clear()


@pytest.fixture
def tiny_search():
    return list(TINY_SEARCH)


@pytest.fixture
def tiny_train():
    return list(TINY_TRAIN)


@pytest.fixture(scope="session")
def finished_search(tmp_path_factory) -> Path:
    """A finished one-epoch tiny search run directory (with its checkpoint); copy it before changing it."""
    from nas.cli import main

    out = tmp_path_factory.mktemp("finished") / "run"
    config = str(ROOT / "configs/search/tiny_synthetic.yaml")
    assert main(["search", "--config", config, *TINY_SEARCH, "search.epochs=1", f"out_dir={out}"]) == 0
    return out
