"""Property tests of the Gumbel noise and of every registered sampler."""

import math

import pytest
import torch

from nas.arch.mixed_op import MixedOp
from nas.core.errors import UserError
from nas.sampling import (
    SAMPLERS,
    build_sampler,
    check_tau,
    gumbel_noise,
    gumbel_softmax,
    sample_architecture,
    sample_paths,
    straight_through,
)

CHI2_CRITICAL_P001 = {4: 18.467, 7: 24.322}  # chi-square critical values at p = 0.001


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


def _weights(name, alpha, tau, generator):
    return build_sampler(name).weights(alpha, tau, generator)


def test_every_sampler_registered():
    assert SAMPLERS.names() == ["drnas", "gdas", "gumbel", "gumbel_rao", "gumbel_st", "reinmax", "softmax"]


@pytest.mark.parametrize(
    "logits", [[0.0, 0.0, 0.0, 0.0, 0.0], [2.0, 1.0, 0.0, -1.0, 0.5], [4.0, 0.0, 0.0, 1.0, -3.0]]
)
def test_gumbel_max_frequencies_match_softmax(logits):
    """argmax(logits + g) is an exact sample of Categorical(softmax(logits)) (Gumbel-max trick)."""
    logits = torch.tensor(logits)
    n = 40_000
    g = gumbel_noise((n, len(logits)), _gen(1))
    counts = torch.bincount((logits + g).argmax(1), minlength=len(logits)).double()
    expected = n * torch.softmax(logits.double(), 0)
    keep = expected > 5  # chi-square needs expected counts of at least 5
    chi2 = (((counts - expected) ** 2) / expected)[keep].sum().item()
    dof = int(keep.sum()) - 1
    assert chi2 < CHI2_CRITICAL_P001.get(dof, 30.0), (chi2, counts, expected)


def test_noise_is_float32_finite_and_seeded():
    a = gumbel_noise((1000, 8), _gen(3))
    b = gumbel_noise((1000, 8), _gen(3))
    assert a.dtype == torch.float32 and torch.isfinite(a).all()
    assert torch.equal(a, b)
    assert not torch.equal(a, gumbel_noise((1000, 8), _gen(4)))
    # Gumbel(0, 1) has mean Euler-Mascheroni ~0.5772 and variance pi^2 / 6
    big = gumbel_noise((200_000,), _gen(5)).double()
    assert abs(big.mean().item() - 0.5772) < 0.01
    assert abs(big.var().item() - math.pi**2 / 6) < 0.03


def test_noise_stays_float32_under_autocast():
    alpha = torch.zeros(3, 4, requires_grad=True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        w = {name: _weights(name, alpha, 1.0, _gen()) for name in SAMPLERS}
    assert all(x.dtype == torch.float32 for x in w.values())


@pytest.mark.parametrize("name", SAMPLERS.names())
@pytest.mark.parametrize("tau", [0.01, 0.1, 1.0, 10.0, 100.0])
@pytest.mark.parametrize("scale", [1.0, 1e4])
def test_weights_are_finite_and_sum_to_one(name, tau, scale):
    alpha = (torch.randn(14, 8, generator=_gen(7)) * scale).requires_grad_()
    w = _weights(name, alpha, tau, _gen())
    assert w.shape == alpha.shape
    assert torch.isfinite(w).all()
    assert torch.allclose(w.sum(-1), torch.ones(14), atol=1e-5)
    w.pow(2).sum().backward()
    assert torch.isfinite(alpha.grad).all()


@pytest.mark.parametrize("name", [n for n in SAMPLERS if SAMPLERS.get(n).one_hot])
def test_hard_weights_are_exactly_one_hot(name):
    alpha = torch.randn(14, 8, generator=_gen(2), requires_grad=True)
    w = _weights(name, alpha, 0.5, _gen())
    assert set(w.detach().unique().tolist()) <= {0.0, 1.0}
    assert torch.equal(w.detach().sum(-1), torch.ones(14))


def test_one_hot_samplers_choose_alike_for_the_same_noise():
    """Every one-hot sampler draws its choice by Gumbel-max from the first noise of the stream: an exact
    sample of Categorical(softmax(alpha)), the same architecture for the same seed whatever the estimator."""
    alpha = torch.randn(14, 8, generator=_gen(2))
    hard = [n for n in SAMPLERS if SAMPLERS.get(n).one_hot]
    choices = {n: _weights(n, alpha, 0.5, _gen(4)).argmax(-1) for n in hard}
    assert len(hard) >= 4 and all(torch.equal(c, choices["gdas"]) for c in choices.values())


@pytest.mark.parametrize("name", SAMPLERS.names())
def test_probs_are_a_distribution_and_derive_logits_give_them(name):
    sampler = build_sampler(name)
    alpha = torch.randn(6, 5, generator=_gen(3)) * 2
    p = sampler.probs(alpha)
    assert p.shape == alpha.shape and torch.allclose(p.sum(-1), torch.ones(6))
    assert torch.allclose(torch.softmax(sampler.derive_logits(alpha), -1), p, atol=1e-6)


def test_straight_through_gradient_equals_soft_gradient():
    alpha = torch.randn(6, 5, generator=_gen(4), requires_grad=True)
    noise = gumbel_noise(alpha.shape, _gen(9))
    upstream = torch.randn(6, 5, generator=_gen(10))
    soft = gumbel_softmax(alpha, 0.7, noise)
    (grad_soft,) = torch.autograd.grad((soft * upstream).sum(), alpha)
    hard = straight_through(gumbel_softmax(alpha, 0.7, noise))
    (grad_hard,) = torch.autograd.grad((hard * upstream).sum(), alpha)
    assert torch.equal(grad_soft, grad_hard)
    assert torch.equal(hard.argmax(-1), soft.argmax(-1))


@pytest.mark.parametrize("tau", [0.0, -1.0, float("nan"), float("inf")])
def test_bad_tau_is_refused(tau):
    with pytest.raises(UserError, match="tau"):
        check_tau(tau)
    for name in SAMPLERS:
        if SAMPLERS.get(name).uses_tau:
            with pytest.raises(UserError):
                _weights(name, torch.zeros(2, 3), tau, _gen())


def test_unknown_sampler_is_a_user_error():
    with pytest.raises(UserError, match="unknown sampler"):
        sample_architecture({"a": torch.zeros(2, 3)}, "bogus", 1.0, _gen())


def test_gdas_choices_match_weights_and_reach_host_as_ints():
    alphas = {"normal": torch.randn(14, 8), "reduce": torch.randn(14, 8)}
    out = sample_architecture(alphas, "gdas", 1.0, _gen())
    for s in out.values():
        assert s.choices == s.weights.argmax(-1).tolist()
        assert all(isinstance(c, int) for c in s.choices)
    assert sample_architecture(alphas, "gumbel_st", 1.0, _gen())["normal"].choices is None


def test_same_seed_same_architecture():
    alphas = {"normal": torch.randn(14, 8)}
    a = sample_architecture(alphas, "gumbel", 1.0, _gen(11))["normal"].weights
    b = sample_architecture(alphas, "gumbel", 1.0, _gen(11))["normal"].weights
    assert torch.equal(a, b)


class _Counting(torch.nn.Module):
    def __init__(self, scale):
        super().__init__()
        self.scale = scale
        self.calls = 0

    def forward(self, x):
        self.calls += 1
        return x * self.scale


def test_gdas_mixed_op_runs_only_the_chosen_op():
    ops = [_Counting(float(k + 1)) for k in range(5)]
    mixed = MixedOp(ops)
    alpha = torch.randn(1, 5, generator=_gen(5), requires_grad=True)
    s = sample_architecture({"e": alpha}, "gdas", 1.0, _gen(6))["e"]
    k = s.choices[0]
    x = torch.randn(2, 3)
    out = mixed(x, s.weights[0], k)
    assert [op.calls for op in ops] == [int(i == k) for i in range(5)]
    assert torch.equal(out, ops[k](x) * s.weights[0, k])
    out.sum().backward()
    assert alpha.grad is not None and alpha.grad.abs().sum() > 0


def test_soft_mixed_op_is_the_weighted_sum():
    ops = [_Counting(float(k + 1)) for k in range(4)]
    w = torch.softmax(torch.randn(4, generator=_gen(8)), 0)
    x = torch.randn(3)
    expected = sum(w[k] * (k + 1) * x for k in range(4))
    assert torch.allclose(MixedOp(ops)(x, w), expected)


def test_one_hot_forward_with_chosen_only_runs_one_op_and_gives_the_same_weight_gradients():
    """The weight step of gumbel_st: running only the chosen ops changes no output and no gradient."""
    import search_spaces  # noqa: F401
    from nas.arch.space import SPACES
    from nas.config import SpaceConfig

    torch.manual_seed(0)
    net = SPACES.get("darts").build_supernet(SpaceConfig(init_channels=4, layers=2), 3, 3)
    alphas = {k: a.detach() for k, a in net.alphas.items()}
    x, y = torch.randn(4, 3, 8, 8), torch.tensor([0, 1, 2, 0])
    results = []
    for chosen_only in (False, True):
        net.zero_grad(set_to_none=True)
        samples = sample_architecture(alphas, "gumbel_st", 1.0, _gen(3), chosen_only=chosen_only)
        assert (samples["normal"].choices is not None) == chosen_only
        loss = torch.nn.functional.cross_entropy(net(x, samples), y)
        loss.backward()
        grads = {n: p.grad for n, p in net.named_parameters() if not n.startswith("alphas")}
        results.append((loss.detach(), grads))
    (full_loss, full), (chosen_loss, chosen) = results
    assert torch.equal(full_loss, chosen_loss)
    for name, g in full.items():
        if chosen[name] is None:  # an op that did not run: its gradient in the full pass is exactly 0
            assert g is None or not g.any(), name
        else:
            assert torch.allclose(g, chosen[name], atol=1e-6), name
    assert sum(g is None for g in chosen.values()) > sum(g is None for g in full.values())


@pytest.mark.parametrize("space", ["darts", "nb201"])
@pytest.mark.parametrize("name", [n for n in sorted(SAMPLERS) if SAMPLERS.get(n).one_hot])
def test_detached_unchosen_ops_give_the_same_alpha_gradient_without_their_backward_pass(space, name):
    """A first-order architecture step of a one-hot sampler: running the unchosen ops without autograd
    gives bitwise the same loss and alpha gradient, and keeps no graph for them."""
    import search_spaces  # noqa: F401
    from nas.arch.space import SPACES

    sp = SPACES.get(space)
    torch.manual_seed(0)
    net = sp.build_supernet(sp.Options(name=space, init_channels=4, layers=3), 3, 3)
    x, y = torch.randn(4, 3, 8, 8), torch.tensor([0, 1, 2, 0])
    sampler = build_sampler(name)
    counts, results = [], []
    for detach in (False, True):
        calls = [0]

        def count(module, args, output, calls=calls):
            calls[0] += output.grad_fn is not None

        hooks = [m.register_forward_hook(count) for m in net.modules() if isinstance(m, torch.nn.Conv2d)]
        alphas = list(net.alphas.values())
        samples = sample_architecture(dict(net.alphas), sampler, 0.7, _gen(11), detach_unchosen=detach)
        if sampler.chosen_only:
            assert all(s.choices is not None and not s.detach_unchosen for s in samples.values())
        else:
            assert all(s.detach_unchosen == detach for s in samples.values())
        loss = torch.nn.functional.cross_entropy(net(x, samples), y)
        results.append((loss.detach(), torch.autograd.grad(loss, alphas)))
        counts.append(calls[0])
        for h in hooks:
            h.remove()
    (loss0, g0), (loss1, g1) = results
    assert torch.equal(loss0, loss1)
    for a, b in zip(g0, g1):
        assert torch.equal(a, b) and a.abs().sum() > 0
    if not sampler.chosen_only:  # fewer convolutions recorded for backward
        assert counts[1] < counts[0]


def _nb201(seed=0):
    import search_spaces  # noqa: F401
    from nas.arch.space import SPACES

    sp = SPACES.get("nb201")
    torch.manual_seed(seed)
    net = sp.build_supernet(sp.Options(init_channels=4, layers=1), 3, 3)
    return net, torch.randn(6, 3, 8, 8), torch.tensor([0, 1, 2, 0, 1, 2])


def _alpha_grad(net, x, y, samples):
    loss = torch.nn.functional.cross_entropy(net(x, samples), y)
    return loss.detach(), torch.autograd.grad(loss, list(net.alphas.values()), retain_graph=True)[0]


def test_gdas_probing_every_unchosen_op_is_gumbel_st_and_leaves_the_forward_pass_alone():
    from nas.config import SearchRunConfig, load_config

    net, x, y = _nb201()
    gdas = build_sampler(load_config(SearchRunConfig, None, ["sampler.name=gdas", "sampler.probes=4",
                                                             "sampler.unchosen_grad=false"]).sampler)  # fmt: skip
    probed = sample_architecture(dict(net.alphas), gdas, 0.8, _gen(7), detach_unchosen=True)["cell"]
    assert all(sorted(p + [k]) == [0, 1, 2, 3, 4] for p, k in zip(probed.probes, probed.choices))
    st = sample_architecture(dict(net.alphas), "gumbel_st", 0.8, _gen(7), detach_unchosen=True)["cell"]
    assert st.choices == probed.choices  # the probes are drawn after the noise
    plain = sample_architecture(dict(net.alphas), "gdas", 0.8, _gen(7))["cell"]
    loss_p, g_probed = _alpha_grad(net, x, y, {"cell": probed})
    loss_s, g_st = _alpha_grad(net, x, y, {"cell": st})
    loss_0, g_plain = _alpha_grad(net, x, y, {"cell": plain})
    assert torch.equal(loss_p, loss_0) and torch.allclose(loss_p, loss_s)
    assert torch.allclose(g_probed, g_st, atol=1e-6) and not torch.allclose(g_plain, g_st, atol=1e-6)


def test_one_probe_per_edge_is_unbiased_for_gumbel_st_over_its_draws():
    """The mean of the one-probe gradient over every probe choice (uniform over the K - 1 unchosen ops of
    each edge, independently) equals gumbel_st's gradient: enumerated edge by edge, it is linear in them."""
    from dataclasses import replace

    net, x, y = _nb201(1)
    st = sample_architecture(dict(net.alphas), "gumbel_st", 1.0, _gen(3), detach_unchosen=True)["cell"]
    _, g_st = _alpha_grad(net, x, y, {"cell": st})
    base = sample_architecture(dict(net.alphas), "gdas", 1.0, _gen(3))["cell"]
    _, g_none = _alpha_grad(net, x, y, {"cell": replace(base, probes=[[] for _ in base.choices])})
    total = g_none.clone()  # d loss / d w is linear in the probed entries: add each edge's mean contribution
    for e, k in enumerate(base.choices):
        others = [j for j in range(5) if j != k]
        for j in others:
            probes = [[j] if i == e else [] for i in range(6)]
            _, g = _alpha_grad(net, x, y, {"cell": replace(base, probes=probes, probe_scale=4.0)})
            total += (g - g_none) / len(others)
    assert torch.allclose(total, g_st, atol=1e-5)


def test_gdas_probe_options_are_checked():
    from nas.config import SearchRunConfig, load_config

    with pytest.raises(UserError, match="choose one"):
        load_config(
            SearchRunConfig, None, ["sampler.name=gdas", "sampler.probes=2", "sampler.unchosen_grad=true"]
        )
    with pytest.raises(UserError, match="sampler.probes must be"):
        load_config(SearchRunConfig, None, ["sampler.name=gdas", "sampler.probes=-1"])
    with pytest.raises(UserError, match="unknown key"):
        load_config(SearchRunConfig, None, ["sampler.name=gumbel_st", "sampler.probes=2"])
    weights = sample_architecture(
        {"cell": torch.zeros(6, 5)}, build_sampler(build_sampler("gdas").Options(name="gdas", probes=2)), 1.0,
        _gen(0), chosen_only=True,
    )  # fmt: skip
    assert weights["cell"].probes is None  # the weight step never probes


@pytest.mark.parametrize("name", ["softmax", "gumbel", "drnas"])
def test_weight_step_paths_are_one_hot_and_follow_the_samplers_distribution(name):
    """`search.weight_sample=one_hot`: each draw is one path (one-hot weights, choices = their argmax) and
    over many draws the op frequencies per edge are the sampler's `probs` (chi-square, p = 0.001)."""
    sampler = build_sampler(name)
    alpha = torch.tensor([[1.5, 0.0, -1.0, 0.5, 0.2], [0.0, 0.0, 0.0, 0.0, 0.0], [-2.0, 3.0, 0.0, 1.0, 0.0]])
    gen, n = _gen(3), 4000
    counts = torch.zeros_like(alpha, dtype=torch.float64)
    for _ in range(n):
        s = sample_paths({"c": alpha}, sampler, gen)["c"]
        assert torch.equal(s.weights.sum(-1), torch.ones(3))
        assert set(s.weights.unique().tolist()) <= {0.0, 1.0}
        assert s.choices == s.weights.argmax(-1).tolist()
        counts[torch.arange(3), torch.tensor(s.choices)] += 1
    expected = n * sampler.probs(alpha).double()
    for e in range(3):
        keep = expected[e] > 5
        chi2 = (((counts[e] - expected[e]) ** 2) / expected[e])[keep].sum().item()
        assert chi2 < CHI2_CRITICAL_P001.get(int(keep.sum()) - 1, 30.0), (name, e, counts[e], expected[e])
