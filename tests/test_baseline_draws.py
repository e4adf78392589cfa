"""What the random baseline and `nas rank` need from every space, and the reference GDAS form for NB201:
uniform random draws under the derive rule's constraints, one-hot op weights that derive inverts and that
run only the genotype's ops, and the unchosen-weight gradient checked against the reference formula."""

from __future__ import annotations

import collections
import random

import pytest
import torch
import torch.nn as nn

import search_spaces  # noqa: F401  (registers the spaces)
from nas.arch.mixed_op import MixedOp
from nas.arch.space import SPACES
from nas.config import SpaceConfig
from nas.sampling import ArchSample
from search_spaces.nb201.ops import build_op

SPACE_NAMES = SPACES.names()


@pytest.mark.parametrize("name", SPACE_NAMES)
def test_random_draws_are_valid_and_derive_inverts_their_one_hot_weights(name):
    space = SPACES.get(name)
    rng = random.Random(0)
    for _ in range(50):
        genotype = space.sample_random(rng, SpaceConfig())
        space.validate(genotype)
        weights = space.one_hot(genotype)
        assert set(weights) == set(space.cell_types)
        for w in weights.values():
            assert w.shape[1] == len(space.primitives) and torch.equal(w.sum(1), torch.ones(w.shape[0]))
        derived = space.derive({k: 10 * w for k, w in weights.items()})
        # the same edges per node; their order within a node follows probabilities that tie here, and a tie
        # between softmax rows may be broken by a last-bit difference (the vectorised exp depends on the column)
        assert {k: [sorted(n) for n in c.nodes] for k, c in derived.cells.items()} == {
            k: [sorted(n) for n in c.nodes] for k, c in genotype.cells.items()
        }
        assert all(derived.cells[k].concat == c.concat for k, c in genotype.cells.items())


def test_darts_draws_are_uniform_over_ops_and_input_pairs():
    space = SPACES.get("darts")
    rng = random.Random(1)
    ops, pairs = collections.Counter(), collections.Counter()
    n = 3000
    for _ in range(n):
        node = space.sample_random(rng, SpaceConfig()).cells["normal"].nodes[2]  # node 4: reads 4 states
        ops.update(op for op, _ in node)
        pairs[tuple(j for _, j in node)] += 1
    assert "none" not in ops and len(ops) == 7 and len(pairs) == 6  # C(4, 2) input pairs
    for count in ops.values():  # 2n ops over 7 kinds: mean 857, sd ~27
        assert abs(count - 2 * n / 7) < 5 * (2 * n / 7) ** 0.5
    for count in pairs.values():  # n pairs over 6: mean 500, sd ~20
        assert abs(count - n / 6) < 5 * (n / 6) ** 0.5


def test_nb201_draws_are_uniform_over_ops_including_none():
    space = SPACES.get("nb201")
    rng = random.Random(2)
    counts = collections.Counter(
        op for _ in range(2000) for op, _ in space.sample_random(rng, SpaceConfig()).cells["cell"].edges()
    )
    assert set(counts) == set(space.primitives)
    for count in counts.values():  # 12,000 ops over 5: mean 2400, sd ~44
        assert abs(count - 2400) < 5 * 2400**0.5


@pytest.mark.parametrize("name", SPACE_NAMES)
def test_one_hot_hard_forward_equals_the_soft_mixture_with_those_weights(name):
    """A genotype inside the supernet: the hard path (only its ops run) gives the soft sum's logits."""
    space = SPACES.get(name)
    torch.manual_seed(0)
    net = space.build_supernet(SpaceConfig(init_channels=4, layers=3 if name == "darts" else 1), 5, 3).eval()
    genotype = space.sample_random(random.Random(3), SpaceConfig())
    weights = space.one_hot(genotype)
    x = torch.randn(2, 3, 16, 16)
    hard = net(x, {k: ArchSample(w, w.argmax(1).tolist()) for k, w in weights.items()})
    soft = net(x, {k: ArchSample(w) for k, w in weights.items()})
    assert torch.allclose(hard, soft, atol=1e-5)


def _edge(seed: int = 0) -> MixedOp:
    torch.manual_seed(seed)
    return MixedOp([build_op(op, 3, 3, 1, affine=False) for op in SPACES.get("nb201").primitives])


@pytest.mark.parametrize("choice", range(5))
def test_unchosen_grad_matches_the_reference_gdas_nb201_formula(choice):
    """AutoDL-Projects `NAS201SearchCell.forward_gdas`: sum(w[k] * op_k(x) if k == chosen else w[k]).
    Our edge must give the same output and the same gradient for every weight; without the option the
    unchosen weights get none."""
    x = torch.randn(2, 3, 6, 6)
    target = torch.randn(2, 3, 6, 6)
    soft = torch.softmax(torch.randn(5), 0)
    hard = torch.zeros(5)
    hard[choice] = 1.0
    edge = _edge()

    def grads(forward) -> tuple[torch.Tensor, torch.Tensor]:
        w = (hard - soft.detach() + soft).detach().requires_grad_()  # the reference's straight-through
        out = forward(w)
        ((out - target) ** 2).sum().backward()
        return out.detach(), w.grad

    reference = grads(lambda w: sum(w[k] * op(x) if k == choice else w[k] for k, op in enumerate(edge.ops)))
    ours = grads(lambda w: edge(x, w, choice, unchosen_grad=True))
    plain = grads(lambda w: edge(x, w, choice))
    assert torch.allclose(ours[0], reference[0], atol=1e-6) and torch.allclose(
        ours[1], reference[1], atol=1e-5
    )
    assert torch.equal(plain[0], ours[0])  # the forward pass is unchanged
    unchosen = [k for k in range(5) if k != choice]
    assert torch.all(plain[1][unchosen] == 0) and torch.all(ours[1][unchosen] != 0)
    # each unchosen weight gets the sum of the output's gradient, the chosen one <grad, op_k(x)>
    grad_out = 2 * (ours[0] - target)
    assert torch.allclose(ours[1][unchosen], grad_out.sum().expand(4), atol=1e-4)
    assert torch.allclose(ours[1][choice], (grad_out * edge.ops[choice](x)).sum(), atol=1e-4)


def test_nb201_search_defaults_to_the_reference_form_and_a_chosen_none_moves_its_alphas_only_with_it():
    from nas.config import SearchRunConfig, load_config
    from nas.sampling import build_sampler

    cfg = load_config(SearchRunConfig, None, ["space.name=nb201"])
    assert build_sampler(cfg.sampler, SPACES.get("nb201")).unchosen_grad
    assert not build_sampler(cfg.sampler, SPACES.get("darts")).unchosen_grad
    cfg.sampler.unchosen_grad = False
    assert not build_sampler(cfg.sampler, SPACES.get("nb201")).unchosen_grad

    space = SPACES.get("nb201")
    net = space.build_supernet(SpaceConfig(init_channels=4, layers=1), 5, 3)
    x = torch.randn(4, 3, 8, 8)
    for flag in (False, True):
        net.zero_grad()
        soft = torch.softmax(net.alphas["cell"], -1)  # (6, 5)
        choices = [3, 3, 3, 0, 3, 3]  # `none` on edge (3<-0), 3x3 convolutions elsewhere
        hard = torch.nn.functional.one_hot(torch.tensor(choices), 5).float()
        samples = {"cell": ArchSample(hard - soft.detach() + soft, choices, flag)}
        nn.functional.cross_entropy(net(x, samples), torch.arange(4)).backward()
        moved = (net.alphas["cell"].grad.abs().sum(1) > 0).tolist()  # (6,)
        assert moved == [True, True, True, flag, True, True]
