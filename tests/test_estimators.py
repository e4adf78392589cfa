"""The estimators beyond straight-through: ReinMax, Gumbel-Rao, DrNAS. Gradient formulas against hand
computations, the properties their papers prove, and their options."""

from __future__ import annotations

import pytest
import torch

from nas.config import SearchRunConfig, load_config
from nas.core.errors import UserError
from nas.sampling import build_sampler, gumbel_noise, gumbel_softmax, straight_through
from nas.sampling.drnas import concentration, dirichlet_sample, log_gamma
from nas.sampling.gumbel_rao import conditional_gumbel, gumbel_rao
from nas.sampling.reinmax import _ReinMax, reinmax


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


def _jacobian_vjp(p: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    """J(p)^T c with the softmax Jacobian written out: (diag(p) - p p^T) c, row by row."""
    return torch.stack([(torch.diag(pi) - torch.outer(pi, pi)) @ ci for pi, ci in zip(p, c)])


# --- ReinMax ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("tau", [0.5, 1.0, 3.0])
def test_reinmax_gradient_is_algorithm_2(tau):
    """Forward: the Gumbel-max one-hot sample. Backward: 2 J(pi_1)^T c - J(pi_0)^T c / 2 with pi_0 =
    softmax(alpha), pi_1 = (D + softmax(alpha / tau)) / 2 (Liu et al. 2023, Algorithm 2)."""
    alpha = torch.randn(4, 5, generator=_gen(1), dtype=torch.float64).float().requires_grad_()
    noise = gumbel_noise(alpha.shape, _gen(2))
    c = torch.randn(4, 5, generator=_gen(3))
    d = reinmax(alpha, tau, noise)
    hard = straight_through(gumbel_softmax(alpha, tau, noise)).detach()
    assert torch.equal(d.detach(), hard)  # the choice gumbel_st makes for the same noise
    (grad,) = torch.autograd.grad((d * c).sum(), alpha)
    a = alpha.detach()
    pi_0, pi_1 = torch.softmax(a, -1), 0.5 * (hard + torch.softmax(a / tau, -1))
    expected = 2 * _jacobian_vjp(pi_1, c) - 0.5 * _jacobian_vjp(pi_0, c)
    torch.testing.assert_close(grad, expected, rtol=1e-5, atol=1e-6)


def test_reinmax_is_exact_in_expectation_for_quadratic_losses_at_tau_1():
    """Second-order accuracy (Liu et al. 2023, sec. 4): for f(D) = D^T A D / 2 + b^T D and tau = 1, the
    expectation over D ~ Categorical(softmax(theta)) of the ReinMax gradient (enumerated, no noise) is
    the exact gradient of E[f(D)], where straight-through is off."""
    k = 5
    theta = 1.5 * torch.randn(k, generator=_gen(0), dtype=torch.float64)
    a = torch.randn(k, k, generator=_gen(1), dtype=torch.float64)
    a, b, eye = (
        a + a.T,
        torch.randn(k, generator=_gen(2), dtype=torch.float64),
        torch.eye(k, dtype=torch.float64),
    )

    def f(d):
        return 0.5 * d @ a @ d + b @ d

    t = theta.clone().requires_grad_()
    p = torch.softmax(theta, 0)
    exact = torch.autograd.grad(sum(torch.softmax(t, 0)[i] * f(eye[i]) for i in range(k)), t)[0]
    reinmax_mean, st_mean = torch.zeros(k, dtype=torch.float64), torch.zeros(k, dtype=torch.float64)
    for i in range(k):
        t = theta.clone().requires_grad_()
        reinmax_mean += p[i] * torch.autograd.grad(f(_ReinMax.apply(t, eye[i], 1.0)), t)[0]
        soft = torch.softmax(t, 0)
        st_mean += p[i] * torch.autograd.grad(f(straight_through(soft, eye[i])), t)[0]
    torch.testing.assert_close(reinmax_mean, exact, rtol=1e-12, atol=1e-12)
    assert (st_mean - exact).norm() > 0.05 * exact.norm()


# --- Gumbel-Rao -------------------------------------------------------------------------------------------


def test_conditional_gumbels_have_the_given_argmax_and_the_conditional_mean():
    """Every draw's argmax is the conditioned index, and the mean over draws of softmax(Y / tau) matches
    E[softmax((theta + G) / tau) | argmax = i] estimated by rejection (unconditional draws whose argmax is i)."""
    theta = torch.log_softmax(torch.tensor([[1.0, 0.2, -0.5, 0.0]]), -1)  # (1, 4)
    tau, n = 0.7, 200_000
    for i in range(4):
        hard = torch.nn.functional.one_hot(torch.tensor([i]), 4).float()
        exp_noise = -torch.log(torch.rand(n, 1, 4, generator=_gen(i)).clamp_min(1e-30))
        y = conditional_gumbel(theta, hard, exp_noise)  # (n, 1, 4)
        assert (y.argmax(-1) == i).all()
        free = theta + gumbel_noise((2 * n, 1, 4), _gen(10 + i))
        kept = free[free.argmax(-1)[:, 0] == i]  # rejection: about n * 2 p_i draws
        conditional = torch.softmax(y / tau, -1).mean(0)
        rejection = torch.softmax(kept / tau, -1).mean(0)
        se = torch.softmax(kept / tau, -1).std(0) / len(kept) ** 0.5
        assert ((conditional - rejection).abs() < 5 * se + 1e-4).all(), (i, conditional, rejection)


def _per_sample_grads(estimator, alpha, c, n, tau):
    """n independent estimates of d(c . D)/d alpha, one per row block: alpha (E, K) repeated n times."""
    rows = alpha.repeat(n, 1).requires_grad_()  # (n E, K)
    d = estimator(rows, tau)
    (grad,) = torch.autograd.grad((d * c.repeat(n, 1)).sum(), rows)
    return grad.view(n, *alpha.shape)


@pytest.mark.parametrize("tau", [0.3, 1.0, 3.0])
def test_gumbel_rao_keeps_the_straight_through_mean_and_lowers_its_variance(tau):
    """Rao-Blackwellisation (Paulus et al. 2021, eq. 5-6): same expectation as straight-through
    Gumbel-softmax, no more variance; with 10 conditional draws, markedly less."""
    alpha = torch.randn(3, 4, generator=_gen(5))
    c = torch.randn(3, 4, generator=_gen(6))
    n, gen = 20_000, _gen(7)

    def st(rows, tau):
        return straight_through(gumbel_softmax(rows, tau, gumbel_noise(rows.shape, gen)))

    def rao(rows, tau):
        return gumbel_rao(
            rows, tau, gumbel_noise(rows.shape, gen), -torch.log(torch.rand(10, *rows.shape, generator=gen))
        )

    g_st, g_rao = (_per_sample_grads(est, alpha, c, n, tau) for est in (st, rao))
    se = (g_st.var(0) / n).sqrt()  # standard error of the straight-through mean, per entry
    assert ((g_st.mean(0) - g_rao.mean(0)).abs() < 5 * se + 1e-5).all()
    assert g_rao.var(0).sum() < 0.8 * g_st.var(0).sum()


# --- DrNAS ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("beta", [0.02, 0.5, 1.0, 4.0])
def test_gamma_draws_have_the_gamma_distribution(beta):
    """Mean and variance beta, and the CDF of the draws is uniform (Kolmogorov-Smirnov, p ~ 0.001)."""
    n = 50_000
    log_g, _ = log_gamma(torch.full((n,), beta, dtype=torch.float64), _gen(1))
    g = log_g.exp()
    assert abs(g.mean().item() - beta) < 5 * (beta / n) ** 0.5
    assert abs(g.var().item() - beta) < 0.1 * beta
    u = torch.special.gammainc(torch.full_like(g, beta), g).sort().values
    ks = (u - torch.arange(1, n + 1, dtype=torch.float64) / n).abs().max().item()
    assert ks < 1.95 / n**0.5


def test_dirichlet_samples_are_seeded_and_their_mean_and_gradient_are_the_dirichlet_ones():
    """Same generator seed, same sample. Over many rows: the mean is beta / sum(beta), and the mean of the
    reparameterised gradient of c . w (and of c . w^2) is the gradient of its exact expectation."""
    alpha = torch.tensor([[0.5, -0.3, 1.2, -1.5]])
    assert torch.equal(dirichlet_sample(alpha, _gen(3)), dirichlet_sample(alpha, _gen(3)))
    n, c = 100_000, torch.tensor([1.0, -2.0, 0.5, 3.0], dtype=torch.float64)
    rows = alpha.repeat(n, 1).requires_grad_()
    w = dirichlet_sample(rows, _gen(4)).double()
    beta = concentration(alpha)[0]
    b0 = beta.sum()
    torch.testing.assert_close(w.mean(0), beta / b0, atol=4e-3, rtol=0)
    for power, moment in ((1, lambda b: b / b.sum()), (2, lambda b: b * (b + 1) / (b.sum() * (b.sum() + 1)))):
        (grad,) = torch.autograd.grad((w**power @ c).sum(), rows, retain_graph=True)
        a = alpha.double().clone().requires_grad_()
        (exact,) = torch.autograd.grad(moment(concentration(a)[0]) @ c, a)
        se = grad.double().std(0) / n**0.5
        assert ((grad.double().mean(0) - exact[0]).abs() < 5 * se + 1e-4).all(), (power, grad.mean(0), exact)


def test_drnas_kl_term_and_probabilities():
    sampler = build_sampler(load_config(SearchRunConfig, None, ["sampler.name=drnas", "sampler.kl_weight=0.5",
                                                                "sampler.prior=2.0"]).sampler)  # fmt: skip
    alpha = torch.randn(3, 4, generator=_gen(0)).requires_grad_()
    beta = torch.nn.functional.elu(alpha) + 1
    kl = torch.distributions.kl_divergence(
        torch.distributions.Dirichlet(beta), torch.distributions.Dirichlet(torch.full_like(beta, 2.0))
    ).sum()
    torch.testing.assert_close(sampler.extra_loss({"cell": alpha}), 0.5 * kl)
    torch.testing.assert_close(sampler.probs(alpha), beta / beta.sum(-1, keepdim=True))
    assert build_sampler("softmax").extra_loss({"cell": alpha}) is None
    zero = load_config(SearchRunConfig, None, ["sampler.name=drnas", "sampler.kl_weight=0"]).sampler
    assert build_sampler(zero).extra_loss({"cell": alpha}) is None


# --- options ----------------------------------------------------------------------------------------------


def test_sampler_options_are_typed_per_sampler():
    cfg = load_config(SearchRunConfig, None, ["sampler.name=gumbel_rao", "sampler.mc_samples=3"])
    assert cfg.sampler.mc_samples == 3 and build_sampler(cfg.sampler).options.mc_samples == 3
    assert load_config(SearchRunConfig, None, ["sampler.name=drnas"]).sampler.kl_weight == 1e-3


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["sampler.name=gdas", "sampler.mc_samples=3"], "mc_samples"),  # another sampler's option
        (["sampler.name=gumbel_rao", "sampler.mc_samples=0"], r"sampler.mc_samples must be in \[1, 10000\]"),
        (["sampler.name=gumbel_rao", "sampler.mc_samples=many"], "mc_samples"),
        (["sampler.name=drnas", "sampler.prior=0"], r"sampler.prior must be finite and in \[0.001, 1000\]"),
        (
            ["sampler.name=drnas", "sampler.kl_weight=-1"],
            r"sampler.kl_weight must be finite and in \[0, 1e\+06\]",
        ),
        (["sampler.name=reinmax", "sampler.unchosen_grad=true"], "applies only to samplers that run only"),
        (["sampler.name=bogus"], "unknown sampler 'bogus'"),
    ],
)
def test_bad_sampler_options_are_one_line_user_errors(overrides, message):
    with pytest.raises(UserError, match=message) as info:
        load_config(SearchRunConfig, None, overrides)
    assert "\n" not in str(info.value)


# --- a tiny search with each -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "sampler",
    [["sampler.name=reinmax"], ["sampler.name=gumbel_rao", "sampler.mc_samples=2"], ["sampler.name=drnas"]],
)
def test_tiny_cli_search(tmp_path, sampler):
    """`nas search sampler.name=...` runs end to end (NB201, one epoch): alpha moves, the genotype is written,
    the sampler's options are recorded, and `nas derive` re-derives the same genotype."""
    import json

    from nas.cli import main
    from tests.conftest import ROOT, TINY_SEARCH

    tiny = [
        *TINY_SEARCH,
        "space.name=nb201",
        "space.layers=1",
        "search.epochs=1",
        "data.synthetic.train_size=64",
        "search.arch.lr=0.1",
    ]
    run, config = tmp_path / "run", ROOT / "configs/search/tiny_synthetic.yaml"
    assert main(["search", "--config", str(config), *tiny, *sampler, f"out_dir={run}"]) == 0
    record = json.loads((run / "metrics.jsonl").read_text().splitlines()[-1])
    assert torch.isfinite(torch.tensor([record["train_loss"], record["val_loss"]])).all()
    config = (run / "config.yaml").read_text()
    assert all(f"{o.split('=')[0].split('.')[1]}: {o.split('=')[1]}" in config for o in sampler)
    alphas = torch.tensor(json.loads((run / "alphas.json").read_text())["alphas"]["cell"])
    init = torch.zeros_like(alphas)  # NB201 alphas start at 1e-3 * N(0, 1): one epoch moves them further
    assert (alphas - init).abs().max() > 1e-2
    genotype = json.loads((run / "genotype.json").read_text())["cells"]
    assert main(["derive", str(run)]) == 0
    assert json.loads((run / "genotype.json").read_text())["cells"] == genotype
