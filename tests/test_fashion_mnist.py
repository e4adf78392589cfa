"""Real data: a tiny search and retrain on Fashion-MNIST reach test accuracy far above chance (10%).

Skipped with a reason when the idx files are absent (Debian: `apt-get install dataset-fashion-mnist`).
"""

import json
import math
from pathlib import Path

import pytest

from nas.cli import main
from tests.conftest import ROOT

SYSTEM = Path("/usr/share/datasets/fashion-mnist")
pytestmark = pytest.mark.skipif(
    not (SYSTEM / "train-images-idx3-ubyte.gz").is_file(),
    reason="Fashion-MNIST not installed (apt-get install dataset-fashion-mnist)",
)
COMMON = ["progress=false", "data.name=fashion_mnist", "data.batch_size=64", "data.crop_padding=2"]


def test_search_then_retrain_on_fashion_mnist(tmp_path):
    search = tmp_path / "search"
    code = main(["search", "--config", str(ROOT / "configs/search/gdas_fashion_mnist.yaml"), *COMMON, f"out_dir={search}",
                 "data.subset=1200", "space.init_channels=4", "space.layers=3", "search.epochs=2"])  # fmt: skip
    assert code == 0
    rows = [json.loads(line) for line in (search / "metrics.jsonl").read_text().splitlines()]
    assert rows[-1]["val_loss"] < math.log(10) < rows[0]["val_loss"] + 0.5  # better than a uniform guess

    train = tmp_path / "train"
    code = main(["train", "--genotype", str(search), "--config", str(ROOT / "configs/train/fashion_mnist_quick.yaml"), *COMMON,
                 f"out_dir={train}", "data.subset=4000", "model.init_channels=8", "model.layers=3",
                 "train.epochs=2"])  # fmt: skip
    assert code == 0
    metrics = json.loads((train / "metrics.json").read_text())
    assert metrics["dataset"] == "fashion_mnist"
    assert metrics["test_acc"] > 60.0, metrics  # chance is 10%
