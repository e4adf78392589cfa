"""Typed configuration: dataclass schemas, YAML presets and `key=value` overrides (OmegaConf).

`load_config(schema, path, overrides)` merges schema defaults <- YAML file <- dotlist overrides, checks
every key and type against the schema, and returns a plain dataclass instance. Library code only ever
sees these dataclasses, never a raw DictConfig.

- `schema`: the run configs' dataclasses (the sections each component owns are assembled here)
- `load`: reading (defaults, file, overrides, renamed keys) and writing back (`to_yaml`, `to_dict`, `flat`)
- `checks`: the value checks types cannot express (`validate`)
- `idle`: one warning line per key a run sets but does not read
"""

from nas.arch.ground_truth import GroundTruthConfig
from nas.arch.space import ModelConfig, SpaceConfig
from nas.config.checks import validate
from nas.config.load import (
    LEGACY_SPACE_KEYS,
    RENAMED_KEYS,
    flat,
    load_config,
    load_structured,
    to_dict,
    to_yaml,
)
from nas.config.schema import (
    DEFAULT_SPACE,
    ArchOptimConfig,
    CostConfig,
    DataConfig,
    DeriveCapConfig,
    GuardConfig,
    RunConfig,
    SearchConfig,
    SearchRunConfig,
    SyntheticConfig,
    TrainConfig,
    TrainRunConfig,
    WeightOptimConfig,
)
from nas.sampling.base import SamplerConfig
from nas.sampling.schedules import TauConfig

__all__ = [
    "DEFAULT_SPACE", "LEGACY_SPACE_KEYS", "RENAMED_KEYS", "ArchOptimConfig", "CostConfig", "DataConfig",
    "DeriveCapConfig", "GroundTruthConfig", "GuardConfig", "ModelConfig", "RunConfig", "SamplerConfig",
    "SearchConfig", "SearchRunConfig", "SpaceConfig", "SyntheticConfig", "TauConfig", "TrainConfig",
    "TrainRunConfig", "WeightOptimConfig", "flat", "load_config", "load_structured", "to_dict", "to_yaml",
    "validate",
]  # fmt: skip
