"""`data.name=image_folder`: decoding, order, statistics, the cache, resizing, bad folders (one line, exit 2),
and a real search + retrain on a small subset of the shared CIFAR-10 copy."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import nas.data.image_folder as image_folder
from nas.cli import main
from nas.config import DataConfig
from nas.core.errors import UserError
from nas.data.loaders import load_dataset, search_loaders
from tests.conftest import ROOT

CIFAR_JPEG = Path(os.environ.get("NAS_CIFAR10_JPEG", ROOT / "data" / "cifar10-jpeg"))


def _image(seed: int, c: int = 3, h: int = 8, w: int = 8) -> torch.Tensor:
    return torch.randint(0, 256, (c, h, w), generator=torch.Generator().manual_seed(seed), dtype=torch.uint8)


def _write(path: Path, image: torch.Tensor) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    array = image.permute(1, 2, 0).numpy()
    Image.fromarray(array[:, :, 0] if image.shape[0] == 1 else array).save(path, quality=95)


def make_folder(root: Path, counts=None, test_counts=None, c: int = 3, size: int = 8) -> dict[str, list]:
    """root/{train,test}/<class>/<i>.png with random pixels; returns the train images per class."""
    counts = counts or {"cat": 3, "dog": 2, "emu": 4}
    test_counts = test_counts or dict.fromkeys(counts, 1)
    written: dict[str, list] = {}
    for split, table in (("train", counts), ("test", test_counts)):
        for k, (cls, n) in enumerate(table.items()):
            for i in range(n):
                image = _image(1000 * (split == "test") + 100 * k + i, c, size, size)
                _write(root / split / cls / f"{i:03d}.png", image)
                if split == "train":
                    written.setdefault(cls, []).append(image)
    return written


def cfg(root: Path, **kw) -> DataConfig:
    return DataConfig(name="image_folder", root=str(root), cache_dir=str(root.parent / "cache"), **kw)


def test_pixels_labels_round_robin_order_and_training_statistics(tmp_path):
    written = make_folder(tmp_path / "ds")
    data = load_dataset(cfg(tmp_path / "ds"), train=True)
    # the i-th image of every class in turn: cat0 dog0 emu0 cat1 dog1 emu1 cat2 emu2 emu3
    order = [
        ("cat", 0),
        ("dog", 0),
        ("emu", 0),
        ("cat", 1),
        ("dog", 1),
        ("emu", 1),
        ("cat", 2),
        ("emu", 2),
        ("emu", 3),
    ]
    assert data.labels.tolist() == [["cat", "dog", "emu"].index(c) for c, _ in order]
    assert torch.equal(data.images, torch.stack([written[c][i] for c, i in order]))  # PNG is lossless
    pixels = data.images.double().div(255).transpose(0, 1).reshape(3, -1)  # (C, N*H*W)
    assert np.allclose(data.info.mean, pixels.mean(1).tolist()) and np.allclose(
        data.info.std, pixels.std(1, unbiased=False).tolist()
    )
    assert (data.info.num_classes, data.info.in_channels, data.info.image_size, data.info.name) == (
        3,
        3,
        8,
        "ds",
    )
    test = load_dataset(cfg(tmp_path / "ds"), train=False)
    assert len(test) == 3 and test.info == data.info  # the test split is normalised with training statistics
    subset = load_dataset(cfg(tmp_path / "ds", subset=6), train=True)
    assert sorted(subset.labels.tolist()) == [0, 0, 1, 1, 2, 2]  # class-balanced


def test_second_load_reads_the_cache_and_an_edited_file_is_decoded_again(tmp_path, monkeypatch):
    make_folder(tmp_path / "ds")
    first = load_dataset(cfg(tmp_path / "ds"), train=True)
    assert len(list((tmp_path / "cache").glob("train-*.npz"))) == 1

    def no_decoding(*args, **kw):
        raise AssertionError("decoded although the cache is valid")

    monkeypatch.setattr(image_folder, "decode", no_decoding)
    again = load_dataset(cfg(tmp_path / "ds"), train=True)
    assert torch.equal(first.images, again.images) and again.info == first.info
    monkeypatch.undo()
    new = _image(99)
    _write(tmp_path / "ds" / "train" / "dog" / "001.png", new)
    os.utime(tmp_path / "ds" / "train" / "dog" / "001.png", ns=(1, 1))  # even with an older mtime
    edited = load_dataset(cfg(tmp_path / "ds"), train=True)
    assert torch.equal(edited.images[4], new) and not torch.equal(edited.images, first.images)


def test_grey_colour_alpha_and_resize(tmp_path):
    root = tmp_path / "ds"
    _write(root / "train" / "a" / "0.png", _image(1, c=1))
    _write(root / "train" / "a" / "1.png", _image(2, c=4, h=12, w=10))  # RGBA, another size
    _write(root / "train" / "b" / "0.jpg", _image(3, c=3, h=16, w=16))
    _write(root / "test" / "a" / "0.png", _image(4, c=3))
    _write(root / "test" / "b" / "0.png", _image(5, c=1))
    with pytest.raises(UserError, match=r"b/0\.jpg is 16x16 pixels .* data\.image_size"):
        load_dataset(cfg(root), train=True)
    data = load_dataset(cfg(root, image_size=8), train=True)
    assert data.images.shape == (3, 3, 8, 8)
    assert torch.equal(data.images[0, 0], data.images[0, 1])  # grey expanded to colour
    assert len(load_dataset(cfg(root, image_size=8), train=False)) == 2


@pytest.mark.parametrize(
    "breakage, message",
    [
        (lambda r: shutil.rmtree(r / "train"), "train not found"),
        (lambda r: [shutil.rmtree(d) for d in (r / "train").iterdir()], "holds no class folders"),
        (lambda r: [p.unlink() for p in (r / "train" / "dog").iterdir()], "dog is empty"),
        (lambda r: (r / "train" / "cat" / "notes.txt").write_text("x"), "notes.txt is not an image file"),
        (
            lambda r: (r / "train" / "cat" / "broken.jpg").write_bytes(b"\xff\xd8\xff garbage"),
            "broken.jpg is not a readable image",
        ),
        (lambda r: (r / "train" / "stray.png").write_bytes(b""), "stray.png is not a folder"),
        (lambda r: shutil.rmtree(r / "test" / "emu"), "must hold the same class folders"),
        (lambda r: _write(r / "train" / "dog" / "big.png", _image(7, h=9, w=9)), "big.png is 9x9 pixels"),
    ],
)
def test_bad_folders_are_one_line_naming_the_culprit(tmp_path, capsys, breakage, message):
    root = tmp_path / "ds"
    make_folder(root)
    breakage(root)
    before = {p: p.read_bytes() for p in root.rglob("*") if p.is_file()}
    code = main(["train", "--genotype", "zoo:NB201_BEST_CIFAR10", "data.name=image_folder", f"data.root={root}",
                 f"out_dir={tmp_path / 'out'}", "progress=false"])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1, err
    after = {p: p.read_bytes() for p in root.rglob("*") if p.is_file() and ".nas-cache" not in p.parts}
    assert after == before  # the data is untouched (a valid training split may have been cached)


def test_split_seed_fixes_the_search_split_across_run_seeds(tmp_path):
    make_folder(tmp_path / "ds", counts={"a": 20, "b": 20})
    data_cfg = cfg(tmp_path / "ds", batch_size=4)

    def arch_images(seed: int, split_seed) -> set:
        data_cfg.split_seed = split_seed
        _, arch, _ = search_loaders(data_cfg, device="cpu", seed=seed)
        return {tuple(row) for row in arch.images.flatten(1).tolist()}

    assert arch_images(0, 0) == arch_images(1, 0) == arch_images(2, 0)
    assert arch_images(0, None) != arch_images(1, None)  # null: the split follows the run seed
    assert arch_images(0, 0) != arch_images(0, 5)


@pytest.mark.skipif(not CIFAR_JPEG.is_dir(), reason=f"the CIFAR-10 JPEG copy is not extracted at {CIFAR_JPEG} "
                    "(tar xzf ../shared/data/cifar10-jpeg.tar.gz -C data; .ci/run does)")  # fmt: skip
def test_real_cifar10_subset_search_and_retrain(tmp_path):
    """A real search and retrain through the CLI on 40 training and 10 test images per class."""
    root = tmp_path / "cifar"
    for split, n in (("train", 40), ("test", 10)):
        for cls in sorted(os.listdir(CIFAR_JPEG / split)):
            (root / split / cls).mkdir(parents=True)
            for name in sorted(os.listdir(CIFAR_JPEG / split / cls))[:n]:
                os.symlink(CIFAR_JPEG / split / cls / name, root / split / cls / name)
    env = {**os.environ, "OMP_NUM_THREADS": "2"}
    common = [
        "data.name=image_folder",
        f"data.root={root}",
        f"data.cache_dir={tmp_path / 'cache'}",
        "progress=false",
    ]
    search = subprocess.run(
        [sys.executable, "-m", "nas", "search", "--config", "configs/search/gdas_nb201_cifar10.yaml", *common,
         "space.init_channels=4", "space.layers=1", "search.epochs=2", "data.batch_size=32",
         f"out_dir={tmp_path / 'search'}"],
        capture_output=True, text=True, cwd=ROOT, env=env,
    )  # fmt: skip
    assert search.returncode == 0, search.stderr[-3000:]
    train = subprocess.run(
        [sys.executable, "-m", "nas", "train", "--genotype", str(tmp_path / "search"), "--config",
         "configs/train/nb201_cifar10.yaml", *common, "model.init_channels=4", "model.layers=1", "train.epochs=1",
         "data.batch_size=32", f"out_dir={tmp_path / 'train'}"],
        capture_output=True, text=True, cwd=ROOT, env=env,
    )  # fmt: skip
    assert train.returncode == 0, train.stderr[-3000:]
    import json

    metrics = json.loads((tmp_path / "train" / "metrics.json").read_text())
    assert metrics["dataset"] == "cifar" and metrics["epochs"] == 1
    data = load_dataset(
        DataConfig(name="image_folder", root=str(root), cache_dir=str(tmp_path / "cache")), True
    )
    assert data.images.shape == (400, 3, 32, 32) and data.labels.bincount().tolist() == [40] * 10
