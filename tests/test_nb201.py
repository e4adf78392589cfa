"""The NAS-Bench-201 space: exact parameter counts, the supernet under every sampler, derive, validate."""

from __future__ import annotations

import itertools

import pytest
import torch
import torch.nn as nn

import search_spaces  # noqa: F401  (registers the spaces)
from nas.arch.genotype import Cell, Genotype
from nas.arch.mixed_op import MixedOp
from nas.arch.space import SPACES
from nas.config import ModelConfig, SpaceConfig
from nas.core.errors import UserError
from nas.sampling import SAMPLERS, sample_architecture
from search_spaces.nb201.formats import from_nb201_string, to_nb201_string
from search_spaces.nb201.network import InferCell, TinyNetwork
from search_spaces.nb201.ops import ResNetBasicBlock
from search_spaces.nb201.supernet import EDGES, SearchCell

SPACE = SPACES.get("nb201")
PRIMITIVES = ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")


def arch(ops: list[str]) -> str:
    """NB201 arch string from 6 ops in edge order (1<-0), (2<-0), (2<-1), (3<-0), (3<-1), (3<-2)."""
    it = iter(ops)
    return "+".join("|" + "|".join(f"{next(it)}~{j}" for j in range(i)) + "|" for i in range(1, 4))


def reference_params(ops: list[str], C: int = 16, N: int = 5, classes: int = 10, in_ch: int = 3) -> int:
    """Parameter count of the reference TinyNetwork, layer by layer (AutoDL-Projects, NAS-Bench-201):
    stem conv3x3 + BN; per cell, each nor_conv_kxk = k*k*c*c conv + 2c affine BN (other ops have none);
    ResNetBasicblock(ci, co) = conv3x3 ci->co + BN, conv3x3 co->co + BN, 1x1 shortcut ci->co;
    lastact BN(4C); Linear(4C, classes)."""
    kernel = {"nor_conv_1x1": 1, "nor_conv_3x3": 9}

    def cell(c: int) -> int:
        return sum(kernel[op] * c * c + 2 * c for op in ops if op in kernel)

    def block(ci: int, co: int) -> int:
        return 9 * ci * co + 2 * co + 9 * co * co + 2 * co + ci * co

    stem = 9 * in_ch * C + 2 * C
    cells = N * (cell(C) + cell(2 * C) + cell(4 * C))
    return stem + cells + block(C, 2 * C) + block(2 * C, 4 * C) + 2 * 4 * C + 4 * C * classes + classes


def count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def network(text: str, C: int = 16, N: int = 5, classes: int = 10, in_ch: int = 3) -> nn.Module:
    return SPACE.build_network(
        from_nb201_string(text), ModelConfig(init_channels=C, layers=N), classes, in_ch
    )


def test_registration():
    assert SPACE.name == "nb201"
    assert SPACE.primitives == PRIMITIVES
    assert SPACE.cell_types == ("cell",)
    assert EDGES == ((1, 0), (2, 0), (2, 1), (3, 0), (3, 1), (3, 2))


# Published NAS-Bench-201 extremes (benchmark 'params' in MB x 1e6, C=16, N=5): the smallest network is
# any cell without convolutions, the largest the all-nor_conv_3x3 cell.
PUBLISHED = [
    (["none"] * 6, 10, 73_306),
    (["nor_conv_3x3"] * 6, 10, 1_531_546),
    (["none"] * 6, 100, 79_156),
    (["nor_conv_3x3"] * 6, 100, 1_537_396),
    (["skip_connect"] * 6, 120, 80_456),  # ImageNet16-120 (16x16 inputs do not change the count)
]


@pytest.mark.parametrize("ops,classes,expected", PUBLISHED)
def test_published_parameter_counts(ops, classes, expected):
    assert reference_params(ops, classes=classes) == expected
    assert count(network(arch(ops), classes=classes)) == expected


@pytest.mark.parametrize("seed", range(6))
def test_parameter_count_matches_reference_formula(seed):
    g = torch.Generator().manual_seed(seed)
    ops = [PRIMITIVES[i] for i in torch.randint(0, 5, (6,), generator=g).tolist()]
    C, N, classes, in_ch = (16, 5, 10, 3) if seed < 3 else (8, 2, 7, 1)
    assert count(network(arch(ops), C, N, classes, in_ch)) == reference_params(ops, C, N, classes, in_ch)


def test_network_layout_and_forward():
    net = network(
        arch(["nor_conv_3x3", "avg_pool_3x3", "skip_connect", "none", "nor_conv_1x1", "none"]), 8, 2
    )
    assert isinstance(net, TinyNetwork)
    kinds = [type(cell) for cell in net.cells]
    assert (
        kinds == [InferCell] * 2 + [ResNetBasicBlock] + [InferCell] * 2 + [ResNetBasicBlock] + [InferCell] * 2
    )
    for m in net.modules():
        if isinstance(m, nn.BatchNorm2d):
            assert m.affine and m.track_running_stats
    net.drop_path_prob = 0.3  # accepted and ignored
    logits, aux = net(torch.randn(2, 3, 32, 32))
    assert logits.shape == (2, 10) and aux is None and torch.isfinite(logits).all()
    net.eval()
    assert net(torch.randn(1, 3, 16, 16))[0].shape == (1, 10)


def supernet(in_channels: int = 3) -> nn.Module:
    """A tiny supernet whose alpha disfavours `none`: a sample that cuts every path makes a cell output
    exactly zero, and ReLU'(0) = 0 then blocks all gradients (a degenerate sample, not a bug)."""
    torch.manual_seed(0)
    net = SPACE.build_supernet(SpaceConfig(name="nb201", init_channels=4, layers=1), 5, in_channels)
    with torch.no_grad():
        net.alphas["cell"][:, 0] = -3.0
    return net


def test_supernet_parameters():
    net = supernet()
    assert list(net.alphas) == ["cell"] and net.alphas["cell"].shape == (6, 5)
    arch_ids = {id(p) for p in net.arch_parameters()}
    weight_ids = {id(p) for p in net.weight_parameters()}
    assert not arch_ids & weight_ids and arch_ids | weight_ids == {id(p) for p in net.parameters()}
    for cell in net.cells:
        bns = [m for m in cell.modules() if isinstance(m, nn.BatchNorm2d)]
        assert bns and all(not bn.affine for bn in bns) == isinstance(cell, SearchCell)


@pytest.mark.parametrize("sampler", SAMPLERS.names())
def test_every_sampler_trains_weights_and_alpha(sampler):
    net = supernet()
    samples = sample_architecture(net.alphas, sampler, 1.0, torch.Generator().manual_seed(1))
    logits = net(torch.randn(4, 3, 8, 8), samples)
    assert logits.shape == (4, 5)
    nn.functional.cross_entropy(logits, torch.arange(4)).backward()
    grad = net.alphas["cell"].grad
    assert grad is not None and torch.isfinite(grad).all() and grad.abs().sum() > 0
    assert net.classifier.weight.grad is not None


def test_gdas_runs_only_the_chosen_op():
    net = supernet()
    samples = sample_architecture(net.alphas, "gdas", 1.0, torch.Generator().manual_seed(2))
    choices = samples["cell"].choices
    ran: list[tuple[int, int]] = []
    for cell in net.cells:
        if isinstance(cell, SearchCell):
            for e, mixed in enumerate(cell.edges):
                assert isinstance(mixed, MixedOp)
                for k, op in enumerate(mixed.ops):
                    op.register_forward_hook(lambda *_, e=e, k=k: ran.append((e, k)))
    net(torch.randn(2, 3, 8, 8), samples).sum().backward()
    cells = sum(isinstance(c, SearchCell) for c in net.cells)
    assert sorted(ran) == sorted([(e, choices[e]) for e in range(6)] * cells)
    assert net.alphas["cell"].grad.abs().sum() > 0


def test_derive_is_argmax_per_edge_with_none():
    g = torch.Generator().manual_seed(3)
    for _ in range(20):
        alpha = torch.randn(6, 5, generator=g)
        alpha[torch.randint(0, 6, (1,), generator=g), 0] = 10.0  # some edge prefers `none`
        genotype = SPACE.derive({"cell": alpha})
        SPACE.validate(genotype)
        cell = genotype.cells["cell"]
        assert cell.concat == (3,)
        for i, node in enumerate(cell.nodes, start=1):
            assert [j for _, j in node] == list(range(i))
            for op, j in node:
                assert op == PRIMITIVES[alpha[EDGES.index((i, j))].argmax()]
        assert "none" in to_nb201_string(genotype)


def test_every_architecture_round_trips():
    """All 5^6 = 15,625 cells validate, and string -> genotype -> string is the identity."""
    seen = set()
    for ops in itertools.product(PRIMITIVES, repeat=6):
        text = arch(list(ops))
        genotype = from_nb201_string(text)
        SPACE.validate(genotype)
        assert to_nb201_string(genotype) == text
        seen.add(genotype.cells["cell"])
    assert len(seen) == 15_625


@pytest.mark.parametrize("seed", range(5))
def test_derive_inverts_one_hot_alpha(seed):
    ops = [PRIMITIVES[i] for i in torch.randint(0, 5, (6,), generator=torch.Generator().manual_seed(seed))]
    alpha = torch.zeros(6, 5)
    for e, op in enumerate(ops):
        alpha[e, PRIMITIVES.index(op)] = 1.0
    assert SPACE.derive({"cell": alpha}) == from_nb201_string(arch(ops))


BAD = {
    "wrong space": Genotype("darts", {"cell": Cell.make([[("none", 0)]], [3])}),
    "wrong cells": Genotype("nb201", {"normal": from_nb201_string(arch(["none"] * 6)).cells["cell"]}),
    "unknown op": from_nb201_string(arch(["sep_conv_3x3"] + ["none"] * 5)),
    "too few nodes": from_nb201_string("|none~0|+|none~0|none~1|"),
    "missing edge": from_nb201_string("|none~0|+|none~0|+|none~0|none~1|none~2|"),
    "input twice": from_nb201_string("|none~0|+|none~0|none~0|+|none~0|none~1|none~2|"),
    "input out of range": from_nb201_string("|none~0|+|none~0|none~2|+|none~0|none~1|none~2|"),
    "bad concat": Genotype(
        "nb201", {"cell": Cell.make(from_nb201_string(arch(["none"] * 6)).cells["cell"].nodes, [2])}
    ),
}


@pytest.mark.parametrize("name", BAD)
def test_validate_rejects(name):
    with pytest.raises(UserError):
        SPACE.validate(BAD[name])
    with pytest.raises(UserError):
        SPACE.build_network(BAD[name], ModelConfig(init_channels=4, layers=1), 10, 3)
