"""`nas export`: a retrained network as .pt2 / .onnx / .safetensors, reloaded from the file alone and
compared with the eager network; metadata that says what the file is; one-line refusals."""

from __future__ import annotations

import importlib.util
import json

import pytest
import torch

from nas.arch.space import SPACES, resolve_genotype
from nas.cli import main
from nas.config import TrainRunConfig, load_config, to_dict
from nas.run.checkpoint import CHECKPOINT
from nas.train import export

RUN = [  # the ImageNet network on synthetic 32 x 32 images, one epoch
    "progress=false",
    "data.name=synthetic",
    "data.batch_size=16",
    "data.synthetic.train_size=32",
    "data.synthetic.test_size=16",
    "data.synthetic.classes=5",
    "model.network=imagenet",
    "model.init_channels=8",
    "model.layers=3",
    "train.epochs=1",
]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("export") / "run"
    assert main(["train", "--genotype", "zoo:DARTS_V2", *RUN, f"out_dir={out}"]) == 0
    return out


def eager_logits(run_dir, x: torch.Tensor) -> torch.Tensor:
    """The trained network as `nas train` builds it, with the checkpoint's weights, in eval mode."""
    cfg = load_config(TrainRunConfig, run_dir / "config.yaml")
    genotype = resolve_genotype(str(run_dir / "genotype.json"))
    net = SPACES.get("darts").build_network(genotype, cfg.model, 5, 3)
    net.load_state_dict(torch.load(run_dir / CHECKPOINT, weights_only=False)["model"])
    with torch.no_grad():
        return net.eval()(x)[0]


def _export(run_dir, path, capsys) -> float:
    assert main(["export", str(run_dir), "-o", str(path)]) == 0
    out = capsys.readouterr().out
    assert f"wrote {path}: darts imagenet network, 5 classes, input 3x32x32" in out
    return float(out.split("on a batch of 4: ")[1].split()[0])


@pytest.mark.parametrize("suffix", [".pt2", ".safetensors"])
def test_export_reloads_from_the_file_alone_and_matches_the_eager_network(run_dir, tmp_path, capsys, suffix):
    path = tmp_path / f"model{suffix}"
    assert _export(run_dir, path, capsys) == 0.0  # the same kernels on the same CPU: bitwise
    run, meta = export.load(path)
    x = torch.randn(7, 3, 32, 32)  # another batch size than the check's: the batch dimension is dynamic
    with torch.no_grad():
        assert torch.allclose(run(x), eager_logits(run_dir, x), rtol=1e-5, atol=1e-6)
    assert meta["format"] == "nas-export/1" and export.read_metadata(path) == meta
    assert meta["genotype"]["cells"] == json.loads((run_dir / "genotype.json").read_text())["cells"]
    assert meta["config"] == to_dict(load_config(TrainRunConfig, run_dir / "config.yaml"))
    data = meta["data"]
    assert (data["num_classes"], data["in_channels"], data["image_size"], data["mean"]) == (
        5,
        3,
        32,
        [0.5] * 3,
    )
    assert meta["epochs_trained"] == 1 and 0 <= meta["metrics"]["test_acc"] <= 100


def test_onnx_export_runs_in_onnxruntime_and_matches(run_dir, tmp_path, capsys):
    for module in ("onnx", "onnxscript", "onnxruntime"):
        if importlib.util.find_spec(module) is None:
            pytest.skip(
                f"{module} is not installed (an optional extra: pip install onnx onnxscript onnxruntime)"
            )
    path = tmp_path / "model.onnx"
    assert _export(run_dir, path, capsys) < 1e-4
    run, meta = export.load(path)
    x = torch.randn(3, 3, 32, 32)
    assert torch.allclose(run(x), eager_logits(run_dir, x), rtol=1e-4, atol=1e-5)
    assert meta["config"]["model"]["network"] == "imagenet"


def test_refusals_are_one_line(run_dir, tmp_path, capsys, monkeypatch):
    def error(*args) -> str:
        assert main(["export", *map(str, args)]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1
        return err

    assert "must end in .pt2, .onnx, .safetensors" in error(run_dir, "-o", tmp_path / "model.pt")
    assert "not a run directory" in error(tmp_path, "-o", tmp_path / "m.pt2")
    search = tmp_path / "search"
    search.mkdir()
    (search / "config.yaml").write_text("seed: 0\n")
    (search / "alphas.json").write_text("{}")
    assert "not a retrain run" in error(search, "-o", tmp_path / "m.pt2")
    monkeypatch.setattr(importlib.util, "find_spec", lambda m: None if m == "onnxscript" else object())
    assert "needs onnxscript: pip install onnx onnxscript onnxruntime" in error(
        run_dir, "-o", tmp_path / "m.onnx"
    )
    assert not list(tmp_path.glob("m*"))
