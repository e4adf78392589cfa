"""The run configs' dataclass schemas: what `nas search` and `nas train` read, key by key, with defaults.

Each component owns its section's schema and this module assembles them: the space and model sections live
with the space contract (nas.arch.space), tau with its schedules, the sampler's with the samplers, ground
truth with its lookup. Numeric fields' ranges are in nas.core.limits.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from nas.arch.ground_truth import GroundTruthConfig
from nas.arch.space import ModelConfig, SpaceConfig
from nas.sampling.base import SamplerConfig
from nas.sampling.schedules import TauConfig

DEFAULT_SPACE = "darts"  # the space a config that names none searches


@dataclass
class SyntheticConfig:
    """Deterministic class-conditional random images (for tests and smoke runs)."""

    train_size: int = 512
    test_size: int = 256
    image_size: int = 32
    channels: int = 3
    classes: int = 10


@dataclass
class DataConfig:
    name: str = "cifar10"  # cifar10 | cifar100 | fashion_mnist | image_folder | synthetic
    root: str = "data"  # image_folder: the folder holding train/<class>/* and test/<class>/*
    download: bool = False
    batch_size: int = 64
    eval_batch_size: int = 256
    subset: int | None = None  # use only the first N training images; null = all
    train_portion: float = 0.5  # search: fraction of the training images used for weights, rest for alpha
    split_seed: int | None = (
        0  # search: seed of the weight/alpha split; fixed by default; null = the run seed
    )
    image_size: int | None = None  # image_folder: resize every image to this square size once; null = keep
    cache_dir: str | None = (
        None  # image_folder: decoded-array cache; null = <root>/.nas-cache (or ~/.cache/nas)
    )
    crop_padding: int = 4  # random crop with this zero padding; 0 = off
    flip: bool = True
    cutout: int = 0  # cutout square side in pixels; 0 = off
    device_resident: bool = True  # keep the uint8 dataset on the compute device, augment there
    # image_folder streaming (nas.data.stream): decode per batch in worker processes instead of holding the split
    stream: bool | None = None  # null = stream when the decoded training split would exceed stream_above_gb
    stream_above_gb: float = 8.0
    workers: int = 4  # streaming: decoding processes per training process (0 = in the training process)
    color_jitter: float = 0.0  # streaming: ColorJitter brightness/contrast/saturation (hue: half); DARTS 0.4
    synthetic: SyntheticConfig = field(default_factory=SyntheticConfig)


@dataclass
class WeightOptimConfig:
    lr: float = 0.025
    lr_min: float = 0.001
    momentum: float = 0.9
    nesterov: bool = False
    weight_decay: float = 3e-4
    grad_clip: float = 5.0  # 0 = off
    warmup_epochs: int = 0


@dataclass
class ArchOptimConfig:
    lr: float = 3e-4
    betas: tuple[float, float] = (0.5, 0.999)
    weight_decay: float = 1e-3
    # regularisers on alpha (nas.search.regularizers), each ramped from 0 over the architecture epochs
    beta_decay: float = 0.0  # beta-DARTS: lambda * mean logsumexp(alpha) per edge (the paper: 50); 0 = off
    entropy: float = 0.0  # w * mean op entropy: > 0 sharpens, < 0 keeps the distribution spread; 0 = off


@dataclass
class CostConfig:
    """Resource-aware search (`nas.cost`): a cost term in the architecture loss, off while weight is 0."""

    metric: str = "flops"  # flops | params | latency (latency needs a table from `nas cost profile`)
    weight: float = 0.0  # lambda; 0 = no term (a table given is still read to log the costs)
    target: float | None = None  # null: lambda * E[cost]; a value: lambda * max(0, E[cost] - target)
    table: str | None = None  # cost table file; null = count the space's standard retrain network


@dataclass
class GuardConfig:
    """The collapse guard (`nas.search.guard`; DARTS+, Liang et al. 2019): once alpha trains and a derived
    first cell (DARTS: normal) has held at most `max_ops` edges with an op of `ops`, a search stops at the
    first epoch whose cell holds more, and keeps the architecture of the epoch before. Off while null."""

    max_ops: int | None = None
    ops: list[str] | None = None  # null = the space's parameter-free ops (DARTS: pooling, skip_connect)


@dataclass
class DeriveCapConfig:
    """A cap on derive (`nas.cost.budget.derive_capped`; P-DARTS' limit of 2 skip connections, Chen et al.
    2019): the derived first cell (DARTS: normal) holds at most `max_ops` edges with an op of `ops`, the
    derive rule's best cell among those that do. Off while null."""

    max_ops: int | None = None
    ops: list[str] | None = (
        None  # null = the space's parameter-free ops (NB201: none, skip_connect, avg_pool_3x3)
    )


@dataclass
class SearchConfig:
    epochs: int = 50
    bilevel: str = "first_order"  # first_order | second_order
    unrolled_xi: float | None = None  # virtual step size for second order; null = the weight lr
    arch_start_epoch: int = 0  # update alpha only from this epoch on (weights warm up first)
    # what the weight step trains: `sampler` = the sampler's own sample (a relaxed sampler's mixture of every
    # op); `one_hot` = one path per step drawn exactly from the sampler's distribution (Gumbel-max), as the
    # one-hot samplers do anyway: during the warm-up uniform paths (fair training of every op, SPOS)
    weight_sample: str = "sampler"
    derive_exclude: list[str] = field(default_factory=list)  # ops derive never picks, e.g. [none]
    weights: WeightOptimConfig = field(default_factory=WeightOptimConfig)
    arch: ArchOptimConfig = field(default_factory=ArchOptimConfig)
    cost: CostConfig = field(default_factory=CostConfig)
    guard: GuardConfig = field(default_factory=GuardConfig)
    derive_cap: DeriveCapConfig = field(default_factory=DeriveCapConfig)


@dataclass
class RunConfig:
    """The keys every run command has (`nas search`, `nas train`), first in its config.yaml."""

    name: str = "run"
    out_dir: str = "runs/run"
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    amp: str = "none"  # none | bf16
    channels_last: bool = False
    deterministic: bool = False  # cudnn deterministic algorithms (CPU runs are deterministic anyway)
    # search: steps between updates of the progress bar's running loss and tau (`log_every` until issue 25)
    progress_every: int = 50
    progress: bool = True  # tqdm bar
    keep_checkpoints: list[int] = field(default_factory=list)  # epochs whose checkpoint is kept as well
    lr_scaling: str = "none"  # under torchrun: none | linear | sqrt in the number of processes (weight lr)


@dataclass
class SearchRunConfig(RunConfig):
    """Everything `nas search` needs."""

    name: str = "search"  # a redeclared field keeps its place: the key order of config.yaml stays
    out_dir: str = "runs/search"
    data: DataConfig = field(default_factory=lambda: DataConfig(batch_size=64))
    space: SpaceConfig = field(default_factory=lambda: SpaceConfig(name=DEFAULT_SPACE))
    sampler: SamplerConfig = field(default_factory=SamplerConfig)
    tau: TauConfig = field(default_factory=TauConfig)
    search: SearchConfig = field(default_factory=SearchConfig)
    # the space's ground truth (nas.arch.ground_truth), where it has one: the derived cell's accuracy per epoch
    ground_truth: GroundTruthConfig = field(default_factory=GroundTruthConfig)


@dataclass
class TrainConfig:
    epochs: int = 600
    lr: float = 0.025
    lr_schedule: str = "cosine"  # cosine (to lr_min) | step (x lr_decay_rate every lr_decay_epochs epochs)
    lr_min: float = 0.0
    lr_decay_rate: float = 0.97  # step: DARTS' ImageNet recipe multiplies the lr by 0.97 every epoch
    lr_decay_epochs: int = 1
    momentum: float = 0.9
    nesterov: bool = False
    weight_decay: float = 3e-4
    grad_clip: float = 5.0
    warmup_epochs: int = 0
    label_smoothing: float = 0.0
    ema: bool = False  # also evaluate an exponential moving average of the weights (timm ModelEmaV3)
    ema_decay: float = 0.9998
    sync_bn: bool = False  # under torchrun on GPUs: BatchNorm statistics over the global batch


@dataclass
class TrainRunConfig(RunConfig):
    """Everything `nas train` needs (retraining a genotype from scratch)."""

    name: str = "train"
    out_dir: str = "runs/train"
    data: DataConfig = field(default_factory=lambda: DataConfig(batch_size=96, cutout=16))
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
