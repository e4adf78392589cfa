"""The ImageNet network of the DARTS space (NetworkImageNet): exact reference parameter counts for every
zoo genotype, shapes, the auxiliary head, and the one-line refusals."""

from __future__ import annotations

import pytest
import torch

import search_spaces  # noqa: F401  (registers the spaces)
from nas.arch.genotype import Cell
from nas.arch.space import SPACES
from nas.cli import main
from nas.config import ModelConfig
from nas.core.errors import UserError
from search_spaces import zoo

SPACE = SPACES.get("darts")
DARTS_NAMES = [name for name in zoo.names() if zoo.get(name).space == "darts"]


def _op(op: str, C: int, stride: int) -> int:
    """Parameters of one DARTS op (`cnn/operations.py`): depthwise k x k + pointwise 1x1 + affine BN per
    DilConv, two of them per SepConv; FactorizedReduce = two 1x1 convs C -> C/2 + BN; pools none."""
    if op.startswith("sep_conv"):
        k = int(op[-1])
        return 2 * (k * k * C + C * C + 2 * C)
    if op.startswith("dil_conv"):
        k = int(op[-1])
        return k * k * C + C * C + 2 * C
    if op == "skip_connect":
        return 0 if stride == 1 else 2 * C * (C // 2) + 2 * C
    return 0


def _cell(cell: Cell, C_pp: int, C_p: int, C: int, reduction: bool, reduction_prev: bool) -> int:
    pre0 = (
        2 * C_pp * (C // 2) + 2 * C if reduction_prev else C_pp * C + 2 * C
    )  # FactorizedReduce | ReLUConvBN
    pre1 = C_p * C + 2 * C
    ops = sum(_op(op, C, 2 if reduction and j < 2 else 1) for node in cell.nodes for op, j in node)
    return pre0 + pre1 + ops


def reference_params(name: str, C: int = 48, layers: int = 14, classes: int = 1000, aux: bool = False) -> int:
    """DARTS' NetworkImageNet (`cnn/model.py`) counted layer by layer: stem0 = conv3x3 3 -> C/2, BN, conv3x3
    C/2 -> C, BN; stem1 = conv3x3 C -> C, BN; cells with reductions at layers//3 and 2*layers//3 (the first
    cell's s0 comes from stem0, at twice the resolution); AuxiliaryHeadImageNet after cell 2*layers//3 =
    conv1x1 -> 128, BN, conv2x2 128 -> 768 (no BN), Linear 768 -> classes; Linear classifier."""
    cells = zoo.get(name).cells
    total = 9 * 3 * (C // 2) + 2 * (C // 2) + 9 * (C // 2) * C + 2 * C + 9 * C * C + 2 * C
    C_pp, C_p, C_curr, reduction_prev = C, C, C, True
    for i in range(layers):
        reduction = i in (layers // 3, 2 * layers // 3)
        C_curr *= 2 if reduction else 1
        cell = cells["reduce" if reduction else "normal"]
        total += _cell(cell, C_pp, C_p, C_curr, reduction, reduction_prev)
        reduction_prev = reduction
        C_pp, C_p = C_p, len(cell.concat) * C_curr
        if aux and i == 2 * layers // 3:
            total += 128 * C_p + 2 * 128 + 128 * 768 * 4 + 768 * classes + classes
    return total + C_p * classes + classes


def imagenet(name: str, C: int = 48, layers: int = 14, classes: int = 1000, aux: bool = True, size=None):
    cfg = ModelConfig(init_channels=C, layers=layers, auxiliary=aux, network="imagenet")
    return SPACE.build_network(zoo.get(name), cfg, classes, 3, size)


@pytest.mark.parametrize("name", DARTS_NAMES)
def test_parameter_counts_equal_the_reference(name):
    net = imagenet(name)
    head = sum(p.numel() for n, p in net.named_parameters() if "auxiliary" in n)
    total = sum(p.numel() for p in net.parameters())
    assert total - head == reference_params(name)
    assert total == reference_params(name, aux=True)


def test_darts_v2_is_the_papers_mobile_network():
    """DARTS (Liu et al., 2019, Table 3): DARTS_V2 on ImageNet in the mobile setting has 4.7 M parameters."""
    assert reference_params("DARTS_V2") == 4_718_752
    assert round(reference_params("DARTS_V2") / 1e6, 1) == 4.7


def test_shapes_auxiliary_head_and_drop_path():
    net = imagenet("DARTS_V2", C=8, layers=5, classes=7)
    net.drop_path_prob = 0.2
    net.train()
    for size in (224, 64):  # the reference's 7x7 auxiliary map, and an adaptive fallback
        logits, aux = net(torch.randn(2, 3, size, size))
        assert logits.shape == aux.shape == (2, 7) and torch.isfinite(logits).all()
    net.eval()
    assert net(torch.randn(1, 3, 48, 48))[1] is None
    assert imagenet("DARTS_V2", C=8, layers=5, aux=False).auxiliary_head is None


def test_refusals_are_one_line(capsys):
    with pytest.raises(UserError, match="at least 32x32"):
        imagenet("DARTS_V2", C=8, layers=5, size=16)
    nb201 = ModelConfig(init_channels=4, layers=1, network="imagenet")
    with pytest.raises(UserError, match="NAS-Bench-201"):
        SPACES.get("nb201").build_network(zoo.get("NB201_RESNET"), nb201, 10, 3)
    assert main(["genotype", "info", "zoo:DARTS_V2", "--network", "imagenet", "--image-size", "16"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "16x16" in err


def test_genotype_info_imagenet_defaults(capsys):
    """`--network imagenet` defaults to the mobile setting: 48 channels, 14 cells, 1000 classes, 224x224."""
    assert main(["genotype", "info", "zoo:DARTS_V2", "--network", "imagenet"]) == 0
    out = capsys.readouterr().out
    assert "48 channels, 14 layers, 1000 classes, 3x224x224" in out
    assert "parameters (without auxiliary head): 4,718,752" in out
    assert f"parameters (with auxiliary head):    {reference_params('DARTS_V2', aux=True):,}" in out


def test_step_lr_schedule_decays_by_the_rate_every_period():
    """DARTS' ImageNet protocol: lr_e = 0.1 x 0.97^e (StepLR, step 1, gamma 0.97), after any warmup."""
    from nas.config import TrainConfig
    from nas.train.trainer import build_lr_scheduler

    def lrs(**kw) -> list[float]:
        opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
        sched = build_lr_scheduler(opt, TrainConfig(lr=0.1, lr_schedule="step", **kw))
        return [sched.step(e) or opt.param_groups[0]["lr"] for e in range(6)]

    assert lrs() == pytest.approx([0.1 * 0.97**e for e in range(6)])
    assert lrs(lr_decay_rate=0.5, lr_decay_epochs=2) == pytest.approx([0.1, 0.1, 0.05, 0.05, 0.025, 0.025])
    assert lrs(warmup_epochs=2)[2:] == pytest.approx([0.1 * 0.97**e for e in range(4)])
