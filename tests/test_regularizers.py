"""Architecture regularisers (beta decay, entropy) and ops excluded from derive, for every sampler."""

import math

import pytest
import torch

import search_spaces  # noqa: F401
from nas.arch.space import SPACES, exclude_ops
from nas.config import SearchRunConfig, load_config
from nas.core.errors import UserError
from nas.sampling import SAMPLERS, build_sampler
from nas.search.regularizers import arch_penalty, beta_decay, mean_entropy, ramp
from nas.search.runner import SearchRunner
from tests.conftest import TINY_SEARCH


def _alphas(seed=0, scale=2.0):
    g = torch.Generator().manual_seed(seed)
    return {
        "normal": scale * torch.randn(14, 8, generator=g),
        "reduce": scale * torch.randn(14, 8, generator=g),
    }


def test_beta_decay_gradient_is_each_edges_softmax_over_the_edge_count():
    alphas = {k: a.requires_grad_() for k, a in _alphas().items()}
    grads = torch.autograd.grad(beta_decay(alphas), list(alphas.values()))
    for a, g in zip(alphas.values(), grads):
        assert torch.allclose(g, torch.softmax(a.detach(), -1) / 28, atol=1e-7)


@pytest.mark.parametrize("name", sorted(SAMPLERS))
def test_entropy_is_the_mean_entropy_of_the_samplers_probabilities(name):
    sampler = build_sampler(name)
    alphas = _alphas(1)
    probs = torch.cat([sampler.probs(a) for a in alphas.values()]).double()
    expected = float(-(probs * probs.log()).sum(-1).mean())
    assert float(mean_entropy(alphas, sampler)) == pytest.approx(expected, rel=1e-5)
    uniform = {k: torch.zeros_like(a) for k, a in alphas.items()}
    if name != "drnas":  # the Dirichlet mean of alpha = 0 is uniform too, but via elu + 1
        assert float(mean_entropy(uniform, sampler)) == pytest.approx(math.log(8), rel=1e-6)


def test_ramp_rises_from_zero_at_the_first_architecture_epoch_to_one_at_the_last():
    values = [ramp(e, 40, 80) for e in range(80)]
    assert values[:41] == [0.0] * 41 and values[-1] == 1.0
    assert all(a <= b for a, b in zip(values, values[1:]))
    assert ramp(3, 0, 1) == 1.0  # a one-epoch search: full weight


def test_penalty_is_the_weighted_sum_scaled_by_the_ramp_and_absent_when_off():
    sampler = build_sampler("softmax")
    assert arch_penalty(0.0, 0.0, sampler, lambda: 1.0) is None
    alphas = _alphas(2)
    got = arch_penalty(3.0, -0.5, sampler, lambda: 0.25)(alphas)
    expected = 0.25 * (3.0 * beta_decay(alphas) - 0.5 * mean_entropy(alphas, sampler))
    assert float(got) == pytest.approx(float(expected))


@pytest.mark.parametrize("sampler", ["softmax", "gdas", "gumbel_st"])
def test_regularised_architecture_step_adds_the_penalty_gradient_and_moves_only_alpha(tmp_path, sampler):
    """One step: alpha's gradient is the loss gradient plus the ramped penalty's, weights untouched."""
    grads = []
    for beta in (0.0, 40.0):
        cfg = load_config(SearchRunConfig, None, [*TINY_SEARCH, f"out_dir={tmp_path / str(beta)}",
                                                   f"sampler.name={sampler}", f"search.arch.beta_decay={beta}"])  # fmt: skip
        r = SearchRunner(cfg, SPACES.get(cfg.space.name), tmp_path / str(beta))
        r.epoch = 1  # the last epoch of a 2-epoch search: ramp 1
        train, val = next(iter(zip(r.train_loader, r.val_loader)))
        w0 = [p.detach().clone() for p in r.model.weight_parameters()]
        seen: list = []

        def record(*args, r=r, seen=seen, **kwargs):  # the optimiser's step, replaced: read the gradient
            seen.append([p.grad.clone() for p in r.model.arch_parameters()])

        r.a_opt.step = record
        r.architect.step(val, train, 1.0, 0.025, r.w_opt)
        assert all(torch.equal(p, q) for p, q in zip(r.model.weight_parameters(), w0))
        grads.append((seen[0], dict(r.model.alphas)))
    (plain, alphas), (regularised, _) = grads
    edges = sum(a.shape[0] for a in alphas.values())
    for g0, g1, a in zip(plain, regularised, alphas.values()):
        assert torch.allclose(g1 - g0, 40.0 * torch.softmax(a.detach(), -1) / edges, atol=1e-6)


@pytest.mark.parametrize("space", ["nb201", "darts"])
def test_an_excluded_op_is_never_derived_even_where_it_is_strongest(space):
    sp = SPACES.get(space)
    alphas = {k: torch.zeros(6 if space == "nb201" else 14, len(sp.primitives)) for k in sp.cell_types}
    for exclude in (["none"], ["skip_connect"], ["none", "skip_connect"]):
        cols = [sp.primitives.index(op) for op in exclude]
        strong = {k: a.clone().index_fill_(1, torch.tensor(cols), 9.0) for k, a in alphas.items()}
        genotype = sp.derive(exclude_ops(strong, sp.primitives, exclude))
        ops = {op for cell in genotype.cells.values() for op, _ in cell.edges()}
        assert not ops & set(exclude)
        assert not torch.isinf(next(iter(strong.values()))).any()  # the caller's logits are untouched


@pytest.mark.parametrize(
    "override,message",
    [
        ("search.derive_exclude=[nope]", "'nope' is not an op of space nb201"),
        ("search.derive_exclude=[none,skip_connect,nor_conv_1x1,nor_conv_3x3,avg_pool_3x3]", "every op"),
        ("search.arch.beta_decay=-1", "search.arch.beta_decay must be"),
        ("search.arch.entropy=nan", "search.arch.entropy must be"),
    ],
)
def test_bad_regulariser_or_exclusion_is_one_line(override, message):
    with pytest.raises(UserError, match=message):
        load_config(SearchRunConfig, None, ["space.name=nb201", override])
