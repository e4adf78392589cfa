"""Every bound the framework puts on its input, in one place.

- `RANGES`: the allowed range of every numeric config field (search and retrain), checked by one walk over
  the config (`check_ranges`). An options class that lives next to its code (a search space's `Options`)
  carries the ranges of its own fields instead, as `RANGES` (field name -> Range), so they stay with it.
  NaN and infinity are refused everywhere, and every range is finite at both ends. A numeric field without
  exactly one range is a bug (tests/test_limits.py checks every field, of every space's and sampler's
  options too): every value inside its range must run or be refused in one line (tests/test_hostile_props.py).
- Genotype bounds (`MAX_*`): what any genotype, in any of its formats, may declare, so that a small file
  cannot make the parser or a network builder allocate without limit.

Upper bounds are far above any published setting; they exist so that a typo (`layers=1000000`) is refused
in a line instead of running for minutes. What fits the machine is decided by `nas.run.memory`.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from nas.core.errors import UserError

INF = math.inf
SEED_MAX = 2**63 - 1  # seeds go through numpy's SeedSequence and torch.manual_seed: non-negative, 64-bit
EPOCHS_MAX = 10**6

# genotypes (every format)
MAX_GENOTYPE_BYTES = 1 << 20  # a genotype file or string; the largest published one is under 2 KB
MAX_CELLS = 16  # cell types in one genotype
MAX_NODES = 32  # intermediate nodes per cell
MAX_EDGES_PER_NODE = 64
MAX_OP_NAME = 64  # characters

# image files (image_folder, streaming): checked from the header, before decoding
MAX_IMAGE_PIXELS = 64 * 2**20  # 64 Mpixel, 192 MB decoded as RGB; ImageNet's largest image is under 20 Mpixel


@dataclass(frozen=True)
class Range:
    """lo <= x <= hi; `lo_open` / `hi_open` make that end strict."""

    lo: float
    hi: float
    lo_open: bool = False
    hi_open: bool = False

    def __contains__(self, x: float) -> bool:
        above = x > self.lo if self.lo_open else x >= self.lo
        below = x < self.hi if self.hi_open else x <= self.hi
        return above and below

    def __str__(self) -> str:
        if self.hi == INF:
            return "finite" if self.lo == -INF else f"{'>' if self.lo_open else '>='} {_num(self.lo)}"
        lo, hi = _num(self.lo), _num(self.hi)
        return f"in {'(' if self.lo_open else '['}{lo}, {hi}{')' if self.hi_open else ']'}"


def _num(x: float) -> str:
    return str(x) if isinstance(x, int) else f"{x:g}"


COEFF_MAX = 1e6  # weight decay, clipping norms, loss weights: far above any published value
LR = Range(0, 1e3, lo_open=True)  # a step of 1e3 diverges in one step; the run then stops in one line
LR_MIN = Range(0, 1e3)
COEFF = Range(0, COEFF_MAX)  # 0 = off where the key has an off
POSITIVE_COEFF = Range(0, COEFF_MAX, lo_open=True)
TAU = Range(1e-2, 1e4)  # DESIGN: no sampler may produce NaN or inf for tau down to 0.01
UNIT_OPEN = Range(0, 1, hi_open=True)  # momentum, Adam betas, label smoothing, drop path: [0, 1)
EPOCHS = Range(1, EPOCHS_MAX)
WARMUP = Range(0, EPOCHS_MAX)
SEED = Range(0, SEED_MAX)
BATCH = Range(1, 2**20)
CHANNELS = Range(
    1, 2**20
)  # what fits is decided by nas.run.memory: a too-wide build stops at its first parameter too many
LAYERS = Range(1, 100)  # building takes Python time per cell, even a build nas.run.memory refuses: bound it

RANGES: dict[str, Range] = {
    "seed": SEED,
    "progress_every": Range(1, 10**9),
    "keep_checkpoints": EPOCHS,
    "data.batch_size": Range(2, 2**20),  # BatchNorm in training: a pooled 1x1 map of one image is one value
    "data.eval_batch_size": BATCH,
    "data.subset": Range(1, 2**40),
    "data.train_portion": Range(0, 1, lo_open=True, hi_open=True),
    "data.split_seed": SEED,
    "data.image_size": Range(1, 4096),
    "data.crop_padding": Range(0, 64),
    "data.cutout": Range(0, 4096),
    "data.synthetic.train_size": Range(1, 10**7),
    "data.synthetic.test_size": Range(1, 10**7),
    "data.synthetic.image_size": Range(1, 4096),
    "data.synthetic.channels": Range(1, 64),
    "data.synthetic.classes": Range(2, 10**5),
    "data.workers": Range(0, 256),
    "data.color_jitter": Range(0, 1),
    "data.stream_above_gb": Range(0, 1e6),
    "space.init_channels": CHANNELS,
    "space.layers": LAYERS,
    "tau.start": TAU,
    "tau.end": TAU,
    "tau.warmup_epochs": WARMUP,
    # per epoch; its sign is checked against start/end by nas.sampling.schedules
    "tau.rate": Range(-1e4, 1e4),
    "tau.step_every": Range(1, EPOCHS_MAX),
    "tau.step_factor": Range(1e-6, 1e6),
    "search.epochs": EPOCHS,
    "search.unrolled_xi": LR_MIN,
    "search.arch_start_epoch": Range(0, EPOCHS_MAX),
    "search.weights.lr": LR,
    "search.weights.lr_min": LR_MIN,
    "search.weights.momentum": UNIT_OPEN,
    "search.weights.weight_decay": COEFF,
    "search.weights.grad_clip": COEFF,  # 0 = off
    "search.weights.warmup_epochs": WARMUP,
    "search.arch.lr": LR,
    "search.arch.betas": UNIT_OPEN,
    "search.arch.weight_decay": COEFF,
    "search.arch.beta_decay": Range(0, 1e4),
    "search.arch.entropy": Range(-1e4, 1e4),
    "search.cost.weight": COEFF,  # lambda; 0 = off
    "search.cost.target": Range(0, 1e18),  # null = no hinge
    "search.guard.max_ops": Range(0, MAX_NODES * MAX_EDGES_PER_NODE),  # null = off
    "search.derive_cap.max_ops": Range(0, MAX_NODES * MAX_EDGES_PER_NODE),  # null = off
    "ground_truth.epochs": EPOCHS,  # a space's source checks its own values (NATS-Bench: 12 or 200)
    "ground_truth.trial_seed": SEED,
    "model.init_channels": CHANNELS,
    "model.layers": LAYERS,
    "model.auxiliary_weight": COEFF,
    "model.drop_path_prob": UNIT_OPEN,
    "train.epochs": EPOCHS,
    "train.lr": LR,
    "train.lr_min": LR_MIN,
    "train.momentum": UNIT_OPEN,
    "train.weight_decay": COEFF,
    "train.grad_clip": COEFF,  # 0 = off
    "train.warmup_epochs": WARMUP,
    "train.label_smoothing": UNIT_OPEN,
    "train.ema_decay": Range(0, 1),
    "train.lr_decay_rate": Range(0, 1, lo_open=True),
    "train.lr_decay_epochs": Range(1, EPOCHS_MAX),
}


# `nas genotype info` flags
INFO_RANGES: dict[str, Range] = {
    "--init-channels": CHANNELS,
    "--layers": LAYERS,
    "--classes": Range(1, 10**5),
    "--in-channels": Range(1, 64),
    "--image-size": Range(1, 4096),
}
GROUND_TRUTH_RANGES: dict[str, Range] = {  # the --benchmark-* flags of genotype info and rank
    "--benchmark-epochs": EPOCHS,  # the source checks its own values (NATS-Bench: 12 or 200)
    "--benchmark-seed": SEED,
}
COST_RANGES: dict[str, Range] = {  # `nas cost table|profile`: a network as `nas genotype info` sizes it
    **INFO_RANGES,
    "--nodes": Range(1, 10),  # DARTS' space.nodes
}
PROFILE_RANGES: dict[str, Range] = {  # `nas cost profile`: each op is run warmup + repeats times
    "--batch": BATCH,
    "--warmup": Range(0, 1000),
    "--repeats": Range(1, 10_000),
}
BUDGET = Range(0, 1e30)  # `nas derive --max-flops|params|latency X`
BENCH_RANGES: dict[str, Range] = {  # `nas bench`: steps per setting
    "--steps": Range(1, 100_000),
    "--warmup": Range(0, 10_000),
    "--rounds": Range(1, 1000),
}
RANK_RANGES: dict[str, Range] = {  # nas rank: each random cell costs one pass over the architecture split
    "--random": Range(0, 100_000),
    "--random-seed": Range(0, 2**31 - 1),
}


def check_flags(values: dict[str, Any], ranges: dict[str, Range]) -> None:
    """Refuse the first command-line flag (`--layers`) whose value (`values["layers"]`) is out of range."""
    for flag, allowed in ranges.items():
        value = values[flag.lstrip("-").replace("-", "_")]
        if value is not None and value not in allowed:  # None: not given (the space's default)
            raise UserError(f"{flag} must be {allowed}, got {value}")


def numeric_fields(cfg: Any, prefix: str = "") -> Iterator[tuple[str, Any, Range]]:
    """(dotted key, value, allowed range) of every int or float field of a config dataclass (tuples: one per
    element). The range is `RANGES[key]`, else the dataclass's own `RANGES[field name]`.

    Raises:
        LookupError: a numeric field without a range (a bug: every value a user can type has its bounds).
    """
    own = getattr(cfg, "RANGES", {})
    for f in dataclasses.fields(cfg):
        key, value = prefix + f.name, getattr(cfg, f.name)
        allowed = RANGES.get(key, own.get(f.name))
        if dataclasses.is_dataclass(value):
            yield from numeric_fields(value, key + ".")
        elif isinstance(value, (tuple, list)):
            numbers = [v for v in value if isinstance(v, (int, float)) and not isinstance(v, bool)]
            yield from ((key, v, _known(key, allowed)) for v in numbers)
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            yield key, value, _known(key, allowed)


def _known(key: str, allowed: Range | None) -> Range:
    if allowed is None:
        raise LookupError(f"{key} has no range (nas.core.limits.RANGES or its options class's RANGES)")
    return allowed


def check_ranges(cfg: Any, prefix: str = "") -> None:
    """Refuse the first numeric field outside its range (or NaN / infinite) with one line naming it
    (`prefix` + its dotted key)."""
    for key, value, allowed in numeric_fields(cfg, prefix):
        finite = not isinstance(value, float) or math.isfinite(value)
        if not finite or value not in allowed:
            rule = str(allowed)
            if isinstance(value, float) and rule != "finite":
                rule = "finite and " + rule
            raise UserError(f"{key} must be {rule}, got {value}")
