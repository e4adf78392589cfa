"""Published cells as Genotypes, with where each comes from.

Each entry is stored in the exact string form its authors published (the DARTS `Genotype(...)` repr or
the NAS-Bench-201 arch string), parsed by its space's format (never `eval`'d), and carries provenance:

- `source`: the paper; `genotype_source`: where the string was copied from (repository and file, as
  text); `reported_test_error`: CIFAR-10 test error in percent as the paper reports it;
  `reported_params_m`: the paper's parameter count in millions (DARTS-space entries); `note`: caveats.

    >>> from search_spaces import zoo
    >>> zoo.names()[:2]
    ['DARTS_V1', 'DARTS_V2']
    >>> zoo.get("DARTS_V2").space
    'darts'
"""

from __future__ import annotations

from typing import Any

from nas.arch.genotype import Genotype
from nas.arch.space import ZOO
from search_spaces.darts.formats import from_darts_string
from search_spaces.nb201.formats import from_nb201_string

_DARTS_V1 = (
    "Genotype(normal=[('sep_conv_3x3', 1), ('sep_conv_3x3', 0), ('skip_connect', 0), ('sep_conv_3x3', 1), "
    "('skip_connect', 0), ('sep_conv_3x3', 1), ('sep_conv_3x3', 0), ('skip_connect', 2)], "
    "normal_concat=[2, 3, 4, 5], reduce=[('max_pool_3x3', 0), ('max_pool_3x3', 1), ('skip_connect', 2), "
    "('max_pool_3x3', 0), ('max_pool_3x3', 0), ('skip_connect', 2), ('skip_connect', 2), "
    "('avg_pool_3x3', 0)], reduce_concat=[2, 3, 4, 5])"
)
_DARTS_V2 = (
    "Genotype(normal=[('sep_conv_3x3', 0), ('sep_conv_3x3', 1), ('sep_conv_3x3', 0), ('sep_conv_3x3', 1), "
    "('sep_conv_3x3', 1), ('skip_connect', 0), ('skip_connect', 0), ('dil_conv_3x3', 2)], "
    "normal_concat=[2, 3, 4, 5], reduce=[('max_pool_3x3', 0), ('max_pool_3x3', 1), ('skip_connect', 2), "
    "('max_pool_3x3', 1), ('max_pool_3x3', 0), ('skip_connect', 2), ('skip_connect', 2), "
    "('max_pool_3x3', 1)], reduce_concat=[2, 3, 4, 5])"
)
# GDAS_V1 in AutoDL-Projects is written as one tuple per node; flattened here, order kept
_GDAS_V1 = (
    "Genotype(normal=[('skip_connect', 0), ('skip_connect', 1), ('skip_connect', 0), ('sep_conv_5x5', 2), "
    "('sep_conv_3x3', 3), ('skip_connect', 0), ('sep_conv_5x5', 4), ('sep_conv_3x3', 3)], "
    "normal_concat=[2, 3, 4, 5], reduce=[('sep_conv_5x5', 0), ('sep_conv_3x3', 1), ('sep_conv_5x5', 2), "
    "('sep_conv_5x5', 1), ('dil_conv_5x5', 2), ('sep_conv_3x3', 1), ('sep_conv_5x5', 0), "
    "('sep_conv_5x5', 1)], reduce_concat=[2, 3, 4, 5])"
)
_PC_DARTS = (
    "Genotype(normal=[('sep_conv_3x3', 1), ('skip_connect', 0), ('sep_conv_3x3', 0), ('dil_conv_3x3', 1), "
    "('sep_conv_5x5', 0), ('sep_conv_3x3', 1), ('avg_pool_3x3', 0), ('dil_conv_3x3', 1)], "
    "normal_concat=range(2, 6), reduce=[('sep_conv_5x5', 1), ('max_pool_3x3', 0), ('sep_conv_5x5', 1), "
    "('sep_conv_5x5', 2), ('sep_conv_3x3', 0), ('sep_conv_3x3', 3), ('sep_conv_3x3', 1), "
    "('sep_conv_3x3', 2)], reduce_concat=range(2, 6))"
)
# SNAS_moderate (two inputs per node); the authors evaluate the `_edge_all` form, which adds only
# `none` edges, so the network and its parameter count are the same
_SNAS_MODERATE = (
    "Genotype(normal=[('dil_conv_5x5', 0), ('skip_connect', 1), ('sep_conv_3x3', 0), ('skip_connect', 1), "
    "('skip_connect', 0), ('skip_connect', 1), ('sep_conv_3x3', 0), ('dil_conv_5x5', 1)], "
    "normal_concat=range(2, 6), reduce=[('max_pool_3x3', 0), ('max_pool_3x3', 1), ('sep_conv_5x5', 0), "
    "('dil_conv_5x5', 1), ('sep_conv_5x5', 0), ('sep_conv_5x5', 1), ('sep_conv_5x5', 0), "
    "('sep_conv_5x5', 1)], reduce_concat=range(2, 6))"
)
_NB201_BEST_CIFAR10 = (
    "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_3x3~2|"
)
# the reference's ResNet_CODE: node1 = conv(0), node2 = conv(1), node3 = skip(0) + skip(2), i.e.
# out = x + conv(conv(x)); written out with the `none` edges the full arch string needs
_NB201_RESNET = "|nor_conv_3x3~0|+|none~0|nor_conv_3x3~1|+|skip_connect~0|none~1|skip_connect~2|"


def _add(name: str, genotype: Genotype, **provenance: Any) -> None:
    ZOO.register(name, Genotype(genotype.space, genotype.cells, {"name": name, **provenance}))


_add(
    "DARTS_V1",
    from_darts_string(_DARTS_V1),
    source="Liu, Simonyan & Yang, DARTS: Differentiable Architecture Search, ICLR 2019 (first order)",
    genotype_source="quark0/darts, cnn/genotypes.py, DARTS_V1",
    reported_test_error=3.00,
    reported_params_m=3.3,
    note="CIFAR-10, 600 epochs with cutout",
)
_add(
    "DARTS_V2",
    from_darts_string(_DARTS_V2),
    source="Liu, Simonyan & Yang, DARTS: Differentiable Architecture Search, ICLR 2019 (second order)",
    genotype_source="quark0/darts, cnn/genotypes.py, DARTS_V2",
    reported_test_error=2.76,
    reported_params_m=3.3,
    note="CIFAR-10, 600 epochs with cutout",
)
_add(
    "GDAS_V1",
    from_darts_string(_GDAS_V1),
    source="Dong & Yang, Searching for A Robust Neural Architecture in Four GPU Hours (GDAS), CVPR 2019",
    genotype_source="D-X-Y/AutoDL-Projects, lib/nas_infer_model/DXYs/genotypes.py, GDAS_V1",
    reported_test_error=2.93,
    reported_params_m=3.4,
    note="both cells searched; the abstract's 2.82% / 2.5M is GDAS (FRC), whose reduction cell is "
    "hand-designed and outside the DARTS space",
)
_add(
    "PC_DARTS",
    from_darts_string(_PC_DARTS),
    source="Xu et al., PC-DARTS: Partial Channel Connections for Memory-Efficient Architecture Search, "
    "ICLR 2020",
    genotype_source="yuhuixu1993/PC-DARTS, genotypes.py, PC_DARTS_cifar",
    reported_test_error=2.57,
    reported_params_m=3.6,
    note="CIFAR-10, DARTS evaluation protocol",
)
_add(
    "SNAS",
    from_darts_string(_SNAS_MODERATE),
    source="Xie, Zheng, Liu & Lin, SNAS: Stochastic Neural Architecture Search, ICLR 2019 "
    "(moderate resource constraint)",
    genotype_source="SNAS-Series/SNAS-Series, SNAS/genotypes.py, SNAS_moderate",
    reported_test_error=2.85,
    reported_params_m=2.8,
    note="CIFAR-10, DARTS evaluation protocol",
)
_add(
    "NB201_BEST_CIFAR10",
    from_nb201_string(_NB201_BEST_CIFAR10),
    source="Dong & Yang, NAS-Bench-201: Extending the Scope of Reproducible Neural Architecture Search, "
    "ICLR 2020",
    genotype_source="the best CIFAR-10 cell of NAS-Bench-201 (also the fixed topology of NATS-Bench's size "
    "space, D-X-Y/AutoDL-Projects)",
    reported_test_error=5.63,
    note="NAS-Bench-201 'optimal' CIFAR-10 test accuracy 94.37% (200 epochs, C=16, N=5)",
)
_add(
    "NB201_RESNET",
    from_nb201_string(_NB201_RESNET),
    source="Dong & Yang, NAS-Bench-201: Extending the Scope of Reproducible Neural Architecture Search, "
    "ICLR 2020 (ResNet baseline)",
    genotype_source="D-X-Y/AutoDL-Projects, lib/models/cell_searchs/genotypes.py, ResNet_CODE",
    reported_test_error=6.03,
    note="the residual block out = x + conv3x3(conv3x3(x)) as an NB201 cell; reported CIFAR-10 test "
    "accuracy 93.97% (NAS-Bench-201 Table 5, ResNet row)",
)


def get(name: str) -> Genotype:
    """The published genotype `name`; raises UserError listing the known names if there is none."""
    return ZOO.get(name)


def names() -> list[str]:
    return ZOO.names()
