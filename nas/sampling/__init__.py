"""Architecture samplers (gradient estimators): one registered object per estimator, one file each.

| name         | forward           | gradient to alpha                                   | file          |
| ------------ | ----------------- | --------------------------------------------------- | ------------- |
| `softmax`    | softmax(alpha)    | exact, of the relaxed loss (DARTS)                  | softmax.py    |
| `gumbel`     | Gumbel-softmax    | reparameterised, of the relaxed loss (SNAS)         | gumbel.py     |
| `gumbel_st`  | one-hot           | straight-through Gumbel-softmax                     | gumbel.py     |
| `gdas`       | one-hot, 1 op run | straight-through through the chosen op's weight     | gumbel.py     |
| `reinmax`    | one-hot           | ReinMax, second-order accurate straight-through     | reinmax.py    |
| `gumbel_rao` | one-hot           | Rao-Blackwellised straight-through Gumbel-softmax   | gumbel_rao.py |
| `drnas`      | Dirichlet sample  | reparameterised (implicit), + KL regulariser        | drnas.py      |

The interface and the shared pieces are in `base.py`; the temperature schedules (`SCHEDULES`) in
`schedules.py`. Every module of this package is imported here, so a new estimator is one new file that
defines a `Sampler` subclass with `@register` (plus its tests).
"""

import importlib
import pkgutil

from nas.sampling.base import (
    SAMPLERS,
    ArchSample,
    Sampler,
    SamplerConfig,
    build_sampler,
    check_tau,
    exponential_noise,
    gumbel_noise,
    gumbel_softmax,
    noise_like,
    one_hot_argmax,
    register,
    sample_architecture,
    sample_paths,
    straight_through,
)

for _module in sorted(m.name for m in pkgutil.iter_modules(__path__)):
    importlib.import_module(f"{__name__}.{_module}")

__all__ = [
    "SAMPLERS",
    "ArchSample",
    "Sampler",
    "SamplerConfig",
    "build_sampler",
    "check_tau",
    "exponential_noise",
    "gumbel_noise",
    "gumbel_softmax",
    "noise_like",
    "one_hot_argmax",
    "register",
    "sample_architecture",
    "sample_paths",
    "straight_through",
]
