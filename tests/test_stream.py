"""Streaming image folders (`nas.data.stream`): batches that depend on (seed, epoch) only, per-rank shards,
one-line errors, and an ImageNet-style retrain that streams, is killed mid-epoch and resumes bitwise."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch

from nas.arch.space import SPACES, resolve_genotype
from nas.cli import main
from nas.config import DataConfig, TrainRunConfig, load_config
from nas.core.errors import UserError
from nas.data.image_folder import list_split
from nas.data.loaders import load_dataset, train_loaders
from nas.data.stream import StreamLoader, wants_stream
from nas.train.trainer import Trainer
from tests.conftest import ROOT
from tests.test_image_folder import CIFAR_JPEG

CLASSES = {"ant": 20, "bee": 20, "cow": 24}  # 64 training images of 256 x 256


def _write_jpeg(path: Path, label: int, seed: int) -> None:
    from PIL import Image

    g = torch.Generator().manual_seed(seed)
    tint = torch.zeros(3, 1, 1)
    tint[label] = 180.0  # a colour per class: learnable in a few steps
    image = (tint + torch.randint(0, 76, (3, 256, 256), generator=g)).to(torch.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(image.permute(1, 2, 0).numpy()).save(path, quality=90)


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("imagenet_style")
    for label, (cls, n) in enumerate(CLASSES.items()):
        for i in range(n):
            _write_jpeg(root / "train" / cls / f"{i:03d}.jpg", label, 100 * label + i)
        for i in range(4):
            _write_jpeg(root / "test" / cls / f"{i:03d}.jpg", label, 10_000 + 100 * label + i)
    return root


def _loader(root: Path, train: bool = True, **kw) -> StreamLoader:
    listing = list_split(root, "train" if train else "test", None)
    args = {
        "device": "cpu",
        "train": train,
        "image_size": 32,
        "seed": 3,
        "color_jitter": 0.4,
        "cutout": 8,
    } | kw
    return StreamLoader(listing, 8, **args)


def test_batches_depend_on_seed_and_epoch_only(folder):
    """The same batches with 0 or 2 worker processes; a loader restored from `state_dict()` serves the next
    epoch exactly; another epoch is another order and other crops."""
    inline = list(_loader(folder, workers=0))
    workers = _loader(folder, workers=2)
    assert len(workers) == 8 and len(inline) == 8
    first = list(workers)
    for (x, y), (x2, y2) in zip(inline, first):
        assert x.shape == (8, 3, 32, 32) and x.dtype == torch.float32
        assert torch.equal(x, x2) and torch.equal(y, y2)
    state = workers.state_dict()
    second = list(workers)
    restored = _loader(folder, workers=0)
    restored.load_state_dict(state)
    assert all(torch.equal(a[0], b[0]) for a, b in zip(second, restored))
    assert not torch.equal(first[0][0], second[0][0])
    assert sorted(torch.cat([y for _, y in first]).tolist()) != torch.cat([y for _, y in first]).tolist()
    with pytest.raises(UserError, match="in-memory loader"):
        restored.load_state_dict({"shuffle": None, "augment": None, "epoch": 1})


def test_ranks_take_disjoint_shards_and_evaluation_keeps_every_image(folder):
    def epoch(loader) -> list[int]:
        return [i for batch in loader.batches for i, _ in batch]

    shards = [epoch(_loader(folder, rank=r, world_size=3)) for r in range(3)]
    assert [len(s) for s in shards] == [16, 16, 16]  # 64 // 3 = 21 per rank, cut to whole batches of 8
    assert not set(shards[0]) & set(shards[1]) and not set(shards[1]) & set(shards[2])
    evals = [epoch(_loader(folder, train=False, rank=r, world_size=2)) for r in range(2)]
    assert sorted(evals[0] + evals[1]) == list(range(12)) and evals[0] == [0, 2, 4, 6, 8, 10]
    x, y = next(iter(_loader(folder, train=False, image_size=48)))  # resize to 55, centre crop 48
    assert x.shape == (8, 3, 48, 48) and y.tolist() == [0, 1, 2, 0, 1, 2, 0, 1]


def test_a_broken_image_in_a_worker_is_one_line(folder, tmp_path):
    root = tmp_path / "ds"
    for split in ("train", "test"):
        for cls in CLASSES:
            (root / split / cls).mkdir(parents=True)
            for name in sorted(os.listdir(folder / split / cls))[:4]:
                os.symlink(folder / split / cls / name, root / split / cls / name)
    (root / "train" / "bee" / "zz.jpg").write_bytes(b"\xff\xd8\xff garbage")
    with pytest.raises(UserError) as err:
        list(_loader(root, workers=2))
    assert "zz.jpg is not a readable image" in str(err.value) and "\n" not in str(err.value)


def test_when_to_stream(folder):
    data = DataConfig(name="image_folder", root=str(folder))
    assert not wants_stream(data)  # 64 x 3 x 256 x 256 bytes, far below 8 GB
    assert wants_stream(DataConfig(name="image_folder", root=str(folder), stream_above_gb=0.01))
    assert wants_stream(DataConfig(name="image_folder", root=str(folder), stream=True))
    with pytest.raises(UserError, match="needs data.name=image_folder"):
        wants_stream(DataConfig(name="synthetic", stream=True))
    with pytest.raises(UserError, match="search holds its images in memory"):
        load_dataset(DataConfig(name="image_folder", root=str(folder), stream=True), train=True)
    with pytest.raises(UserError, match="streaming loader only"):
        train_loaders(DataConfig(name="synthetic", color_jitter=0.4), device="cpu", seed=0)


RECIPE = ROOT / "configs" / "train" / "darts_imagenet.yaml"
TINY_IMAGENET = [  # the recipe, shrunk: float32 on the CPU, 32 x 32 crops, a small network, 2 epochs
    "progress=false",
    "device=cpu",
    "amp=none",
    "data.workers=2",
    "data.image_size=32",
    "data.batch_size=32",
    "model.init_channels=8",
    "model.layers=3",
    "model.drop_path_prob=0.2",
    "train.epochs=2",
]


def test_recipe_is_darts_imagenet_protocol():
    cfg = load_config(TrainRunConfig, RECIPE)
    assert (cfg.model.network, cfg.model.init_channels, cfg.model.layers, cfg.model.auxiliary_weight) == (
        "imagenet", 48, 14, 0.4,
    )  # fmt: skip
    t = cfg.train
    assert (t.epochs, t.lr, t.momentum, t.weight_decay, t.grad_clip, t.label_smoothing) == (
        250,
        0.1,
        0.9,
        3e-5,
        5,
        0.1,
    )
    assert (t.lr_schedule, t.lr_decay_rate, t.lr_decay_epochs, cfg.data.batch_size) == ("step", 0.97, 1, 128)
    assert cfg.data.stream and cfg.data.image_size == 224 and cfg.data.color_jitter == 0.4


def test_imagenet_style_retrain_streams_and_a_killed_run_resumes_bitwise(folder, tmp_path, capsys):
    """The ImageNet network on 256 x 256 JPEGs streamed by worker processes, through the CLI; a run killed
    in its second epoch resumes from its last checkpoint and ends bitwise where the full run ends."""
    overrides = [*TINY_IMAGENET, f"data.root={folder}"]
    full_dir, part_dir = tmp_path / "full", tmp_path / "part"
    assert (
        main(
            [
                "train",
                "--genotype",
                "zoo:DARTS_V2",
                "--config",
                str(RECIPE),
                *overrides,
                f"out_dir={full_dir}",
            ]
        )
        == 0
    )
    assert "test accuracy" in capsys.readouterr().out
    metrics = json.loads((full_dir / "metrics.json").read_text())
    assert metrics["epochs"] == 2 and metrics["dataset"] == folder.name

    cfg = load_config(TrainRunConfig, RECIPE, [*overrides, f"out_dir={part_dir}"])
    part_dir.mkdir()
    genotype = resolve_genotype("zoo:DARTS_V2")
    trainer = Trainer(cfg, genotype, SPACES.get("darts"), part_dir)
    assert isinstance(trainer.train_loader, StreamLoader)
    record = trainer.train_epoch(0) | trainer.evaluate(trainer.model)
    trainer.end_epoch(0, record)
    for i, _ in enumerate(trainer.train_loader):  # epoch 1 starts ... and the process dies
        if i == 1:
            break
    del trainer
    assert main(["train", "--resume", str(part_dir)]) == 0
    full = torch.load(full_dir / "checkpoints" / "last.pt", weights_only=False)["model"]
    resumed = torch.load(part_dir / "checkpoints" / "last.pt", weights_only=False)["model"]
    assert all(torch.equal(full[k], resumed[k]) for k in full)
    rows = [json.loads(line) for line in (part_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [0, 1] and rows[1]["lr"] == pytest.approx(0.1 * 0.97)


@pytest.mark.skipif(not CIFAR_JPEG.is_dir(), reason=f"the CIFAR-10 JPEG copy is not at {CIFAR_JPEG}")
def test_real_cifar10_jpegs_stream():
    """Real JPEGs (the shared CIFAR-10 copy, 50,000 files listed), the first 64 streamed at 64 x 64."""
    data = DataConfig(name="image_folder", root=str(CIFAR_JPEG), stream=True, subset=64, image_size=64,
                      batch_size=32, eval_batch_size=64, workers=0)  # fmt: skip
    train, test, info = train_loaders(data, device="cpu", seed=0)
    assert (info.num_classes, info.image_size, len(train), len(test)) == (10, 64, 2, 157)
    x, y = next(iter(train))
    assert x.shape == (32, 3, 64, 64) and sorted(set(y.tolist())) == list(range(10))
