"""The built-in datasets: each loads one split of a dataset entirely into memory as an `ImageSet`.

Datasets register by name in `DATASETS` (`data.name`); `nas.data.image_folder` adds `image_folder`. The loaders
and the search splits built on top of them live in `nas.data.loaders`.
"""

from __future__ import annotations

import gzip
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from nas.config import DataConfig
from nas.core.errors import UserError
from nas.core.registry import Registry
from nas.run.memory import check_bytes


@dataclass(frozen=True)
class DatasetInfo:
    """What a model and the normalisation need to know about a dataset. mean/std in [0, 1] pixel units."""

    name: str
    num_classes: int
    in_channels: int
    image_size: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    classes: tuple[str, ...] | None = None  # class names in label order, where the dataset has them


@dataclass
class ImageSet:
    """One split of a dataset, entirely in memory."""

    images: torch.Tensor  # uint8 (N, C, H, W), contiguous
    labels: torch.Tensor  # int64 (N,)
    info: DatasetInfo

    def __len__(self) -> int:
        return self.labels.shape[0]


DatasetLoader = Callable[[DataConfig, bool], ImageSet]
DATASETS: Registry[DatasetLoader] = Registry("dataset")


# ---- CIFAR (torchvision) ------------------------------------------------------------------------------

CIFAR10_INFO = DatasetInfo("cifar10", 10, 3, 32, (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616))
CIFAR100_INFO = DatasetInfo("cifar100", 100, 3, 32, (0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762))


def _cifar(cfg: DataConfig, train: bool, cls_name: str, folder: str, info: DatasetInfo) -> ImageSet:
    import torchvision  # imported here: it is slow to import and only these two loaders need it

    pretty = cls_name.replace("CIFAR", "CIFAR-")
    where = Path(cfg.root) / folder
    fix = "download it with data.download=true on a machine with internet, or copy the extracted folder there"
    if not cfg.download and not where.is_dir():
        raise UserError(f"{pretty} not found under {cfg.root}/ (expected {where}); {fix}")
    try:
        ds = getattr(torchvision.datasets, cls_name)(root=cfg.root, train=train, download=cfg.download)
    except Exception as exc:  # corrupt files, no internet: one line, never a torchvision traceback
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        problem = f"could not be downloaded to {cfg.root}/" if cfg.download else f"in {where} is unreadable"
        raise UserError(f"{pretty} {problem} ({reason}); {fix}") from None
    images = torch.from_numpy(ds.data).permute(0, 3, 1, 2).contiguous()  # (N, 3, 32, 32) uint8
    return ImageSet(images, torch.as_tensor(ds.targets, dtype=torch.int64), info)


@DATASETS.register("cifar10")
def cifar10(cfg: DataConfig, train: bool) -> ImageSet:
    return _cifar(cfg, train, "CIFAR10", "cifar-10-batches-py", CIFAR10_INFO)


@DATASETS.register("cifar100")
def cifar100(cfg: DataConfig, train: bool) -> ImageSet:
    return _cifar(cfg, train, "CIFAR100", "cifar-100-python", CIFAR100_INFO)


# ---- Fashion-MNIST (idx files) ------------------------------------------------------------------------

MAX_IDX_BYTES = 1 << 31  # the largest MNIST-family file (EMNIST) is ~0.7 GB uncompressed
FASHION_MNIST_INFO = DatasetInfo("fashion_mnist", 10, 1, 28, (0.2860,), (0.3530,))
SYSTEM_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")  # Debian package dataset-fashion-mnist


def read_idx(path: Path) -> np.ndarray:
    """Parse an idx file (LeCun's MNIST format) of unsigned bytes, gzipped if its name ends in .gz.

    Format: two zero bytes, a type byte (0x08 = uint8), a byte with the number of dimensions, then each
    dimension as a big-endian int32, then the data in C order.
    """
    try:
        with gzip.open(path) if path.suffix == ".gz" else open(path, "rb") as f:
            raw = f.read(MAX_IDX_BYTES + 1)  # bounded: a small corrupt .gz may inflate without end
    except (OSError, EOFError, zlib.error) as exc:  # not gzip, truncated, corrupt
        raise UserError(f"cannot read {path}: {exc or type(exc).__name__}; replace the file") from None
    if len(raw) > MAX_IDX_BYTES:
        raise UserError(f"{path} holds more than {MAX_IDX_BYTES:,} bytes: not a dataset file this reads")
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise UserError(f"{path} is not an idx file of unsigned bytes")
    ndim = raw[3]
    if len(raw) < 4 + 4 * ndim:
        raise UserError(f"{path} is truncated: its header is cut short")
    dims = tuple(int(d) for d in np.frombuffer(raw, dtype=">i4", count=ndim, offset=4))
    data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
    if data.size != int(np.prod(dims)):
        raise UserError(f"{path} is truncated: header says {dims}, found {data.size} bytes of data")
    return data.reshape(dims)


def _find_idx(directory: Path, stem: str) -> Path | None:
    for name in (stem, stem + ".gz"):
        if (directory / name).is_file():
            return directory / name
    return None


@DATASETS.register("fashion_mnist")
def fashion_mnist(cfg: DataConfig, train: bool) -> ImageSet:
    """Fashion-MNIST from idx files in cfg.root, cfg.root/FashionMNIST/raw or the Debian package's folder."""
    prefix = "train" if train else "t10k"
    searched = [Path(cfg.root), Path(cfg.root) / "FashionMNIST" / "raw", SYSTEM_FASHION_MNIST]
    for directory in searched:
        images_file = _find_idx(directory, f"{prefix}-images-idx3-ubyte")
        labels_file = _find_idx(directory, f"{prefix}-labels-idx1-ubyte")
        if images_file and labels_file:
            images = torch.from_numpy(read_idx(images_file).copy()).unsqueeze(1)  # (N, 1, 28, 28)
            labels = torch.from_numpy(read_idx(labels_file).astype(np.int64))  # (N,)
            if images.shape[0] != labels.shape[0] or images.shape[1:] != (1, 28, 28):
                raise UserError(
                    f"Fashion-MNIST files in {directory} disagree: {images.shape}, {labels.shape}"
                )
            return ImageSet(images.contiguous(), labels, FASHION_MNIST_INFO)
    raise UserError(
        f"Fashion-MNIST {prefix} idx files not found in {', '.join(map(str, searched))}; "
        "install them with `apt-get install dataset-fashion-mnist` or copy the idx(.gz) files there"
    )


# ---- synthetic ----------------------------------------------------------------------------------------

SYNTHETIC_SEED = 0x5EED  # fixed: the synthetic data never depends on the run seed or the global RNG


@DATASETS.register("synthetic")
def synthetic(cfg: DataConfig, train: bool) -> ImageSet:
    """Class-conditional noisy images: learnable by a small CNN, far from trivially.

    Each class has a fixed smooth template (random 4x4 pattern upsampled). Classes share half of their
    template, so they differ only in the other half. An image is its class template, cyclically shifted by
    up to image_size/8 pixels, scaled by a random contrast in [0.5, 1.5], plus strong pixel noise. Train
    and test share the templates but draw labels, shifts and noise from different seeds. Labels are
    balanced (counts differ by at most one).
    """
    s = cfg.synthetic
    k, c, size = s.classes, s.channels, s.image_size
    n = s.train_size if train else s.test_size
    # float32 noise, gathered templates and their sum exist at once, next to the uint8 result
    check_bytes(n * c * size * size * 13, torch.device("cpu"), f"data.synthetic ({n:,} images of {c}x{size}x{size})",
                "data.synthetic.train_size, test_size or image_size")  # fmt: skip
    g = torch.Generator().manual_seed(SYNTHETIC_SEED)
    coarse = torch.randn(1, c, 4, 4, generator=g) + torch.randn(k, c, 4, 4, generator=g)  # (K, C, 4, 4)
    templates = F.interpolate(coarse, size=(size, size), mode="bilinear", align_corners=False)
    templates = (templates - templates.mean()) / templates.std()  # (K, C, S, S), unit scale

    g = torch.Generator().manual_seed(SYNTHETIC_SEED + (1 if train else 2))
    labels = torch.randperm(n, generator=g) % k  # (N,)
    shift = torch.randint(-(size // 8), size // 8 + 1, (2, n), generator=g)  # (2, N)
    contrast = 0.5 + torch.rand(n, 1, 1, 1, generator=g)  # (N, 1, 1, 1)
    noise = torch.randn(n, c, size, size, generator=g)  # (N, C, S, S)

    ar = torch.arange(size)
    rows = (ar - shift[0, :, None]) % size  # (N, S)
    cols = (ar - shift[1, :, None]) % size  # (N, S)
    ci = torch.arange(c).view(1, c, 1, 1)
    x = templates[labels.view(n, 1, 1, 1), ci, rows[:, None, :, None], cols[:, None, None, :]]  # (N, C, S, S)
    x = contrast * x + 1.5 * noise
    images = (127.5 + 35.0 * x).round().clamp(0, 255).to(torch.uint8).contiguous()
    info = DatasetInfo("synthetic", k, c, size, (0.5,) * c, (0.25,) * c)
    return ImageSet(images, labels.to(torch.int64), info)
