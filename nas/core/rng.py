"""The run's named random streams: every generator a run seeds is `derive_seed(seed, Stream.X, ...)`, so
each stream is independent of the others and a stream's number never changes meaning (checkpoints and
recorded runs depend on these values: add new streams at the end, never renumber)."""

from __future__ import annotations

from enum import IntEnum

import numpy as np


class Stream(IntEnum):
    SHUFFLE = 0  # a loader's batch order
    AUGMENT = 1  # a loader's crops, flips and cutout (per rank)
    SPLIT = 2  # the search's weight / architecture split (seeded by data.split_seed)
    WEIGHT_LOADER = 3  # the search's weight-step loader
    ARCH_LOADER = 4  # the search's architecture-step loader
    TRAIN_LOADER = 5  # the retrain loader
    INIT = 6  # the retrain network's initial weights (per rank)
    WORKERS = 7  # the streaming loader's worker processes


def sampler_seed(seed: int) -> int:
    """The seed of the search's architecture-noise generator (the sampler's Gumbel draws): `seed + 1`,
    older than the named streams above and kept so that every recorded search draws the same noise."""
    return seed + 1


def derive_seed(*keys: int) -> int:
    """An independent seed for each tuple of integers (numpy's SeedSequence hashing)."""
    return int(np.random.SeedSequence([int(k) for k in keys]).generate_state(1, dtype=np.uint64)[0])
