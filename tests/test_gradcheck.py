"""`nas gradcheck`: the exact gradient by enumeration against hand computations, the estimators' means
against what theory says, and the command itself on a toy space."""

from __future__ import annotations

import itertools
import json
import re

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from nas.arch.mixed_op import MixedOp
from nas.arch.space import SPACES, Supernet
from nas.cli import main
from nas.config import SpaceConfig
from nas.gradcheck.estimate import Upstream, estimates, statistics
from nas.gradcheck.exact import enumerate_losses, exact_gradient
from nas.sampling import build_sampler
from tests.conftest import ROOT


class Scale(nn.Module):
    def __init__(self, c: float):
        super().__init__()
        self.c = nn.Parameter(torch.tensor(c))

    def forward(self, x):
        return self.c * x


class Chain(Supernet):
    """Edges in a chain, edge e a MixedOp over `Scale(c)` ops (a tanh between edges); input (B, d)."""

    def __init__(self, scales: list[list[float]], tanh: bool = True):
        super().__init__()
        self.edges = nn.ModuleList(MixedOp([Scale(c) for c in row]) for row in scales)
        self.tanh = tanh
        self.alphas = nn.ParameterDict({"cell": nn.Parameter(torch.zeros(len(scales), len(scales[0])))})

    def forward(self, x, samples):
        h = x
        for e, op in enumerate(self.edges):
            h = op(h, *samples["cell"].edge(e))
            h = torch.tanh(h) if self.tanh and e + 1 < len(self.edges) else h
        return h


def _quiet(message: str) -> None:
    pass


def test_one_edge_two_ops_against_the_closed_form():
    """L(z = k) = CE(c_k x, y); E[L] = softmax(alpha) . (L_0, L_1); its autograd gradient is the check's."""
    model, scales = Chain([[0.5, -2.0]]), (0.5, -2.0)
    x, y = torch.randn(6, 3, generator=torch.Generator().manual_seed(0)), torch.tensor([0, 1, 2, 0, 1, 2])
    alpha = torch.tensor([[0.3, -0.4]], requires_grad=True)
    closed = torch.stack([F.cross_entropy(c * x, y) for c in scales]).double()
    (expected,) = torch.autograd.grad(torch.softmax(alpha.double(), -1)[0] @ closed, alpha)
    losses = enumerate_losses(model, (x, y), {"cell": (1, 2)}, log=_quiet)
    torch.testing.assert_close(losses, closed, rtol=1e-6, atol=1e-7)
    exact, e_loss = exact_gradient(losses, build_sampler("softmax"), {"cell": alpha.detach()})
    torch.testing.assert_close(exact, expected.flatten().double(), rtol=1e-6, atol=1e-7)
    assert e_loss == pytest.approx(float(torch.softmax(alpha.detach().double(), -1)[0] @ closed))


@pytest.mark.parametrize("sampler", ["softmax", "drnas"])
def test_three_edges_against_brute_force_expectation(sampler):
    """Three edges of three ops: the contraction over the other edges equals differentiating
    sum_z prod_e q_e(z_e) L(z) written out, with q = the sampler's probabilities (Dirichlet means for drnas)."""
    torch.manual_seed(0)
    model = Chain([[0.5, -1.0, 2.0], [1.5, 0.3, -0.7], [1.0, -2.0, 0.2]])
    x, y = torch.randn(5, 3), torch.tensor([0, 1, 2, 1, 0])
    alpha = torch.randn(3, 3)
    losses = enumerate_losses(model, (x, y), {"cell": (3, 3)}, log=_quiet)
    s = build_sampler(sampler)
    a = alpha.clone().double().requires_grad_()
    q = s.probs(a).double()
    total = sum(
        q[0, i] * q[1, j] * q[2, k] * losses[i, j, k] for i, j, k in itertools.product(range(3), repeat=3)
    )
    (expected,) = torch.autograd.grad(total, a)
    exact, _ = exact_gradient(losses, s, {"cell": alpha})
    torch.testing.assert_close(exact, expected.flatten(), rtol=1e-5, atol=1e-8)


def _linear_toy():
    """One edge, four ops, L(W) = mean(sum_k w_k c_k x): linear in the op weights, so E_z[L(z)] = L(E[W])."""
    scales = [1.0, -0.5, 2.0, 0.2]
    model = Chain([scales], tanh=False)
    x = torch.ones(8, 1)
    alpha = torch.tensor([[1.0, -1.0, 0.5, 0.0]])

    def criterion(out, y):
        return out.mean()

    losses = enumerate_losses(model, (x, None), {"cell": (1, 4)}, log=_quiet, criterion=criterion)
    return model, (x, None), alpha, losses, criterion, torch.tensor(scales, dtype=torch.float64)


def test_estimator_means_converge_to_theory_on_a_linear_loss():
    """Linear in the weights: softmax's gradient is the exact one (variance 0). Straight-through
    Gumbel-softmax is biased at high tau: its mean tends to (c - mean(c)) / (K tau), whose direction
    ignores p (derivation in experiments/estimators/README.md), while the exact gradient is p * (c - p . c).
    Gumbel-Rao keeps straight-through's mean and lowers its variance."""
    model, batch, alpha, losses, criterion, c = _linear_toy()
    upstream = Upstream(model, batch, criterion)

    def run(name, tau, n):
        sampler = build_sampler(name)
        exact, _ = exact_gradient(losses, sampler, {"cell": alpha})
        g = estimates(sampler, {"cell": alpha}, tau, n, 0, upstream)
        return g, exact, statistics(g, exact, 1)

    _, _, soft = run("softmax", 1.0, 2)
    assert soft["cosine"] > 1 - 1e-6 and abs(soft["rel_bias2"]) < 1e-10 and soft["rel_variance"] == 0
    n = 400
    g_st, exact, st = run("gumbel_st", 10.0, n)
    se = float(g_st.std(0).max()) / n**0.5  # standard error of the mean estimate, largest entry
    limit = (c - c.mean()) / (4 * 10.0)
    torch.testing.assert_close(g_st.mean(0), limit, atol=5 * se + 2e-3, rtol=0.1)  # O(1/tau^2) off the limit
    cos_limit = float(limit @ exact / (limit.norm() * exact.norm()))
    assert cos_limit < 0.9 and st["cosine"] == pytest.approx(cos_limit, abs=0.05) and st["cosine"] < 0.95
    assert st["rel_bias2"] > 0.5  # and 1/tau too short
    g_rao, _, rao = run("gumbel_rao", 10.0, n)
    torch.testing.assert_close(g_rao.mean(0), g_st.mean(0), atol=5 * se, rtol=0)
    assert rao["rel_variance"] < 0.8 * st["rel_variance"]


def test_statistics_of_known_estimates():
    exact = torch.tensor([1.0, -1.0, 0.0, 2.0], dtype=torch.float64)
    g = exact + torch.tensor(
        [[1.0, 0, 0, 0], [-1.0, 0, 0, 0]], dtype=torch.float64
    )  # unbiased, var 2 in one entry
    s = statistics(g, exact, edges=2)
    assert s["cosine"] == pytest.approx(1.0) and s["rel_bias2"] == pytest.approx(-1.0 / 6)  # |m-g*|^2 - 2/2
    assert s["rel_variance"] == pytest.approx(2.0 / 6) and s["rel_mse"] == pytest.approx(1.0 / 6)
    assert s["sign_agreement_per_edge"] == [1.0, 1.0]


# --- the command ------------------------------------------------------------------------------------------


class ToySpace:
    """Two edges of three ops on globally pooled images: 3^2 = 9 architectures."""

    name = "gradcheck_toy"
    Options = SpaceConfig  # no keys of its own
    primitives = ("a", "b", "c")
    cell_types = ("cell",)

    def build_supernet(self, cfg: SpaceConfig, num_classes: int, in_channels: int) -> Supernet:
        return _PooledChain(in_channels, num_classes)


class _PooledChain(Supernet):
    def __init__(self, in_channels: int, classes: int):
        super().__init__()
        self.chain = Chain([[1.0, -0.5, 2.0], [0.3, 1.2, -1.0]])
        self.head = nn.Linear(in_channels, classes)
        self.alphas = self.chain.alphas

    def forward(self, x, samples):
        return self.head(self.chain(x.mean(dim=(2, 3)), samples))


@pytest.fixture
def toy_space(monkeypatch):
    monkeypatch.setitem(SPACES._items, ToySpace.name, ToySpace())


def _args(tmp_path, *extra):
    return [
        "gradcheck",
        f"base={ROOT / 'configs/search/tiny_synthetic.yaml'}",
        f"overrides=[space.name={ToySpace.name},data.synthetic.image_size=8]",
        f"out_dir={tmp_path}",
        "batch_size=8",
        "samples=3",
        "taus=[0.3,3.0]",
        *extra,
    ]


def test_cli_writes_table_json_plots_and_tensorboard(tmp_path, toy_space, capsys):
    assert main(_args(tmp_path, "samplers=[gumbel_rao]")) == 0
    report = json.loads((tmp_path / "gradcheck.json").read_text())
    assert report["subject"]["architectures"] == 9 and len(report["results"]) == 2
    assert {"cosine", "rel_bias2", "rel_variance", "sign_agreement_per_edge"} <= set(report["results"][0])
    assert (tmp_path / "gradcheck.md").is_file() and (tmp_path / "plots" / "gumbel_rao.png").is_file()
    assert (tmp_path / "plots" / "summary.png").is_file() and any((tmp_path / "tb").iterdir())
    assert "| gumbel_rao | 0.3 |" in capsys.readouterr().out
    assert (tmp_path / "losses.pt").is_file()


def test_loss_table_is_cached_and_resumed(tmp_path):
    """A second enumeration with the same weights and batch reads the table; other weights enumerate again."""
    model = Chain([[0.5, -1.0], [1.5, 0.3]])
    x, y = torch.randn(4, 2, generator=torch.Generator().manual_seed(0)), torch.tensor([0, 1, 1, 0])
    logs: list[str] = []
    first = enumerate_losses(model, (x, y), {"cell": (2, 2)}, cache=tmp_path / "losses.pt", log=logs.append)
    assert any("enumerating" in m for m in logs)
    logs.clear()
    again = enumerate_losses(model, (x, y), {"cell": (2, 2)}, cache=tmp_path / "losses.pt", log=logs.append)
    assert torch.equal(first, again) and not logs
    with torch.no_grad():
        model.edges[0].ops[0].c.add_(1.0)
    other = enumerate_losses(model, (x, y), {"cell": (2, 2)}, cache=tmp_path / "losses.pt", log=logs.append)
    assert logs and not torch.equal(first, other)


@pytest.mark.parametrize(
    "extra, message",
    [
        (["max_architectures=8"], r"3\^2 = 9 architectures .* more than max_architectures=8 "),
        (["samplers=[bogus]"], "unknown sampler 'bogus'"),
        (["sampler_options.gumbel_rao.mc_sample=3"], "sampler_options.gumbel_rao: .*mc_sample"),
        (["sampler_options={gumbel_rao:{mc_sample:3}}"], "bad override"),  # YAML needs spaces after colons
        (["alpha=best"], "alpha must be one of"),
    ],
)
def test_cli_refuses_with_one_line(tmp_path, toy_space, capsys, extra, message):
    assert main(_args(tmp_path, *extra)) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and re.search(message, err), err
