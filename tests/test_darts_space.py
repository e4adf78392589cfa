"""The DARTS space: every op, the supernet contract, the derive rule, the retrain network."""

import pytest
import torch

import search_spaces  # noqa: F401
from nas.arch.space import SPACES
from nas.config import ModelConfig, SpaceConfig
from nas.cost.profile import count_parameters
from nas.sampling import sample_architecture
from search_spaces.darts.formats import from_darts_string
from search_spaces.darts.ops import OPS, PRIMITIVES, FactorizedReduce
from search_spaces.darts.space import derive_cell
from search_spaces.darts.supernet import num_edges
from tests.test_genotype import DARTS_V2

SPACE = SPACES.get("darts")


@pytest.mark.parametrize("name", OPS.names())
@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("affine", [True, False])
def test_every_op_shape_and_backward(name, stride, affine):
    op = OPS.get(name)(8, stride, affine)
    x = torch.randn(2, 8, 16, 16, requires_grad=True)
    y = op(x)
    assert y.shape == (2, 8, 16 // stride, 16 // stride)
    y.sum().backward()
    assert x.grad is not None
    if name != "none":
        assert x.grad.abs().sum() > 0


@pytest.mark.parametrize("name", OPS.names())
def test_ops_take_the_uniform_signature_and_refuse_unknown_keywords(name):
    with pytest.raises(TypeError):
        OPS.get(name)(8, 1, True, bogus=1)


@pytest.mark.parametrize("size", [8, 7])
@pytest.mark.parametrize("layout", [torch.contiguous_format, torch.channels_last])
def test_factorized_reduce_is_the_darts_offset_grid(size, layout):
    """The second half reads the grid offset by one pixel (DARTS' x[:, :, 1:, 1:]), bitwise, gradients
    included, and keeps the input's memory layout in its input gradient."""
    torch.manual_seed(0)
    fr = FactorizedReduce(6, 8).to(memory_format=layout)
    x = torch.randn(2, 6, size, size).to(memory_format=layout).requires_grad_()
    y = fr(x)
    y.backward(torch.linspace(-1, 1, y.numel()).view_as(y))
    grads = [x.grad.clone(), *(p.grad.clone() for p in fr.parameters())]
    x.grad = None
    fr.zero_grad()

    h = torch.relu(x)
    h = torch.nn.functional.pad(h, (0, size % 2, 0, size % 2))
    ref = fr.bn(torch.cat([fr.conv_1(h), fr.conv_2(h[:, :, 1:, 1:])], dim=1))
    ref.backward(torch.linspace(-1, 1, ref.numel()).view_as(ref))
    assert torch.equal(y, ref)
    for got, want in zip(grads, [x.grad, *(p.grad for p in fr.parameters())]):
        assert torch.equal(got, want)
    assert grads[0].is_contiguous(memory_format=layout)


def test_affine_free_batchnorm_in_the_supernet():
    net = SPACE.build_supernet(SpaceConfig(init_channels=4, layers=3), 10, 3)
    bns = [
        m
        for name, m in net.named_modules()
        if isinstance(m, torch.nn.BatchNorm2d) and name.startswith("cells")
    ]
    assert bns and all(not bn.affine for bn in bns)


def test_supernet_contract():
    net = SPACE.build_supernet(SpaceConfig(init_channels=4, layers=6), 10, 3)
    arch, weights = net.arch_parameters(), net.weight_parameters()
    assert {id(p) for p in arch}.isdisjoint({id(p) for p in weights})
    assert len(arch) + len(weights) == len(list(net.parameters()))
    assert sorted(net.alphas) == ["normal", "reduce"]
    assert net.alphas["normal"].shape == (num_edges(4), len(PRIMITIVES)) == (14, 8)
    assert [c.reduction for c in net.cells] == [False, False, True, False, True, False]  # 1/3 and 2/3


@pytest.mark.parametrize("sampler", ["softmax", "gumbel", "gumbel_st", "gdas"])
def test_supernet_forward_backward_reaches_alpha(sampler):
    net = SPACE.build_supernet(SpaceConfig(init_channels=4, layers=3), 10, 3)
    samples = sample_architecture(dict(net.alphas), sampler, 1.0, torch.Generator().manual_seed(0))
    out = net(torch.randn(2, 3, 16, 16), samples)
    assert out.shape == (2, 10)
    out.sum().backward()
    assert all(a.grad is not None and torch.isfinite(a.grad).all() for a in net.arch_parameters())


def test_derive_rule_on_hand_made_probabilities():
    K = len(PRIMITIVES)
    probs = torch.full((num_edges(4), K), 0.01)
    none, sep3, skip = (
        PRIMITIVES.index("none"),
        PRIMITIVES.index("sep_conv_3x3"),
        PRIMITIVES.index("skip_connect"),
    )
    probs[:, none] = 0.9  # `none` is never chosen and never ranks an edge
    probs[0, sep3] = 0.5  # node 2: edges 0 and 1
    probs[1, skip] = 0.3
    probs[4, skip] = 0.6  # node 3: edges 2, 3, 4 -> inputs 0, 1, 2; best are input 2 then input 0
    probs[2, sep3] = 0.2
    cell = derive_cell(probs, PRIMITIVES, 4)
    assert cell.nodes[0] == (("sep_conv_3x3", 0), ("skip_connect", 1))
    assert cell.nodes[1] == (("skip_connect", 2), ("sep_conv_3x3", 0))
    assert cell.concat == (2, 3, 4, 5)
    assert all(op != "none" for op, _ in cell.edges())
    for i, node in enumerate(cell.nodes):
        assert len(node) == 2 and len({j for _, j in node}) == 2 and all(j < i + 2 for _, j in node)


def test_derived_genotype_validates_and_builds():
    net = SPACE.build_supernet(SpaceConfig(init_channels=4, layers=3), 10, 3)
    g = SPACE.derive(dict(net.alphas))
    SPACE.validate(g)
    model = SPACE.build_network(g, ModelConfig(init_channels=4, layers=3, auxiliary=False), 10, 3)
    logits, aux = model(torch.randn(2, 3, 16, 16))
    assert logits.shape == (2, 10) and aux is None


def test_darts_v2_parameter_count_is_exact():
    """The DARTS reference logs `param size = 3.349342MB` for DARTS_V2 at 36 channels, 20 layers."""
    net = SPACE.build_network(from_darts_string(DARTS_V2), ModelConfig(init_channels=36, layers=20), 10, 3)
    assert count_parameters(net, exclude="auxiliary") == 3_349_342


def test_network_with_auxiliary_head_and_drop_path():
    net = SPACE.build_network(from_darts_string(DARTS_V2), ModelConfig(init_channels=8, layers=6), 10, 3)
    net.drop_path_prob = 0.2
    net.train()
    logits, aux = net(torch.randn(4, 3, 32, 32))
    assert logits.shape == aux.shape == (4, 10)
    net.eval()
    assert net(torch.randn(1, 3, 32, 32))[1] is None


def test_network_on_fashion_mnist_sized_input():
    net = SPACE.build_network(from_darts_string(DARTS_V2), ModelConfig(init_channels=8, layers=6), 10, 1)
    net.train()
    logits, aux = net(torch.randn(2, 1, 28, 28))
    assert logits.shape == aux.shape == (2, 10)
