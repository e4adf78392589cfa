"""`image_folder`: a user's own images, in the layout of torchvision's ImageFolder and timm.

    data.root/train/<class>/<image>     one folder per class, any names; classes sorted by name
    data.root/test/<class>/<image>      the same class folders

Both splits are decoded once (on a thread pool: Pillow, and torchvision's batched decoder for JPEGs
while torchvision has it) into the uint8 (N, C, H, W) `ImageSet` every other dataset produces,
and cached as an uncompressed .npz keyed by the file list (relative paths, sizes, modification times) and
`data.image_size`, so the second run starts in about a second and an edited folder is decoded again.

- Order: the i-th image of every class in turn (classes by name, files by name), so `data.subset=N`
  takes a class-balanced subset, and in CIFAR-10's folder copy the original batch order within a class.
- Size: every image must have one square size, unless `data.image_size=S` resizes them all to S x S
  (antialiased) at decode time. Channels: grey stays 1 channel, RGB 3, an alpha channel is dropped, and a
  split that mixes grey and colour is made colour.
- Normalisation: per-channel mean and std of the whole training split (both splits use them).
- Bad input (no class folders, an empty class, a file that is not an image or does not decode, mixed
  sizes without `data.image_size`, test classes that differ from the training classes) is a `UserError`
  naming the file or folder.
"""

from __future__ import annotations

import hashlib
import os
import sys
import warnings
import zipfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from nas.config import DataConfig
from nas.core.atomic import atomic_write
from nas.core.errors import UserError
from nas.core.limits import MAX_IMAGE_PIXELS
from nas.data.datasets import DATASETS, DatasetInfo, ImageSet

IMAGE_SUFFIXES = frozenset(
    {".jpg", ".jpeg", ".png", ".gif", ".webp", ".bmp", ".tif", ".tiff", ".ppm", ".pgm", ".pbm"}
)
CACHE_VERSION = 1  # bump when the decoded arrays would change for the same files
CHUNK = 256  # files per decode task


@dataclass(frozen=True)
class Listing:
    """The files of one split, in dataset order, and the cache key of exactly these files."""

    folder: Path
    classes: tuple[str, ...]
    files: tuple[str, ...]  # paths
    labels: tuple[int, ...]
    key: str


def _visible(folder: str) -> list[os.DirEntry]:
    with os.scandir(folder) as it:
        return sorted((e for e in it if not e.name.startswith(".")), key=lambda e: e.name)


def list_split(root: Path, split: str, image_size: int | None) -> Listing:
    """Scan `root/split/<class>/*`. Raises UserError naming the folder or file that breaks the layout, or
    the path the file system refused (a symlink loop, no permission)."""
    try:
        return _list_split(root, split, image_size)
    except OSError as exc:
        raise UserError(f"cannot read the image folder: {exc.filename}: {exc.strerror}") from None


def _list_split(root: Path, split: str, image_size: int | None) -> Listing:
    folder = root / split
    if not folder.is_dir():
        raise UserError(
            f"image folder {folder} not found: data.root must hold train/ and test/, each with one folder "
            "per class"
        )
    classes, per_class = [], []
    for entry in _visible(folder):
        if not entry.is_dir():
            raise UserError(f"{entry.path} is not a folder: {folder} must hold only class folders")
        files = _visible(entry.path)
        if not files:
            raise UserError(f"class folder {entry.path} is empty")
        for f in files:
            if not f.is_file():
                raise UserError(f"{f.path} is not a file: a class folder holds only images")
            if Path(f.name).suffix.lower() not in IMAGE_SUFFIXES:
                raise UserError(
                    f"{f.path} is not an image file (known suffixes: {', '.join(sorted(IMAGE_SUFFIXES))})"
                )
        classes.append(entry.name)
        per_class.append(files)
    if not classes:
        raise UserError(f"{folder} holds no class folders")
    digest = hashlib.sha256(f"{CACHE_VERSION} {image_size}".encode())
    order: list[tuple[os.DirEntry, int]] = []
    for i in range(max(len(f) for f in per_class)):  # round robin over the classes
        order += [(files[i], label) for label, files in enumerate(per_class) if i < len(files)]
    for entry, label in order:
        st = entry.stat()
        digest.update(f"\0{label}\0{entry.path[len(str(folder)) :]}\0{st.st_size}\0{st.st_mtime_ns}".encode())
    return Listing(
        folder, tuple(classes), tuple(e.path for e, _ in order), tuple(lab for _, lab in order),
        digest.hexdigest()[:20],
    )  # fmt: skip


def check_same_classes(train: Listing, test: Listing) -> None:
    if test.classes != train.classes:
        extra = sorted(set(test.classes) ^ set(train.classes))
        raise UserError(
            f"{test.folder} and {train.folder} must hold the same class folders "
            f"(differ in: {', '.join(extra) or 'order'})"
        )


# ---- decoding -----------------------------------------------------------------------------------------


def check_header(path: str) -> None:
    """Refuse, from its header alone, an image whose decoded pixels would exceed `MAX_IMAGE_PIXELS`: a few
    small files claiming 13000 x 13000 pixels would otherwise take gigabytes to decode (a decompression
    bomb). A header Pillow cannot read is left to the decoder, which names the file."""
    from PIL import Image

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Pillow's own DecompressionBombWarning: the line below says it
            with Image.open(path) as im:
                width, height = im.size
    except Image.DecompressionBombError:  # Pillow's own limit (above ours) refused to open it
        width = height = None
    except Exception:  # Pillow raises many types for broken files; the decoder names it
        return
    if width is None or width * height > MAX_IMAGE_PIXELS:
        size = "over 178M" if width is None else f"{width}x{height}"
        raise UserError(
            f"{path} claims {size} pixels, over the {MAX_IMAGE_PIXELS:,} an image may have here "
            "(a decompression bomb, or a picture far larger than any dataset's)"
        )


def _decode_file(path: str) -> torch.Tensor:
    """One image as uint8 (C, H, W) through Pillow: grey modes stay grey, everything else becomes RGB."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            im = im.convert("L" if im.mode in ("1", "L", "LA", "I", "I;16", "F") else "RGB")
            array = np.asarray(im)
    except Exception as exc:  # Pillow raises many types for broken files
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise UserError(f"{path} is not a readable image ({reason})") from None
    image = torch.from_numpy(array.copy())
    return image[None] if image.dim() == 2 else image.permute(2, 0, 1)


def _batch_jpeg_decoder():
    """torchvision's batched JPEG decoder (about 3x faster than Pillow here), or None where this
    torchvision no longer has it (it is deprecated in favour of TorchCodec): Pillow then decodes all."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        try:
            from torchvision.io import ImageReadMode, decode_jpeg
        except ImportError:
            return None
    return lambda raw: decode_jpeg(raw, mode=ImageReadMode.UNCHANGED)


def _decode_chunk(paths: list[str], image_size: int | None) -> list[torch.Tensor]:
    from torchvision.transforms.v2.functional import resize

    for path in paths:  # before anything is decoded
        check_header(path)
    images: list[torch.Tensor | None] = [None] * len(paths)
    jpegs = [i for i, p in enumerate(paths) if p.lower().endswith((".jpg", ".jpeg"))]
    batch_decode = _batch_jpeg_decoder() if jpegs else None
    if batch_decode is not None:  # one call for the JPEGs; on a failure, one file at a time (naming it)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)
                raw = [
                    torch.frombuffer(bytearray(Path(paths[i]).read_bytes()), dtype=torch.uint8) for i in jpegs
                ]
                for i, image in zip(jpegs, batch_decode(raw)):
                    images[i] = image[:1] if image.shape[0] == 2 else image[:3]
        except (RuntimeError, ValueError):
            images = [None] * len(paths)
    out = []
    for path, image in zip(paths, images):
        image = _decode_file(path) if image is None else image
        if image_size is not None and tuple(image.shape[1:]) != (image_size, image_size):
            image = resize(image, [image_size, image_size], antialias=True)
        out.append(image)
    return out


def decode(listing: Listing, image_size: int | None) -> torch.Tensor:
    """Every file of `listing` as one uint8 (N, C, H, W) tensor. Raises UserError on a bad or odd-sized file."""
    chunks = [list(listing.files[i : i + CHUNK]) for i in range(0, len(listing.files), CHUNK)]
    with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:  # decoders release the GIL
        images = [im for chunk in pool.map(lambda c: _decode_chunk(c, image_size), chunks) for im in chunk]
    first = images[0]
    for path, image in zip(listing.files, images):
        if image.shape[1:] != first.shape[1:]:
            raise UserError(
                f"{path} is {image.shape[2]}x{image.shape[1]} pixels but {listing.files[0]} is "
                f"{first.shape[2]}x{first.shape[1]}: set data.image_size=S to resize every image to S x S"
            )
    if first.shape[1] != first.shape[2]:
        raise UserError(
            f"images in {listing.folder} are {first.shape[2]}x{first.shape[1]}, not square: set "
            "data.image_size=S to resize every image to S x S"
        )
    channels = max(image.shape[0] for image in images)
    return torch.stack([image.expand(channels, -1, -1) for image in images]).contiguous()


def channel_stats(images: torch.Tensor) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and (population) std of uint8 (N, C, H, W) images, in [0, 1] pixel units."""
    n, c = images.shape[0], images.shape[1]
    s1 = torch.zeros(c, dtype=torch.float64)
    s2 = torch.zeros(c, dtype=torch.float64)
    for i in range(0, n, 4096):  # float64 copies of a chunk only
        x = images[i : i + 4096].double() / 255.0  # (b, C, H, W)
        s1 += x.sum(dim=(0, 2, 3))
        s2 += (x * x).sum(dim=(0, 2, 3))
    count = n * images.shape[2] * images.shape[3]
    mean = s1 / count
    std = (s2 / count - mean * mean).clamp_min(0).sqrt().clamp_min(1e-3)  # a constant channel stays finite
    return tuple(mean.tolist()), tuple(std.tolist())


# ---- the cache ----------------------------------------------------------------------------------------


def _cache_dirs(cfg: DataConfig) -> list[Path]:
    if cfg.cache_dir is not None:
        return [Path(cfg.cache_dir)]
    home = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "nas"
    return [Path(cfg.root) / ".nas-cache", home]


def _read_cache(cfg: DataConfig, name: str, listing: Listing, stats: bool) -> dict[str, np.ndarray] | None:
    """The cached arrays of `listing`, or None. A file that is torn, foreign or does not hold exactly what
    decoding `listing` gives (`_fits`) is ignored with a warning, decoded again and overwritten: a cache
    poisoned with labels out of range never reaches a run. Its members must be stored uncompressed (as
    `_write_cache` writes them), so a small file cannot inflate into gigabytes."""
    for folder in _cache_dirs(cfg):
        path = folder / name
        if path.is_file():
            try:
                with zipfile.ZipFile(path) as archive:
                    if any(m.compress_type != zipfile.ZIP_STORED for m in archive.infolist()):
                        raise ValueError("compressed members")
                with np.load(path, allow_pickle=False) as z:
                    arrays = {k.removesuffix(".npy"): z[k] for k in z.files}
                if _fits(arrays, listing, cfg.image_size, stats):
                    return arrays
            except Exception:  # torn or foreign: decode again and overwrite it
                pass
            print(f"nas: ignoring unreadable or foreign cache file {path}", file=sys.stderr)
    return None


def _fits(arrays: dict[str, np.ndarray], listing: Listing, image_size: int | None, stats: bool) -> bool:
    """Whether cached arrays are what decoding `listing` gives: uint8 (N, C, S, S) images, C 1 or 3, the
    listing's labels exactly, and (training split) a finite mean and positive std per channel."""
    images, labels = arrays.get("images"), arrays.get("labels")
    if not isinstance(images, np.ndarray) or images.dtype != np.uint8 or images.ndim != 4:
        return False
    n, c, h, w = images.shape
    if n != len(listing.files) or c not in (1, 3) or h != w or (image_size is not None and h != image_size):
        return False
    if not isinstance(labels, np.ndarray) or not np.array_equal(labels, np.asarray(listing.labels, np.int64)):
        return False
    if stats:
        mean, std = arrays.get("mean"), arrays.get("std")
        for v in (mean, std):
            if not isinstance(v, np.ndarray) or v.shape != (c,) or not np.isfinite(v).all():
                return False
        if not (std > 0).all():
            return False
    return True


def _write_cache(cfg: DataConfig, name: str, arrays: dict[str, np.ndarray]) -> None:
    for folder in _cache_dirs(cfg):
        try:
            atomic_write(folder / name, lambda f: np.savez(f, **arrays))
            return
        except OSError:  # read-only data folder: try the next place
            continue
    print(f"nas: could not write the image cache in {', '.join(map(str, _cache_dirs(cfg)))}", file=sys.stderr)


def _load_split(cfg: DataConfig, listing: Listing, split: str, stats: bool) -> dict[str, np.ndarray]:
    """The decoded split (images, labels and, for the training split, mean and std), from the cache or
    decoded now and cached."""
    name = f"{split}-{listing.key}.npz"
    arrays = _read_cache(cfg, name, listing, stats)
    if arrays is not None:
        return arrays
    images = decode(listing, cfg.image_size)
    arrays = {"images": images.numpy(), "labels": np.asarray(listing.labels, dtype=np.int64)}
    if stats:
        mean, std = channel_stats(images)
        arrays |= {"mean": np.asarray(mean), "std": np.asarray(std)}
    _write_cache(cfg, name, arrays)
    return arrays


@DATASETS.register("image_folder")
def image_folder(cfg: DataConfig, train: bool) -> ImageSet:
    """One split of the image folder at `cfg.root`, normalised with the training split's statistics."""
    root = Path(cfg.root)
    train_listing = list_split(root, "train", cfg.image_size)
    train_arrays = _load_split(cfg, train_listing, "train", stats=True)
    arrays = train_arrays
    if not train:
        test_listing = list_split(root, "test", cfg.image_size)
        check_same_classes(train_listing, test_listing)
        arrays = _load_split(cfg, test_listing, "test", stats=False)
        if arrays["images"].shape[1:] != train_arrays["images"].shape[1:]:
            c, h, w = arrays["images"].shape[1:]
            tc, th, tw = train_arrays["images"].shape[1:]
            raise UserError(
                f"test images in {test_listing.folder} are {c}x{w}x{h} (channels x width x height) but "
                f"training images are {tc}x{tw}x{th}"
            )
    images = torch.from_numpy(arrays["images"])
    info = DatasetInfo(
        root.resolve().name or "image_folder", len(train_listing.classes), images.shape[1], images.shape[2],
        tuple(train_arrays["mean"].tolist()), tuple(train_arrays["std"].tolist()), train_listing.classes,
    )  # fmt: skip
    return ImageSet(images, torch.from_numpy(arrays["labels"]), info)
