"""The search-space contract and its registry.

The engine (`nas.search`, `nas.train`) talks to a space only through this interface; concrete spaces
live in the `search_spaces` package and register themselves on import.
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Protocol

import torch
import torch.nn as nn

from nas.arch.genotype import Genotype, format_of, load_genotype_file, parse_genotype_text
from nas.arch.rule import CellRule
from nas.core.errors import UserError
from nas.core.limits import Range
from nas.core.registry import Registry
from nas.core.rundir import GENOTYPE_FILE
from nas.sampling import ArchSample


# The base schemas of the `space` and `model` sections live with the contract that reads them (nas.config
# assembles the sections; a space's `Options` subclasses SpaceConfig).
@dataclass
class SpaceConfig:
    """The keys every search space has. Each space's own keys and defaults (`space.<key>`) live in a
    subclass next to its code (the space's `Options`); `load_config` types the `space` section by the
    chosen `name`, so a key of another space is an unknown key. A subclass may carry `RANGES` (field name
    -> `nas.core.limits.Range`) for its own numeric keys."""

    name: str = ""  # a key of SPACES; a config that names none gets nas.config.DEFAULT_SPACE
    init_channels: int = 16
    layers: int = 8

    RANGES: ClassVar[dict[str, Range]] = {}  # a subclass's own numeric keys -> their ranges (nas.core.limits)

    def check(self, cfg: Any) -> None:
        """Refuse (UserError, one line) what ranges cannot express: rules between the space's keys, or
        between them and the rest of the run's config `cfg`. A space's `Options` extends this."""


@dataclass
class ModelConfig:
    """The `model` section: what `SearchSpace.build_network` reads to build the network a genotype retrains.
    Sizes left null are the space's standard network `network` (`SearchSpace.networks`: DARTS' CIFAR network
    is 36 channels x 20 cells, NAS-Bench-201's 16 channels x 5 cells per stage); `model_options` fills them."""

    init_channels: int | None = None
    layers: int | None = None
    auxiliary: bool = True
    auxiliary_weight: float = 0.4
    drop_path_prob: float = 0.2  # ramped linearly from 0 over training
    network: str = "cifar"  # a key of the space's `networks` (DARTS: cifar | imagenet)


def edge_weights(betas: torch.Tensor, groups: Sequence[Sequence[int]]) -> torch.Tensor:
    """Edge normalisation (PC-DARTS, Xu et al. 2020, sec. 3.3): each edge's weight is the softmax of the
    edge logits `betas` (E,) over its group, a node's incoming edges (`groups` partition range(E)). (E,)"""
    order = torch.tensor([e for group in groups for e in group], device=betas.device)
    weights = torch.cat([torch.softmax(betas[list(group)], dim=0) for group in groups])  # in group order
    return weights[torch.argsort(order)]


class Supernet(nn.Module):
    """Base class for supernets: architecture logits live in `self.alphas`, one (E, K) tensor per cell
    type; everything else is a weight. A supernet with edge normalisation also has `self.betas`, one (E,)
    logit vector per cell type: architecture parameters too, trained with alpha in the architecture step."""

    alphas: nn.ParameterDict

    def edge_logits(self) -> dict[str, nn.Parameter]:
        """The edge-normalisation logits (betas) per cell type; empty where the supernet has none."""
        betas = getattr(self, "betas", None)  # nn.Module.__getattr__ raises for a missing submodule
        return dict(betas) if betas is not None else {}

    def arch_parameters(self) -> list[nn.Parameter]:
        return list(self.alphas.values()) + list(self.edge_logits().values())

    def edge_weights(self, cell_type: str, sample: ArchSample, groups: Sequence[Sequence[int]]):
        """This forward pass's edge weights (E,) of `cell_type` (`edge_weights` of its betas), None without
        edge normalisation. Betas, like alpha, are trained in the architecture step only: where the
        sample's op weights carry no gradient (the weight step samples from detached alphas), neither do
        they."""
        betas = self.edge_logits().get(cell_type)
        if betas is None:
            return None
        return edge_weights(betas if sample.weights.requires_grad else betas.detach(), groups)

    def weight_parameters(self) -> list[nn.Parameter]:
        arch = {id(p) for p in self.arch_parameters()}
        return [p for p in self.parameters() if id(p) not in arch]

    def forward(self, x: torch.Tensor, samples: dict[str, ArchSample]) -> torch.Tensor:  # pragma: no cover
        raise NotImplementedError


class SearchSpace(Protocol):
    """What a search space provides. Adding one is one package under `search_spaces/` plus its import in
    `search_spaces/__init__.py`; nothing in `nas/` names a space. The package:

    - registers an object with the attributes and methods below under its `name` (`SPACES.register`);
      the genotypes it makes carry `space=name`;
    - registers its genotype string format, if it has one, with `nas.arch.genotype.register_format`
      (`GenotypeFormat`: name, space, prefix, title, parse, write; parsing builds cells with `Cell.make`,
      never `eval`), and names it in `string_format`; a space without one leaves it None and its
      genotypes travel as JSON;
    - may add published cells to `ZOO` (in `search_spaces/zoo.py`: `zoo:NAME`);
    - may set `hard_unchosen_grad = True`: `sampler.unchosen_grad: null` then gives the hard samplers'
      unchosen ops a gradient (its reference GDAS form; `nas.sampling.build_sampler`).

    Config keys it reads: `space.*` in `build_supernet` and `sample_random`, typed by its `Options`: a
    `SpaceConfig` subclass (name, init_channels, layers, with the space's own defaults) that adds the
    space's own keys (DARTS: nodes, stem_multiplier), with their ranges in `Options.RANGES`; a config
    naming the space gets exactly these keys, and both methods also take a plain `SpaceConfig`
    (`space_options` fills in the rest); `model.init_channels`,
    `model.layers`, `model.auxiliary`, `model.network` (a key of `networks`) in `build_network`. The
    network it builds has a `drop_path_prob` attribute, which the trainer sets every epoch (ignored
    where the space has no drop path). Its supernet subclasses `Supernet`: one (E, K) alpha tensor per
    cell type in `alphas`, K = len(primitives).
    """

    name: str
    Options: type[SpaceConfig]  # its `space` section: SpaceConfig plus its own keys, with its defaults
    primitives: tuple[str, ...]  # the columns of alpha, in order
    cell_types: tuple[str, ...]  # the keys of Supernet.alphas and Genotype.cells
    # The space's standard retrain networks (`model.network` -> the sizes its literature reports:
    # init_channels, layers, classes, image_size), the defaults of `nas genotype info`; the first is the default
    networks: dict[str, dict[str, int]]
    # its standard retraining protocol, a YAML file under the project's configs/train/ that `nas train` uses
    # without --config (`nas.train.recipe`); None: `nas train` asks for --config
    train_recipe: str | None
    # optional: the `model.*` keys its network has no use for (NB201: model.auxiliary, model.drop_path_prob),
    # each named in one warning line when set (`nas.config.idle`)
    parameter_free: frozenset[str]  # the primitives whose op has no weights (collapse diagnostics)
    input_states: int  # states a cell reads before its first intermediate node (DARTS: 2, NB201: 1)
    # its genotype string format in `nas.arch.genotype.FORMATS` (metrics, TensorBoard)
    string_format: str | None

    def build_supernet(self, cfg: SpaceConfig, num_classes: int, in_channels: int) -> Supernet: ...

    def derive(
        self, alphas: dict[str, torch.Tensor], betas: dict[str, torch.Tensor] | None = None
    ) -> Genotype:
        """The discrete architecture that the space's derive rule reads off the (E, K) logits per cell type
        and, where the supernet has edge normalisation, its (E,) edge logits (`Supernet.edge_logits`)."""
        ...

    def sample_random(self, rng: random.Random, cfg: SpaceConfig) -> Genotype:
        """A uniform draw under the same constraints as `derive` (the random baseline)."""
        ...

    def one_hot(self, genotype: Genotype) -> dict[str, torch.Tensor]:
        """The genotype as supernet op weights per cell type, (E, K) one-hot rows (`nas rank`)."""
        ...

    def validate(self, genotype: Genotype) -> None:
        """Raises UserError naming the first way `genotype` is not a cell of this space."""
        ...

    # --- resource-aware search (`nas.cost`) ---

    def from_one_hot(self, weights: dict[str, torch.Tensor]) -> Genotype:
        """The inverse of `one_hot`."""
        ...

    def cell_rule(self, cell_type: str, edges: int) -> CellRule:
        """The structure of `derive` for a cell type with `edges` alpha rows (`nas.arch.rule`)."""
        ...

    def edge_modules(self, network: nn.Module) -> list[tuple[str, int, nn.Module]]:
        """(cell type, alpha row, op module) for every candidate op of a network from `build_network`."""
        ...

    def build_network(
        self,
        genotype: Genotype,
        cfg: ModelConfig,
        num_classes: int,
        in_channels: int,
        image_size: int | None = None,
    ) -> nn.Module:
        """The discrete network for retraining (`cfg.network`: cifar | imagenet, where the space has one).
        forward(x) -> (logits, aux_logits or None). Raises UserError for a network the space lacks or an
        `image_size` (square input side, when known) the network cannot take."""
        ...


SPACES: Registry[SearchSpace] = Registry("search space", plugins="search_spaces")
# published cells (`zoo:NAME`), each with its provenance; filled by `search_spaces.zoo`
ZOO: Registry[Genotype] = Registry("zoo genotype", plugins="search_spaces.zoo")


def exclude_ops(
    logits: dict[str, torch.Tensor], primitives: tuple[str, ...], exclude: list[str] | tuple[str, ...]
) -> dict[str, torch.Tensor]:
    """The logits with the columns of the `exclude`d ops at -inf, so that a derive rule (which reads
    softmax(logits)) gives them probability 0 and never picks them (`search.derive_exclude`)."""
    if not exclude:
        return logits
    columns = [primitives.index(op) for op in exclude]
    out = {}
    for name, a in logits.items():
        a = a.detach().clone()
        a[..., columns] = float("-inf")
        out[name] = a
    return out


def model_options(space: SearchSpace, cfg: ModelConfig) -> ModelConfig:
    """`cfg` with the sizes it leaves null taken from the space's standard network `cfg.network`."""
    if cfg.init_channels is not None and cfg.layers is not None:
        return cfg
    standard = space.networks.get(cfg.network)
    if standard is None:
        raise UserError(f"model.network={cfg.network}: space {space.name} has no such network (it has: "
                        f"{', '.join(space.networks)})")  # fmt: skip
    return dataclasses.replace(
        cfg,
        init_channels=standard["init_channels"] if cfg.init_channels is None else cfg.init_channels,
        layers=standard["layers"] if cfg.layers is None else cfg.layers,
    )


def space_options(space: SearchSpace, cfg: SpaceConfig) -> SpaceConfig:
    """`cfg` as an instance of the space's `Options`: a plain `SpaceConfig` keeps its name, init_channels
    and layers and gets the space's defaults for its own keys (what `build_supernet` and `sample_random`
    read)."""
    if isinstance(cfg, space.Options):
        return cfg
    keys = {f.name for f in dataclasses.fields(space.Options)}
    return space.Options(**{k: v for k, v in dataclasses.asdict(cfg).items() if k in keys})


def resolve_genotype(spec: str) -> Genotype:
    """A genotype from `zoo:NAME`, a run directory (its genotype.json), a file in any supported format, or
    an inline string in a registered format (`nas.arch.genotype.FORMATS`, e.g. the DARTS `Genotype(...)` or the
    NAS-Bench-201 `|op~0|+...` string), checked against its space."""
    if spec.startswith("zoo:"):
        return ZOO.get(spec[4:])
    if format_of(spec) is not None:
        genotype = parse_genotype_text(spec, source="genotype string")
        SPACES.get(genotype.space).validate(genotype)
        return genotype
    path = Path(spec)
    if path.is_dir():
        path = path / GENOTYPE_FILE
    genotype = load_genotype_file(path)
    SPACES.get(genotype.space).validate(genotype)
    return genotype
