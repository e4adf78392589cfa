"""Datasets, augmentation and the tensor loader: property tests on CPU, no golden numbers."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import nas.data.datasets as datasets
import nas.data.loaders as data
from nas.config import DataConfig, SyntheticConfig
from nas.core.errors import UserError
from nas.data.augment import augment, normalize
from nas.data.loaders import (
    DATASETS,
    SYSTEM_FASHION_MNIST,
    TensorLoader,
    load_dataset,
    read_idx,
    search_loaders,
    split_indices,
    train_loaders,
)

MEAN, STD = (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)  # 0.5 * 255 is not an integer: no pixel normalises to 0


def synthetic_cfg(**kw) -> DataConfig:
    syn = SyntheticConfig(train_size=200, test_size=90, image_size=16, channels=3, classes=5)
    return DataConfig(name="synthetic", batch_size=16, eval_batch_size=32, synthetic=syn, **kw)


def random_images(n: int = 64, c: int = 3, size: int = 12, seed: int = 0) -> torch.Tensor:
    return torch.randint(0, 256, (n, c, size, size), generator=torch.Generator().manual_seed(seed)).to(
        torch.uint8
    )


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# ---- datasets -----------------------------------------------------------------------------------------


def test_registry_names():
    assert DATASETS.names() == ["cifar10", "cifar100", "fashion_mnist", "image_folder", "synthetic"]


def test_synthetic_deterministic_balanced_and_split_specific():
    cfg = synthetic_cfg()
    torch.manual_seed(1)
    a = load_dataset(cfg, train=True)
    torch.manual_seed(2)  # the global RNG must not matter
    b = load_dataset(cfg, train=True)
    test = load_dataset(cfg, train=False)
    assert torch.equal(a.images, b.images) and torch.equal(a.labels, b.labels)
    assert a.images.dtype == torch.uint8 and a.images.shape == (200, 3, 16, 16) and a.images.is_contiguous()
    assert a.labels.dtype == torch.int64 and test.images.shape == (90, 3, 16, 16)
    for split in (a, test):
        counts = torch.bincount(split.labels, minlength=5)
        assert counts.max() - counts.min() <= 1
    assert not torch.equal(a.images[:90], test.images)
    assert a.info.num_classes == 5 and a.info.in_channels == 3 and a.info.image_size == 16


def test_synthetic_classes_are_separable_by_their_means():
    """Train class means classify test images well above chance (a sanity check that there is signal)."""
    cfg = synthetic_cfg()
    tr, te = load_dataset(cfg, train=True), load_dataset(cfg, train=False)
    xtr, xte = tr.images.float(), te.images.float()
    centroids = torch.stack([xtr[tr.labels == k].mean(0) for k in range(5)])  # (K, C, H, W)
    pred = ((xte[:, None] - centroids[None]) ** 2).sum((2, 3, 4)).argmin(1)
    assert (pred == te.labels).float().mean() > 0.5  # chance is 0.2


def test_subset_keeps_first_training_images_only():
    full = load_dataset(synthetic_cfg(), train=True)
    sub = load_dataset(synthetic_cfg(subset=50), train=True)
    assert (
        len(sub) == 50
        and torch.equal(sub.images, full.images[:50])
        and torch.equal(sub.labels, full.labels[:50])
    )
    assert len(load_dataset(synthetic_cfg(subset=50), train=False)) == 90


def test_missing_cifar_is_a_user_error(tmp_path):
    for name, folder in (("cifar10", "cifar-10-batches-py"), ("cifar100", "cifar-100-python")):
        with pytest.raises(UserError) as info:
            load_dataset(DataConfig(name=name, root=str(tmp_path / "nowhere"), download=False), train=True)
        message = str(info.value)
        assert folder in message and "data.download=true" in message and "\n" not in message


def test_corrupt_cifar_folder_is_a_user_error(tmp_path):
    (tmp_path / "cifar-10-batches-py").mkdir()  # present but empty: torchvision's integrity check fails
    with pytest.raises(UserError):
        load_dataset(DataConfig(name="cifar10", root=str(tmp_path)), train=False)


def write_idx(path: Path, array: np.ndarray) -> None:
    header = bytes([0, 0, 0x08, array.ndim]) + np.array(array.shape, dtype=">i4").tobytes()
    payload = header + array.astype(np.uint8).tobytes()
    path.write_bytes(gzip.compress(payload) if path.suffix == ".gz" else payload)


@pytest.mark.parametrize("suffix", ["", ".gz"])
def test_idx_round_trip_and_fashion_lookup_in_root(tmp_path, suffix):
    images = np.arange(3 * 28 * 28, dtype=np.uint8).reshape(3, 28, 28)
    write_idx(tmp_path / f"t10k-images-idx3-ubyte{suffix}", images)
    write_idx(tmp_path / f"t10k-labels-idx1-ubyte{suffix}", np.array([1, 2, 9]))
    assert np.array_equal(read_idx(tmp_path / f"t10k-images-idx3-ubyte{suffix}"), images)
    test = load_dataset(DataConfig(name="fashion_mnist", root=str(tmp_path)), train=False)  # root comes first
    assert test.images.shape == (3, 1, 28, 28) and test.labels.tolist() == [1, 2, 9]


def test_truncated_idx_is_a_user_error(tmp_path):
    path = tmp_path / "x-idx1-ubyte"
    path.write_bytes(bytes([0, 0, 8, 1]) + np.array([10], dtype=">i4").tobytes() + b"\x01\x02")
    with pytest.raises(UserError, match="truncated"):
        read_idx(path)


def test_missing_fashion_mnist_names_the_searched_directories(tmp_path, monkeypatch):
    monkeypatch.setattr(datasets, "SYSTEM_FASHION_MNIST", tmp_path / "absent")
    with pytest.raises(UserError, match="apt-get install dataset-fashion-mnist") as info:
        load_dataset(DataConfig(name="fashion_mnist", root=str(tmp_path)), train=True)
    assert str(tmp_path / "FashionMNIST" / "raw") in str(info.value)


@pytest.mark.skipif(
    not SYSTEM_FASHION_MNIST.is_dir(), reason="Debian package dataset-fashion-mnist not installed"
)
def test_fashion_mnist_real_files(tmp_path):
    cfg = DataConfig(name="fashion_mnist", root=str(tmp_path))  # empty root: falls through to the system copy
    train, test = load_dataset(cfg, train=True), load_dataset(cfg, train=False)
    assert train.images.shape == (60000, 1, 28, 28) and train.images.dtype == torch.uint8
    assert test.images.shape == (10000, 1, 28, 28) and test.labels.shape == (10000,)
    assert sorted(train.labels.unique().tolist()) == list(range(10)) and train.labels.dtype == torch.int64
    assert train.info.in_channels == 1 and train.info.image_size == 28


# ---- augmentation -------------------------------------------------------------------------------------


def test_normalize_matches_definition():
    x = random_images()
    expected = (x.float() / 255 - torch.tensor(MEAN).view(1, 3, 1, 1)) / torch.tensor(STD).view(1, 3, 1, 1)
    out = normalize(x, MEAN, STD)
    assert out.dtype == torch.float32 and torch.allclose(out, expected, atol=1e-5)


def test_augment_without_augmentations_is_normalize():
    x = random_images()
    out = augment(x, gen(), crop_padding=0, flip=False, cutout=0, mean=MEAN, std=STD)
    assert torch.equal(out, normalize(x, MEAN, STD))


def test_augment_shape_dtype_and_generator_determinism():
    x = random_images()
    kw = {"crop_padding": 2, "flip": True, "cutout": 4, "mean": MEAN, "std": STD}
    a, b = augment(x, gen(3), **kw), augment(x, gen(3), **kw)
    assert a.shape == x.shape and a.dtype == torch.float32 and torch.equal(a, b)
    assert not torch.equal(a, augment(x, gen(4), **kw))


def test_crop_is_a_window_of_the_zero_padded_image():
    x, p = random_images(n=32), 3
    out = augment(x, gen(), crop_padding=p, flip=False, cutout=0, mean=MEAN, std=STD)
    padded = normalize(F.pad(x, (p, p, p, p)), MEAN, STD)  # zero padding happens before normalisation
    offsets = set()
    for i in range(len(x)):
        matches = [
            (dy, dx)
            for dy in range(2 * p + 1)
            for dx in range(2 * p + 1)
            if torch.equal(out[i], padded[i, :, dy : dy + 12, dx : dx + 12])
        ]
        assert len(matches) == 1
        offsets.add(matches[0])
    assert len(offsets) > 5  # offsets vary across the batch


def test_flip_flips_about_half():
    x = random_images(n=64)
    out = augment(x, gen(), crop_padding=0, flip=True, cutout=0, mean=MEAN, std=STD)
    plain = normalize(x, MEAN, STD)
    flipped = [torch.equal(o, p.flip(-1)) for o, p in zip(out, plain, strict=True)]
    kept = [torch.equal(o, p) for o, p in zip(out, plain, strict=True)]
    assert all(f != k for f, k in zip(flipped, kept, strict=True))  # each is exactly one of the two
    assert 10 < sum(flipped) < 54


def test_cutout_zeroes_a_clipped_square_after_normalisation():
    x, side = random_images(n=64, size=16), 6
    out = augment(x, gen(), crop_padding=0, flip=False, cutout=side, mean=MEAN, std=STD)
    plain = normalize(x, MEAN, STD)
    changed = out != plain  # (B, C, H, W)
    assert torch.all(out[changed] == 0)  # cut pixels are exactly 0 in normalised units, as in DARTS
    assert torch.equal(changed, changed[:, :1].expand_as(changed))  # the same square in every channel
    full_squares = 0
    for mask in changed[:, 0]:
        rows, cols = mask.any(1).nonzero().flatten(), mask.any(0).nonzero().flatten()
        assert len(rows) > 0 and len(rows) <= side and len(cols) <= side
        assert mask.sum() == len(rows) * len(cols)  # a filled rectangle ...
        assert rows.max() - rows.min() + 1 == len(rows) and cols.max() - cols.min() + 1 == len(
            cols
        )  # contiguous
        full_squares += len(rows) == side and len(cols) == side
    assert full_squares > 0  # unclipped squares have the full side


# ---- loader -------------------------------------------------------------------------------------------


def index_loader(n: int = 50, **kw) -> TensorLoader:
    """A loader whose labels are the sample indices, so batches reveal which samples they hold."""
    args = {"device": "cpu", "train": True, "mean": MEAN, "std": STD, "seed": 0} | kw
    return TensorLoader(random_images(n=n, size=8), torch.arange(n), torch.arange(n), 8, **args)


def epoch_indices(loader: TensorLoader) -> list[int]:
    return [i for _, y in loader for i in y.tolist()]


def test_loader_covers_every_index_once_and_reshuffles():
    loader = index_loader(crop_padding=2, flip=True, drop_last=False)
    assert len(loader) == 7  # ceil(50 / 8)
    first, second = epoch_indices(loader), epoch_indices(loader)
    assert sorted(first) == list(range(50)) and sorted(second) == list(range(50)) and first != second
    x, y = next(iter(loader))
    assert x.shape == (8, 3, 8, 8) and x.dtype == torch.float32 and y.dtype == torch.int64


def test_drop_last_and_eval_loader():
    assert len(index_loader(drop_last=True)) == 6 and all(
        len(y) == 8 for _, y in index_loader(drop_last=True)
    )
    ev = index_loader(train=False)
    assert epoch_indices(ev) == list(range(50))  # fixed order, all samples
    x, y = next(iter(ev))
    assert torch.equal(x, normalize(random_images(n=50, size=8)[y], MEAN, STD))  # normalised only


def test_loader_serves_only_its_indices():
    idx = torch.tensor([3, 7, 11, 20, 42])
    loader = TensorLoader(
        random_images(n=50), torch.arange(50), idx, 2, device="cpu", train=True, mean=MEAN, std=STD
    )
    assert sorted(epoch_indices(loader)) == idx.tolist()


def test_rank_shards_are_disjoint_and_equal():
    shards = [epoch_indices(index_loader(n=51, rank=r, world_size=2, drop_last=False)) for r in range(2)]
    assert len(shards[0]) == len(shards[1]) == 25 and not set(shards[0]) & set(shards[1])
    evals = [epoch_indices(index_loader(n=51, rank=r, world_size=2, train=False)) for r in range(2)]
    assert sorted(evals[0] + evals[1]) == list(range(51))  # eval shards together see every sample once


def test_state_dict_resume_gives_the_same_next_epoch():
    kw = {"crop_padding": 2, "flip": True, "cutout": 3, "drop_last": True}
    uninterrupted = index_loader(**kw)
    list(uninterrupted)
    state = {k: v.clone() if torch.is_tensor(v) else v for k, v in uninterrupted.state_dict().items()}
    expected = list(uninterrupted)
    resumed = index_loader(**kw)
    resumed.load_state_dict(state)
    got = list(resumed)
    assert all(
        torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) for a, b in zip(expected, got, strict=True)
    )
    fresh = list(index_loader(**kw))
    assert not all(torch.equal(a[1], b[1]) for a, b in zip(expected, fresh, strict=True))


def test_channels_last():
    x, _ = next(iter(index_loader(channels_last=True)))
    assert x.is_contiguous(memory_format=torch.channels_last)


def test_not_device_resident_gives_the_same_batches():
    a, b = index_loader(flip=True), index_loader(flip=True, device_resident=False)
    assert all(torch.equal(p[0], q[0]) for p, q in zip(a, b, strict=True))


# ---- builders -----------------------------------------------------------------------------------------


def test_split_indices_disjoint_and_covering():
    w, a = split_indices(101, 0.3, seed=5)
    assert len(w) == 30 and not set(w.tolist()) & set(a.tolist())
    assert sorted(w.tolist() + a.tolist()) == list(range(101))
    assert torch.equal(w, split_indices(101, 0.3, seed=5)[0]) and not torch.equal(
        w, split_indices(101, 0.3, 6)[0]
    )


def test_search_loaders_use_train_split_only_with_equal_batches(monkeypatch):
    calls = []
    real = data.load_dataset
    monkeypatch.setattr(data, "load_dataset", lambda cfg, train: calls.append(train) or real(cfg, train))
    w, a, info = search_loaders(synthetic_cfg(subset=150, train_portion=0.7), device="cpu", seed=0)
    assert calls == [True] and info.num_classes == 5
    assert len(w) == len(a) == 45 // 16  # min(105, 45) images // batch size
    assert len(list(w)) == len(list(a)) == len(w)
    with pytest.raises(UserError, match="batch_size"):
        search_loaders(synthetic_cfg(subset=20), device="cpu", seed=0)


def test_train_loaders():
    train, test, info = train_loaders(synthetic_cfg(subset=100), device="cpu", seed=0)
    assert len(train) == 100 // 16 and len(test) == 3  # ceil(90 / 32)
    assert sum(len(y) for _, y in test) == 90


def test_cifar_conversion_to_nchw(tmp_path, monkeypatch):
    """The torchvision arrays (N, H, W, C) become (N, C, H, W) uint8 and int64 labels (no real files needed)."""
    import torchvision

    class FakeCIFAR10:
        def __init__(self, root, train, download):
            self.data = np.random.default_rng(0).integers(0, 256, (4, 32, 32, 3), dtype=np.uint8)
            self.targets = [0, 3, 9, 1]

    monkeypatch.setattr(torchvision.datasets, "CIFAR10", FakeCIFAR10)
    (tmp_path / "cifar-10-batches-py").mkdir()
    got = load_dataset(DataConfig(name="cifar10", root=str(tmp_path)), train=True)
    fake = FakeCIFAR10(None, True, False)
    assert (
        got.images.shape == (4, 3, 32, 32) and got.images.is_contiguous() and got.labels.dtype == torch.int64
    )
    assert (
        torch.equal(got.images[2, 1], torch.from_numpy(fake.data[2, :, :, 1]))
        and got.labels.tolist() == fake.targets
    )
    assert got.info.num_classes == 10 and len(got.info.mean) == 3
