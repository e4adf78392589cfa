"""Streaming image folders: images that do not fit in memory, decoded per batch by worker processes.

The same folder layout and listing as `nas.data.image_folder` (`list_split`: classes by name, the i-th image of
every class in turn, `data.subset` = the first N), read through a torch `DataLoader` whose workers decode
each file and transform it with torchvision `transforms.v2` as DARTS' ImageNet recipe does
(`train_imagenet.py`): training takes a RandomResizedCrop of `data.image_size` (default 224), a
horizontal flip and, with `data.color_jitter=c`, ColorJitter(brightness=c, contrast=c, saturation=c,
hue=c/2) (DARTS: 0.4); evaluation resizes the shorter side to image_size / 0.875 (256 for 224) and takes
the centre crop. Workers return uint8 batches (pinned on a GPU run); normalisation, and cutout if asked,
run on the compute device. Images are always decoded as RGB and normalised with ImageNet's mean and std:
exact statistics would need a pass over data this path exists not to hold.

Determinism and resume: an epoch's order and every image's augmentation are pure functions of (seed,
epoch): the batch sampler draws the permutation and one seed per position from a generator seeded by
both, and a worker seeds the transform of each image with that image's seed. So the batches do not
depend on the number of workers, and `state_dict()` is just the epoch count (checkpoints are taken at
epoch ends). Under torchrun each rank takes `perm[rank::world_size]`, as `TensorLoader` does.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from nas.config import DataConfig
from nas.core.errors import UserError
from nas.core.rng import Stream, derive_seed
from nas.data.augment import augment, normalize
from nas.data.datasets import DatasetInfo
from nas.data.image_folder import Listing, check_header, check_same_classes, list_split

# ImageNet's statistics (torchvision's references, DARTS' train_imagenet.py), in [0, 1] pixel units
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
DEFAULT_SIZE = 224
EVAL_CROP_FRACTION = 0.875  # 224 of 256


def wants_stream(cfg: DataConfig) -> bool:
    """`data.stream`: true or false as set; null (auto) streams an image folder whose decoded training
    split would take more than `data.stream_above_gb`."""
    if cfg.stream is False:
        return False
    if cfg.name != "image_folder":
        if cfg.stream:
            raise UserError(f"data.stream=true needs data.name=image_folder (got {cfg.name!r})")
        return False
    return bool(cfg.stream) or decoded_bytes(cfg) > cfg.stream_above_gb * 1e9


def decoded_bytes(cfg: DataConfig) -> int:
    """What the in-memory path would hold for the training split: N x 3 x S x S bytes, S = data.image_size
    or, without it, the size of the first image (read from its header only). All N files: the in-memory
    path decodes (and caches) the whole split before it takes `data.subset`."""
    listing = list_split(Path(cfg.root), "train", cfg.image_size)
    n = len(listing.files)
    if cfg.image_size is not None:
        return n * 3 * cfg.image_size**2
    from PIL import Image

    try:
        with Image.open(listing.files[0]) as im:
            w, h = im.size
    except Exception:  # the in-memory decoder names the bad file
        return 0
    return n * 3 * w * h


def read_rgb(path: str) -> torch.Tensor:
    """One file as uint8 (3, H, W): torchvision's decoder (JPEG, PNG, GIF, WebP) while torchvision has it
    (deprecated in favour of TorchCodec), Pillow for the rest. Its size is checked from the header first."""
    check_header(path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            from torchvision.io import ImageReadMode, decode_image

            return decode_image(path, mode=ImageReadMode.RGB)
    except (ImportError, RuntimeError, ValueError):
        pass
    from PIL import Image

    try:
        with Image.open(path) as im:
            return torch.from_numpy(np.asarray(im.convert("RGB")).copy()).permute(2, 0, 1)
    except Exception as exc:  # Pillow raises many types for broken files
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise UserError(f"{path} is not a readable image ({reason})") from None


def build_transform(train: bool, size: int, flip: bool, color_jitter: float):
    """DARTS' ImageNet transforms on uint8 tensors (random ones draw from torch's global generator)."""
    from torchvision.transforms import v2

    if not train:
        return v2.Compose([v2.Resize(round(size / EVAL_CROP_FRACTION), antialias=True), v2.CenterCrop(size)])
    steps = [v2.RandomResizedCrop(size, antialias=True)]
    if flip:
        steps.append(v2.RandomHorizontalFlip())
    if color_jitter > 0:
        c = color_jitter
        steps.append(v2.ColorJitter(brightness=c, contrast=c, saturation=c, hue=c / 2))
    return v2.Compose(steps)


class FolderImages(Dataset):
    """Items are (file index, seed): the decoded file, transformed under that seed, and its label."""

    def __init__(self, files: tuple[str, ...], labels: tuple[int, ...], transform):
        self.files, self.labels, self.transform = files, labels, transform

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, item: tuple[int, int]) -> tuple[torch.Tensor, int]:
        i, seed = item
        image = read_rgb(self.files[i])
        with torch.random.fork_rng(devices=[]):  # workers=0 runs here in the trainer's process
            torch.manual_seed(seed)
            image = self.transform(image)  # (3, S, S) uint8
        return image, self.labels[i]


class EpochBatches:
    """The batch sampler: batches of (index, seed) of epoch `epoch` (set by the loader before each pass).

    Train: a permutation and one seed per position, both drawn from a generator seeded by (seed, epoch);
    rank r takes positions r, r + world_size, ..., cut to `n // world_size` and to whole batches. Eval: the
    rank's part of range(n) in order, the last batch partial."""

    def __init__(self, n: int, batch_size: int, *, train: bool, seed: int, rank: int, world_size: int):
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} outside world of size {world_size}")
        self.n, self.batch_size, self.train, self.seed = n, batch_size, train, seed
        self.rank, self.world_size, self.epoch = rank, world_size, 0
        self.per_rank = n // world_size if train else len(range(rank, n, world_size))
        self.num_batches = self.per_rank // batch_size if train else -(-self.per_rank // batch_size)

    def __len__(self) -> int:
        return self.num_batches

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        g = torch.Generator().manual_seed(derive_seed(self.seed, self.epoch))
        n = self.n
        order = torch.randperm(n, generator=g) if self.train else torch.arange(n)  # (n,)
        seeds = (
            torch.randint(0, 2**62, (n,), generator=g) if self.train else torch.zeros(n, dtype=torch.int64)
        )
        take = slice(self.rank, None, self.world_size)
        order, seeds = order[take][: self.per_rank].tolist(), seeds[take][: self.per_rank].tolist()
        for b in range(self.num_batches):
            s = slice(b * self.batch_size, (b + 1) * self.batch_size)
            yield list(zip(order[s], seeds[s]))


class StreamLoader:
    """Batches (x, y) of an image folder read from disk, with `TensorLoader`'s interface: x float32 (B, 3,
    S, S) normalised on `device`, `len()` batches per epoch, `state_dict()` between epochs.

    Args:
        listing: the split's files and labels (`list_split`), already cut to `data.subset`.
        batch_size: images per batch on this rank.
        device: where batches are produced.
        train: shuffle and augment (see the module docstring); otherwise resize + centre crop in order.
        image_size: S, the side of the crops.
        flip, color_jitter, cutout: augmentation of train batches (cutout on the device, `nas.data.augment`).
        seed: the run's loader seed; an epoch's batches depend on (seed, epoch) only.
        rank, world_size: this process's shard.
        channels_last: return x in channels-last memory format.
        workers: decoding processes (0 = in this process).
    """

    def __init__(self, listing: Listing, batch_size: int, *, device: torch.device | str, train: bool,
                 image_size: int, flip: bool = True, color_jitter: float = 0.0, cutout: int = 0, seed: int = 0,
                 rank: int = 0, world_size: int = 1, channels_last: bool = False, workers: int = 0):  # fmt: skip
        self.device, self.train, self.seed, self.cutout = torch.device(device), train, seed, cutout
        self.rank, self.channels_last, self.epoch = rank, channels_last, 0
        self.mean = torch.tensor(IMAGENET_MEAN, device=self.device)
        self.std = torch.tensor(IMAGENET_STD, device=self.device)
        self.batches = EpochBatches(len(listing.files), batch_size, train=train, seed=seed, rank=rank,
                                    world_size=world_size)  # fmt: skip
        images = FolderImages(
            listing.files, listing.labels, build_transform(train, image_size, flip, color_jitter)
        )
        # its own generator: the DataLoader draws a base seed per epoch, which must not come from the global RNG
        self.dataloader = DataLoader(
            images, batch_sampler=self.batches, num_workers=workers, persistent_workers=workers > 0,
            pin_memory=self.device.type == "cuda", generator=torch.Generator().manual_seed(derive_seed(seed, Stream.WORKERS)),
        )  # fmt: skip

    def __len__(self) -> int:
        return len(self.batches)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        self.batches.epoch, self.epoch = self.epoch, self.epoch + 1
        cutout_gen = torch.Generator().manual_seed(
            derive_seed(self.seed, Stream.AUGMENT, self.batches.epoch, self.rank)
        )
        batches = iter(self.dataloader)
        while True:
            try:
                images, labels = next(batches)  # (B, 3, S, S) uint8, (B,)
            except StopIteration:
                return
            except UserError as exc:  # raised in a worker: DataLoader wraps its traceback into the message
                self.stop_workers()
                raise UserError(str(exc).strip().splitlines()[-1].split("UserError: ")[-1]) from None
            x = images.to(self.device, non_blocking=True)
            if self.train and self.cutout:
                x = augment(x, cutout_gen, cutout=self.cutout, mean=self.mean, std=self.std)
            else:
                x = normalize(x, self.mean, self.std)
            if self.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            yield x, labels.to(self.device, non_blocking=True)

    def stop_workers(self) -> None:
        """Shut the worker processes down now. Left to the garbage collector after an error (the traceback
        holds the iterator in a reference cycle), DataLoader's shutdown found its queues already collected and
        waited 5 s per worker (torch 2.14)."""
        iterator, self.dataloader._iterator = self.dataloader._iterator, None
        if iterator is not None and hasattr(iterator, "_shutdown_workers"):
            iterator._shutdown_workers()

    def state_dict(self) -> dict:
        """The epoch count: an epoch's batches are a function of (seed, epoch). Take it between epochs."""
        return {"stream_epoch": self.epoch}

    def load_state_dict(self, state: dict) -> None:
        if "stream_epoch" not in state:
            raise UserError(
                "the checkpoint's data state is from the in-memory loader: resume with data.stream=false"
            )
        self.epoch = state["stream_epoch"]


def stream_loaders(
    cfg: DataConfig, *, device: torch.device | str, seed: int, rank: int = 0, world_size: int = 1,
    channels_last: bool = False,
) -> tuple[StreamLoader, StreamLoader, DatasetInfo]:  # fmt: skip
    """`nas.data.loaders.train_loaders` for a streamed image folder: (train, test, info)."""
    root = Path(cfg.root)
    train, test = list_split(root, "train", cfg.image_size), list_split(root, "test", cfg.image_size)
    check_same_classes(train, test)
    if cfg.subset is not None:
        train = Listing(
            train.folder, train.classes, train.files[: cfg.subset], train.labels[: cfg.subset], train.key
        )
    if len(train.files) // world_size < cfg.batch_size:
        raise UserError(
            f"data.batch_size={cfg.batch_size} is too large for {len(train.files)} training images "
            f"on {world_size} process(es)"
        )
    size = cfg.image_size or DEFAULT_SIZE
    kw = {"device": device, "image_size": size, "rank": rank, "world_size": world_size,
          "channels_last": channels_last, "workers": cfg.workers}  # fmt: skip
    train_loader = StreamLoader(train, cfg.batch_size, train=True, flip=cfg.flip, color_jitter=cfg.color_jitter,
                                cutout=cfg.cutout, seed=derive_seed(seed, Stream.TRAIN_LOADER), **kw)  # fmt: skip
    test_loader = StreamLoader(test, cfg.eval_batch_size, train=False, seed=seed, **kw)
    name = root.resolve().name or "image_folder"
    info = DatasetInfo(name, len(train.classes), 3, size, IMAGENET_MEAN, IMAGENET_STD, train.classes)
    return train_loader, test_loader, info
