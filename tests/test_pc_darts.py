"""PC-DARTS in the DARTS space: partial channel connections and edge normalisation, with every sampler."""

import json

import pytest
import torch

import search_spaces  # noqa: F401
from nas.arch.space import SPACES, edge_weights
from nas.cli import main
from nas.config import SearchRunConfig, load_config
from nas.core.errors import UserError
from nas.cost.budget import best_under_budget
from nas.sampling import SAMPLERS, build_sampler, sample_architecture
from nas.search.runner import SearchRunner
from search_spaces.darts.ops import PRIMITIVES
from search_spaces.darts.space import derive_cell
from search_spaces.darts.supernet import PartialChannelEdge, build_edge, node_groups
from tests.conftest import ROOT, TINY_SEARCH

DARTS = SPACES.get("darts")


def _net(k: int = 2, edge_norm: bool = True, channels: int = 4, layers: int = 3):
    torch.manual_seed(0)
    options = DARTS.Options(init_channels=channels, layers=layers, partial_channels=k, edge_norm=edge_norm)
    return DARTS.build_supernet(options, 3, 3)


@pytest.mark.parametrize("stride, size", [(1, 8), (2, 8), (2, 7)])
@pytest.mark.parametrize("k", [2, 4])
def test_partial_channel_edge_runs_one_kth_and_passes_the_rest_through(stride, size, k):
    edge = build_edge(PRIMITIVES, 8, stride, k)
    assert isinstance(edge, PartialChannelEdge)
    convs = [m for m in edge.mixed.modules() if isinstance(m, torch.nn.Conv2d)]
    assert convs and all(c.out_channels in (8 // k, 8 // k // 2) for c in convs)  # FactorizedReduce: halves
    x = torch.randn(2, 8, size, size)
    weights = torch.zeros(len(PRIMITIVES))
    weights[PRIMITIVES.index("sep_conv_3x3")] = 1.0
    out = edge(x, weights)
    side = (size + 1) // 2 if stride == 2 else size
    assert out.shape == (2, 8, side, side)
    unshuffled = torch.nn.ChannelShuffle(8 // k)(out)  # the inverse of a shuffle with k groups
    rest = x[:, 8 // k :]
    if stride == 2:
        rest = torch.nn.functional.max_pool2d(rest, 2, 2, ceil_mode=True)
    assert torch.equal(unshuffled[:, 8 // k :], rest)


def test_partial_channels_of_one_is_the_plain_supernet():
    plain = DARTS.build_supernet(DARTS.Options(init_channels=4, layers=3), 3, 3)
    assert not any(isinstance(m, PartialChannelEdge) for m in plain.modules())
    assert plain.edge_logits() == {} and len(plain.arch_parameters()) == 2


@pytest.mark.parametrize(
    "name, k, edge_norm",
    [(n, 2, True) for n in sorted(SAMPLERS)]
    + [("gumbel_st", 1, True), ("gdas", 2, False), ("softmax", 4, True)],
)
def test_every_sampler_trains_alpha_and_betas_through_partial_channels(name, k, edge_norm):
    net = _net(k, edge_norm, channels=8)
    sampler = build_sampler(name)
    samples = sample_architecture(dict(net.alphas), sampler, 1.0, torch.Generator().manual_seed(0))
    out = net(torch.randn(2, 3, 8, 8), samples)
    loss = out.logsumexp(1).mean()
    extra = sampler.extra_loss(dict(net.alphas))
    params = net.arch_parameters()
    assert len(params) == 2 + 2 * edge_norm
    grads = torch.autograd.grad(loss if extra is None else loss + extra, params)
    assert all(torch.isfinite(g).all() and g.abs().sum() > 0 for g in grads)


def test_betas_are_architecture_parameters_untouched_by_the_weight_step(tmp_path):
    cfg = load_config(SearchRunConfig, None, TINY_SEARCH + [f"out_dir={tmp_path}", "space.partial_channels=2",
                                                           "space.edge_norm=true"])  # fmt: skip
    r = SearchRunner(cfg, DARTS, tmp_path)
    betas = list(r.model.edge_logits().values())
    assert [b.shape for b in betas] == [(14,), (14,)]
    arch, weights = {id(p) for p in r.model.arch_parameters()}, {id(p) for p in r.model.weight_parameters()}
    assert {id(b) for b in betas} <= arch and arch.isdisjoint(weights)
    train, val = next(iter(zip(r.train_loader, r.val_loader)))
    before = [b.detach().clone() for b in betas]
    r.weight_step(*train)
    assert all(b.grad is None for b in betas) and all(torch.equal(b, c) for b, c in zip(betas, before))
    r.architect.step(val, train, 1.0, 0.025, r.w_opt)
    assert all(not torch.equal(b, c) for b, c in zip(betas, before))
    assert {f"betas.{c}" for c in ("normal", "reduce")} <= set(r.state_dict(1)["model"])


@pytest.mark.parametrize("name", [n for n in sorted(SAMPLERS) if SAMPLERS.get(n).one_hot])
def test_detached_unchosen_ops_give_the_same_gradients_with_partial_channels(name):
    """c756924's first-order shortcut (unchosen ops run without autograd) keeps its promise inside a
    partial-channel edge with edge normalisation: bitwise the same loss and architecture gradients."""
    net = _net(2, True)
    x, y = torch.randn(4, 3, 8, 8), torch.tensor([0, 1, 2, 0])
    results = []
    for detach in (False, True):
        samples = sample_architecture(dict(net.alphas), name, 0.7, torch.Generator().manual_seed(11),
                                      detach_unchosen=detach)  # fmt: skip
        loss = torch.nn.functional.cross_entropy(net(x, samples), y)
        results.append((loss.detach(), torch.autograd.grad(loss, net.arch_parameters())))
    (loss0, g0), (loss1, g1) = results
    assert torch.equal(loss0, loss1)
    assert all(torch.equal(a, b) and a.abs().sum() > 0 for a, b in zip(g0, g1))


def test_edge_weights_are_a_softmax_per_node():
    betas = torch.randn(14, generator=torch.Generator().manual_seed(0))
    w = edge_weights(betas, node_groups(4))
    for group in node_groups(4):
        assert torch.allclose(w[group.start : group.stop], torch.softmax(betas[group.start : group.stop], 0))
    scattered = edge_weights(betas[:5], [(0, 3), (1, 2, 4)])  # any partition, not only runs of rows
    assert torch.allclose(scattered[[0, 3]], torch.softmax(betas[[0, 3]], 0))


def test_edge_weights_choose_a_nodes_inputs_but_not_their_ops():
    K = len(PRIMITIVES)
    probs = torch.full((5, K), 0.05)  # two nodes: edges 0-1 (node 2), 2-4 (node 3)
    probs[0, PRIMITIVES.index("sep_conv_3x3")] = 0.6
    probs[1, PRIMITIVES.index("skip_connect")] = 0.5
    probs[2, PRIMITIVES.index("dil_conv_3x3")] = 0.7
    probs[3, PRIMITIVES.index("max_pool_3x3")] = 0.6
    probs[4, PRIMITIVES.index("sep_conv_5x5")] = 0.5
    plain = derive_cell(probs, PRIMITIVES, 2)
    assert [sorted(j for _, j in node) for node in plain.nodes] == [[0, 1], [0, 1]]
    weights = torch.tensor([0.5, 0.5, 0.1, 0.3, 0.6])  # node 3 now prefers input 2 over input 0
    weighted = derive_cell(probs, PRIMITIVES, 2, weights)
    assert [sorted(j for _, j in node) for node in weighted.nodes] == [[0, 1], [1, 2]]
    ops = {j: op for node in (plain.nodes[1], weighted.nodes[1]) for op, j in node}
    assert ops == {0: "dil_conv_3x3", 1: "max_pool_3x3", 2: "sep_conv_5x5"}  # each edge's op unchanged


def test_budgeted_derive_scores_edges_as_derive_does():
    """With an unbinding budget, the knapsack over (log op probability + log edge weight) keeps exactly the
    cell that derive keeps with edge normalisation."""
    gen = torch.Generator().manual_seed(5)
    alphas = {ct: torch.randn(14, 8, generator=gen) for ct in DARTS.cell_types}
    betas = {ct: 3 * torch.randn(14, generator=gen) for ct in DARTS.cell_types}
    rules = {ct: DARTS.cell_rule(ct, 14) for ct in DARTS.cell_types}
    scores = {ct: torch.log_softmax(a.double(), -1) + edge_weights(betas[ct].double(), rules[ct].groups).log()[:, None]
              for ct, a in alphas.items()}  # fmt: skip
    costs = {ct: torch.zeros(14, 8) for ct in DARTS.cell_types}
    kept, _ = best_under_budget(scores, costs, rules, 0.0, 1.0)
    derived = DARTS.derive(alphas, betas)
    for ct in DARTS.cell_types:
        rows = {offset + j: PRIMITIVES.index(op) for offset, node in
                zip([g.start for g in node_groups(4)], derived.cells[ct].nodes) for op, j in node}  # fmt: skip
        assert dict(kept[ct]) == rows
    assert derived.cells != DARTS.derive(alphas).cells  # the betas mattered here


@pytest.mark.parametrize("override, message", [
    ("space.partial_channels=3", "space.partial_channels=3 must divide space.init_channels=4"),
    ("space.partial_channels=0", "space.partial_channels must be in [1, 1024], got 0"),
])  # fmt: skip
def test_partial_channels_that_do_not_divide_the_channels_are_refused(tmp_path, capsys, override, message):
    args = ["search", "--config", str(ROOT / "configs/search/tiny_synthetic.yaml"), *TINY_SEARCH, override,
            f"out_dir={tmp_path / 'run'}"]  # fmt: skip
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"nas: error: {message}" or (message in err and "\n" not in err)
    assert not (tmp_path / "run").exists()


def test_edge_normalisation_with_second_order_is_refused():
    with pytest.raises(UserError, match="space.edge_norm=true needs search.bilevel=first_order"):
        load_config(SearchRunConfig, None, ["space.edge_norm=true", "search.bilevel=second_order"])
    with pytest.raises(UserError, match="unknown key"):  # a DARTS key, not NB201's
        load_config(SearchRunConfig, None, ["space.name=nb201", "space.partial_channels=2"])


def test_a_pc_darts_search_derives_from_its_betas_and_nas_derive_agrees(tmp_path, capsys):
    out = tmp_path / "run"
    args = ["search", "--config", str(ROOT / "configs/search/tiny_synthetic.yaml"), *TINY_SEARCH,
            "space.partial_channels=2", "space.edge_norm=true", "search.epochs=1", f"out_dir={out}"]  # fmt: skip
    assert main(args) == 0
    saved = json.loads((out / "alphas.json").read_text())
    assert set(saved["betas"]) == {"normal", "reduce"} and len(saved["betas"]["normal"]) == 14
    genotype = json.loads((out / "genotype.json").read_text())
    alphas = {ct: torch.tensor(a) for ct, a in saved["alphas"].items()}
    betas = {ct: torch.tensor(b) for ct, b in saved["betas"].items()}
    expected = DARTS.derive(alphas, betas)
    assert main(["derive", str(out)]) == 0
    assert json.loads((out / "genotype.json").read_text())["cells"] == genotype["cells"]
    from nas.arch.genotype import load_genotype_file

    assert load_genotype_file(out / "genotype.json").cells == expected.cells
