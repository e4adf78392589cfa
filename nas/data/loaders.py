"""Datasets, search splits and the GPU-resident loader.

A dataset (`nas.data.datasets`, `nas.data.image_folder`) is loaded once into an `ImageSet`: all images as one uint8
(N, C, H, W) tensor. A `TensorLoader` copies the images it serves to the compute device once and then
cuts, augments and normalises batches there (see `nas.data.augment`), so no worker processes and no per-image
Python work are involved. All randomness (shuffling, augmentation) comes from the loader's own CPU
generators, which `state_dict()` saves, so a resumed run sees the same batches as an uninterrupted one.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Protocol

import torch

import nas.data.image_folder  # noqa: F401  (registers `image_folder`)
from nas.config import DataConfig
from nas.core.errors import UserError
from nas.core.rng import Stream, derive_seed
from nas.data.augment import augment, normalize
from nas.data.datasets import DATASETS, SYSTEM_FASHION_MNIST, DatasetInfo, ImageSet, read_idx

__all__ = ["DATASETS", "SYSTEM_FASHION_MNIST", "DatasetInfo", "ImageSet", "read_idx"]


def load_dataset(cfg: DataConfig, train: bool) -> ImageSet:
    """Load the train or test split of `cfg.name`; the train split keeps only its first `cfg.subset` images.

    Raises:
        UserError: unknown dataset name, the files are missing, or a streaming-only setting.
    """
    if cfg.stream:
        raise UserError(
            "data.stream=true is for nas train; the search holds its images in memory (search on a "
            "subset: data.subset, data.image_size)"
        )
    if cfg.color_jitter > 0:
        raise UserError("data.color_jitter is applied by the streaming loader only (set data.stream=true)")
    data = DATASETS.get(cfg.name)(cfg, train)
    if train and cfg.subset is not None and cfg.subset < len(data):
        data = ImageSet(data.images[: cfg.subset].clone(), data.labels[: cfg.subset].clone(), data.info)
    return data


# ---- the loader ---------------------------------------------------------------------------------------


class Loader(Protocol):
    """What the search and retrain loops use of a loader: `TensorLoader`, or `nas.data.stream.StreamLoader`."""

    def __len__(self) -> int: ...

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]: ...

    def state_dict(self) -> dict: ...

    def load_state_dict(self, state: dict) -> None: ...


class TensorLoader:
    """Batches (x, y) of an in-memory image set, cut and augmented on the compute device.

    Each epoch (each `iter()`) a train loader shuffles its indices with its own CPU generator and
    augments every batch with a second one (`nas.data.augment.augment`); an eval loader keeps the order and only
    normalises. `batch_size` is per process. With `world_size > 1` every rank draws the same permutation
    and takes `perm[rank::world_size]`: disjoint shards, truncated to equal length for train loaders (so
    ranks run the same number of steps), kept whole for eval loaders (so every sample is evaluated once).

    Args:
        images: uint8 (N, C, H, W), on any device.
        labels: int64 (N,).
        indices: int64 (M,): the samples this loader serves.
        batch_size: images per batch on this rank.
        device: where batches are produced.
        train: shuffle and augment; otherwise fixed order and normalisation only.
        mean: per-channel mean in [0, 1] pixel units.
        std: per-channel std in [0, 1] pixel units.
        crop_padding, flip, cutout: augmentation of train batches, see `nas.data.augment.augment`.
        seed: seeds both generators (the augmentation one also mixes in `rank`).
        drop_last: drop the last incomplete batch.
        rank: this process's rank.
        world_size: number of processes.
        channels_last: return x in channels-last memory format.
        device_resident: copy the served images to `device` once here (and keep only that uint8 copy);
            otherwise keep them in host memory and copy each batch (for data larger than the device).
        num_batches: cap on batches per epoch (None = all).
    """

    def __init__(
        self,
        images: torch.Tensor,
        labels: torch.Tensor,
        indices: torch.Tensor,
        batch_size: int,
        *,
        device: torch.device | str,
        train: bool,
        mean: tuple[float, ...],
        std: tuple[float, ...],
        crop_padding: int = 0,
        flip: bool = False,
        cutout: int = 0,
        seed: int = 0,
        drop_last: bool = False,
        rank: int = 0,
        world_size: int = 1,
        channels_last: bool = False,
        device_resident: bool = True,
        num_batches: int | None = None,
    ):
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} outside world of size {world_size}")
        self.device = torch.device(device)
        self.train, self.batch_size = train, batch_size
        self.rank, self.world_size, self.channels_last = rank, world_size, channels_last
        self.aug = {"crop_padding": crop_padding, "flip": flip, "cutout": cutout}
        store = self.device if device_resident else torch.device("cpu")
        indices = indices.to(images.device)
        self.images = images.index_select(0, indices).to(store)  # (M, C, H, W) uint8: the only copy
        self.labels = labels.to(indices.device).index_select(0, indices).to(store)  # (M,)
        self.mean = torch.tensor(mean, dtype=torch.float32, device=self.device)
        self.std = torch.tensor(std, dtype=torch.float32, device=self.device)
        self.shuffle_gen = torch.Generator().manual_seed(derive_seed(seed, Stream.SHUFFLE))
        self.aug_gen = torch.Generator().manual_seed(derive_seed(seed, Stream.AUGMENT, rank))
        self.epoch = 0
        m = self.images.shape[0]
        self.per_rank = m // world_size if train else len(range(rank, m, world_size))
        full = self.per_rank // batch_size if drop_last else -(-self.per_rank // batch_size)
        self.num_batches = full if num_batches is None else min(full, num_batches)

    def __len__(self) -> int:
        return self.num_batches

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        m = self.images.shape[0]
        order = torch.randperm(m, generator=self.shuffle_gen) if self.train else torch.arange(m)
        shard = order[self.rank :: self.world_size][: self.per_rank].to(self.images.device)  # (per_rank,)
        self.epoch += 1
        for i in range(self.num_batches):
            idx = shard[i * self.batch_size : (i + 1) * self.batch_size]  # (B,)
            x = self.images.index_select(0, idx).to(self.device, non_blocking=True)  # (B, C, H, W) uint8
            y = self.labels.index_select(0, idx).to(self.device, non_blocking=True)  # (B,)
            if self.train:
                x = augment(x, self.aug_gen, mean=self.mean, std=self.std, **self.aug)
            else:
                x = normalize(x, self.mean, self.std)
            if self.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            yield x, y

    def state_dict(self) -> dict:
        """Generator states and epoch count. Take it between epochs (a checkpoint at an epoch's end)."""
        gens = {"shuffle": self.shuffle_gen.get_state(), "augment": self.aug_gen.get_state()}
        return gens | {"epoch": self.epoch}

    def load_state_dict(self, state: dict) -> None:
        self.shuffle_gen.set_state(state["shuffle"])
        self.aug_gen.set_state(state["augment"])
        self.epoch = state["epoch"]


# ---- builders -----------------------------------------------------------------------------------------


def _loader(
    cfg: DataConfig, data: ImageSet, indices: torch.Tensor, *, train: bool, seed: int, **kw
) -> TensorLoader:
    """A train loader (shuffled, augmented as cfg says, last batch dropped) or an eval loader over `indices`."""
    aug = {"crop_padding": cfg.crop_padding, "flip": cfg.flip, "cutout": cfg.cutout} if train else {}
    batch_size = cfg.batch_size if train else cfg.eval_batch_size
    return TensorLoader(
        data.images, data.labels, indices, batch_size, train=train, drop_last=train, seed=seed,
        mean=data.info.mean, std=data.info.std, device_resident=cfg.device_resident, **aug, **kw,
    )  # fmt: skip


def split_indices(n: int, train_portion: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A fixed random split of range(n): the first `floor(n * train_portion)` of a seeded permutation, and
    the rest. Returns (weight_indices, arch_indices), disjoint, covering range(n).

    The search passes `data.split_seed` (default 0: one split for every run seed, as DARTS and GDAS keep
    one fixed split), so a sweep over seeds measures the search's own variance, not the split's."""
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(derive_seed(seed, Stream.SPLIT)))
    k = int(n * train_portion)
    return perm[:k], perm[k:]


def search_loaders(
    cfg: DataConfig,
    *,
    device: torch.device | str,
    seed: int,
    rank: int = 0,
    world_size: int = 1,
    channels_last: bool = False,
) -> tuple[TensorLoader, TensorLoader, DatasetInfo]:
    """Loaders for the bilevel search: (weights, architecture, info).

    Only the train split is read (the test set never informs the search). Its first `cfg.subset` images
    are split by a fixed permutation seeded by `cfg.split_seed` (null: by `seed`) into `train_portion` for
    the weight step and the rest for the architecture step. Both loaders shuffle and augment, drop the last batch, and are cut to the
    same number of batches per epoch (the smaller of the two), so one search step takes one batch of each.

    Raises:
        UserError: missing data, or a batch size larger than what a rank gets from either part.
    """
    data = load_dataset(cfg, train=True)
    w_idx, a_idx = split_indices(len(data), cfg.train_portion, _split_seed(cfg, seed))
    steps = min(len(w_idx), len(a_idx)) // world_size // cfg.batch_size
    if steps == 0:
        raise UserError(
            f"data.batch_size={cfg.batch_size} is too large: the search split has {len(w_idx)} / "
            f"{len(a_idx)} images (weights / architecture) for {world_size} process(es)"
        )
    kw = {"device": device, "rank": rank, "world_size": world_size, "channels_last": channels_last}
    weights = _loader(
        cfg, data, w_idx, train=True, seed=derive_seed(seed, Stream.WEIGHT_LOADER), num_batches=steps, **kw
    )
    arch = _loader(
        cfg, data, a_idx, train=True, seed=derive_seed(seed, Stream.ARCH_LOADER), num_batches=steps, **kw
    )
    return weights, arch, data.info


def _split_seed(cfg: DataConfig, seed: int) -> int:
    return seed if cfg.split_seed is None else cfg.split_seed


def arch_eval_loader(
    cfg: DataConfig, *, device: torch.device | str, seed: int, channels_last: bool = False
) -> tuple[TensorLoader, DatasetInfo]:
    """The architecture part of a search's split (what `search_loaders` trains alpha on) as an eval loader:
    fixed order, normalised only, batches of `cfg.eval_batch_size`."""
    data = load_dataset(cfg, train=True)
    _, a_idx = split_indices(len(data), cfg.train_portion, _split_seed(cfg, seed))
    kw = {"device": device, "channels_last": channels_last}
    return _loader(cfg, data, a_idx, train=False, seed=seed, **kw), data.info


def train_loaders(
    cfg: DataConfig,
    *,
    device: torch.device | str,
    seed: int,
    rank: int = 0,
    world_size: int = 1,
    channels_last: bool = False,
) -> tuple[Loader, Loader, DatasetInfo]:
    """Loaders for retraining: (train, test, info).

    The train loader serves the first `cfg.subset` training images, shuffled and augmented, dropping the
    last batch; the test loader serves the whole test split in order, normalised only, in batches of
    `cfg.eval_batch_size` (with several processes each rank evaluates its own disjoint part).

    An image folder that does not fit in memory (`nas.data.stream.wants_stream`) is streamed from disk instead
    (`nas.data.stream.StreamLoader`, the same interface).

    Raises:
        UserError: missing data, or a batch size larger than the training images a rank gets.
    """
    from nas.data import stream  # it builds on this module

    if stream.wants_stream(cfg):
        kw = {"rank": rank, "world_size": world_size, "channels_last": channels_last}
        return stream.stream_loaders(cfg, device=device, seed=seed, **kw)
    train_set, test_set = load_dataset(cfg, train=True), load_dataset(cfg, train=False)
    if len(train_set) // world_size < cfg.batch_size:
        raise UserError(
            f"data.batch_size={cfg.batch_size} is too large for {len(train_set)} training images "
            f"on {world_size} process(es)"
        )
    kw = {"device": device, "rank": rank, "world_size": world_size, "channels_last": channels_last}
    train = _loader(
        cfg,
        train_set,
        torch.arange(len(train_set)),
        train=True,
        seed=derive_seed(seed, Stream.TRAIN_LOADER),
        **kw,
    )
    test = _loader(cfg, test_set, torch.arange(len(test_set)), train=False, seed=seed, **kw)
    return train, test, train_set.info
