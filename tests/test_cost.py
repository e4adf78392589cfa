"""Resource-aware search (`nas.cost`): tables, the expected cost, budgets in derive, the search term."""

import itertools
import json
import math
import random

import pytest
import torch

import search_spaces  # noqa: F401
from nas.arch.rule import CellRule
from nas.arch.space import SPACES
from nas.config import SpaceConfig
from nas.core.errors import UserError
from nas.cost.budget import best_under_budget, cost_range, derive_within
from nas.cost.expected import expected_cost
from nas.cost.profile import count_flops, count_parameters
from nas.cost.table import NetworkSpec, count_table, load_table
from tests.conftest import ROOT

NB201 = SPACES.get("nb201")
DARTS = SPACES.get("darts")


@pytest.fixture(scope="module")
def nb201_table():
    return count_table(NB201, NetworkSpec("nb201", init_channels=4, layers=1, classes=4, image_size=8))


def _enumerate(alphas, costs, rules, fixed):
    """E[cost] by listing every cell of the rule with its probability (groups drawn uniformly, ops with
    softmax(alpha) renormalised over the allowed ops): the definition, no algebra."""
    per_group = []
    for ct, rule in rules.items():
        p = torch.softmax(alphas[ct].double(), -1)
        q = p / p[:, list(rule.allowed)].sum(-1, keepdim=True)
        for group in rule.groups:
            n = math.comb(len(group), rule.keep)
            per_group.append([(math.prod(q[e, k].item() for e, k in c) / n, sum(costs[ct][e, k].item() for e, k in c))
                              for c in rule.choices(group)])  # fmt: skip
    total = 0.0
    for cell in itertools.product(*per_group):
        total += math.prod(p for p, _ in cell) * (fixed + sum(c for _, c in cell))
    return total


def test_table_is_exact_for_whole_networks(nb201_table):
    spec = nb201_table.net
    for seed in range(3):
        g = NB201.sample_random(random.Random(seed), SpaceConfig(name="nb201"))
        net = NB201.build_network(g, spec.model_config(), spec.classes, spec.in_channels, spec.image_size)
        assert nb201_table.cost_of(g, NB201, "flops") == count_flops(net, spec.input_shape())
        assert nb201_table.cost_of(g, NB201, "params") == count_parameters(net)


def test_table_round_trips(tmp_path, nb201_table):
    nb201_table.save(tmp_path / "t.json")
    assert load_table(tmp_path / "t.json").cells == nb201_table.cells
    (tmp_path / "bad.json").write_text(json.dumps({"format": "x"}))
    with pytest.raises(UserError, match="not a cost table"):
        load_table(tmp_path / "bad.json")


def test_expected_cost_equals_enumeration_nb201(nb201_table):
    fixed, costs = nb201_table.metric("flops")
    rules = {"cell": NB201.cell_rule("cell", 6)}
    alphas = {"cell": torch.randn(6, 5, generator=torch.Generator().manual_seed(0))}
    got = expected_cost(alphas, costs, rules, fixed).item()
    assert got == pytest.approx(_enumerate(alphas, costs, rules, fixed), rel=1e-12)


def test_expected_cost_equals_enumeration_darts_rule():
    # a DARTS-shaped rule: 2 nodes (rows 0-1 and 2-4), keep 2 inputs each, op 0 (`none`) never kept
    rules = {
        "normal": CellRule(((0, 1), (2, 3, 4)), 2, (1, 2)),
        "reduce": CellRule(((0, 1), (2, 3, 4)), 2, (1, 2)),
    }
    g = torch.Generator().manual_seed(1)
    costs = {ct: torch.rand(5, 3, generator=g, dtype=torch.float64) for ct in rules}
    alphas = {ct: torch.randn(5, 3, generator=g) for ct in rules}
    got = expected_cost(alphas, costs, rules, 2.5).item()
    assert got == pytest.approx(_enumerate(alphas, costs, rules, 2.5), rel=1e-12)


def test_expected_cost_gradient(nb201_table):
    fixed, costs = nb201_table.metric("params")
    rules = {"cell": NB201.cell_rule("cell", 6)}
    alpha = torch.randn(6, 5, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a: expected_cost({"cell": a}, costs, rules, fixed), (alpha,))
    # autograd against the closed form d E / d alpha_ek = p_ek (c_ek - sum_j p_ej c_ej)
    (grad,) = torch.autograd.grad(expected_cost({"cell": alpha}, costs, rules, fixed), alpha)
    p, c = torch.softmax(alpha.detach(), -1), costs["cell"]
    assert torch.allclose(grad, p * (c - (p * c).sum(-1, keepdim=True)))


def test_budget_is_exact_against_brute_force(nb201_table):
    fixed, costs = nb201_table.metric("flops")
    rules = {"cell": NB201.cell_rule("cell", 6)}
    scores = {"cell": torch.log_softmax(torch.randn(6, 5, generator=torch.Generator().manual_seed(2)), -1)}
    low, high = cost_range(costs, rules, fixed)
    cells = torch.cartesian_prod(*[torch.arange(5)] * 6)  # (5^6, 6) every cell
    rows = torch.arange(6)
    cell_cost, cell_score = (
        fixed + costs["cell"][rows, cells].sum(1),
        scores["cell"].double()[rows, cells].sum(1),
    )
    assert (low, high) == pytest.approx((cell_cost.min().item(), cell_cost.max().item()))
    for budget in (low, (low + high) / 3, (low + high) / 2, high):
        kept, cost = best_under_budget(scores, costs, rules, fixed, budget)
        assert cost <= budget
        best = cell_score[cell_cost <= budget].max().item()
        assert sum(scores["cell"][e, k].item() for e, k in kept["cell"]) == pytest.approx(best)
    assert best_under_budget(scores, costs, rules, fixed, low - 1) is None


def test_derive_within_darts_budget():
    table = count_table(
        DARTS, NetworkSpec("darts", init_channels=4, layers=3, nodes=2, classes=4, image_size=8)
    )
    alphas = {
        ct: torch.randn(5, 8, generator=torch.Generator().manual_seed(3)) for ct in ("normal", "reduce")
    }
    free, free_cost = derive_within(DARTS, alphas, table, "params", float("inf"))
    assert free.cells == DARTS.derive(alphas).cells  # no budget: the derive rule itself
    fixed, costs = table.metric("params")
    low, _ = cost_range(costs, {ct: DARTS.cell_rule(ct, 5) for ct in costs}, fixed)
    cheap, cost = derive_within(DARTS, alphas, table, "params", low)
    assert cost == table.cost_of(cheap, DARTS, "params") == low < free_cost
    with pytest.raises(UserError, match=r"no darts cell fits params <= .*cheapest") as info:
        derive_within(DARTS, alphas, table, "params", low - 1)
    assert "\n" not in str(info.value)


def _search(tmp_path, table, *overrides):
    from nas.config import SearchRunConfig, load_config
    from nas.search.runner import SearchRunner
    from tests.conftest import TINY_SEARCH

    table.save(tmp_path / "table.json")
    cfg = load_config(SearchRunConfig, None, TINY_SEARCH + [f"out_dir={tmp_path}/run", "space.name=nb201",
                      "space.layers=1", f"search.cost.table={tmp_path}/table.json", *overrides])  # fmt: skip
    runner = SearchRunner(cfg, NB201, tmp_path / "run")
    runner.run()
    return [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]


def test_large_lambda_derives_a_cheapest_cell_and_derive_takes_budgets(tmp_path, nb201_table, capsys):
    from nas.cli import main

    metric = "flops"
    records = _search(tmp_path, nb201_table, f"search.cost.metric={metric}", "search.cost.weight=100",
                      "search.arch.lr=0.5", "search.arch.weight_decay=0", "data.synthetic.train_size=64")  # fmt: skip
    fixed, costs = nb201_table.metric(metric)
    low, high = cost_range(costs, {"cell": NB201.cell_rule("cell", 6)}, fixed)
    last = records[-1]
    assert last[f"derived_{metric}"] == low < high
    assert low <= last[f"expected_{metric}"] < records[0][f"expected_{metric}"]
    # `nas derive RUN --max-flops X`: a budget the space cannot meet is one line and exit code 2
    capsys.readouterr()
    assert main(["derive", str(tmp_path / "run"), "--max-flops", str(low - 1)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("nas: error: no nb201 cell fits flops <=")
    assert main(["derive", str(tmp_path / "run"), "--max-flops", str(low), "--max-params", "1e9"]) == 2
    assert main(["derive", str(tmp_path / "run"), "--max-flops", str(low)]) == 0
    assert f"flops {low:,.6g} <= " in capsys.readouterr().out
    genotype = json.loads((tmp_path / "run" / "genotype.json").read_text())
    assert genotype["provenance"]["budget"] == {"metric": "flops", "max": low, "cost": low}


def test_cost_profile_measures_latency_and_caches_it(tmp_path, capsys):
    from nas.cli import main

    args = ["cost", "profile", "--space", "nb201", "--init-channels", "4", "--layers", "1", "--image-size", "8",
            "--warmup", "0", "--repeats", "2", "--cache", str(tmp_path / "cache.json")]  # fmt: skip
    assert main(args + ["-o", str(tmp_path / "a.json")]) == 0
    assert "from the cache" in capsys.readouterr().out
    assert main(args + ["-o", str(tmp_path / "b.json")]) == 0
    assert "latency: 0 ops measured" in capsys.readouterr().out  # every op timing came from the cache
    a, b = load_table(tmp_path / "a.json"), load_table(tmp_path / "b.json")
    assert a.cells["latency"] == b.cells["latency"] and a.latency["device"].startswith("cpu")
    fixed, costs = a.metric("latency")
    assert (costs["cell"][:, 0] == 0).all() and (costs["cell"][:, 3] > 0).all()  # none free, conv 3x3 not
    tiny = ["--config", str(ROOT / "configs/search/tiny_synthetic.yaml"), f"out_dir={tmp_path}/never"]
    assert main(["search", *tiny, "search.cost.metric=latency", "search.cost.weight=1"]) == 2  # needs a table
    assert "search.cost.table" in capsys.readouterr().err


def test_pareto_front():
    from nas.ablate.plots import pareto_front

    points = [(3.0, 70.0), (1.0, 60.0), (2.0, 55.0), (2.0, 65.0), (4.0, 69.0), (1.0, 58.0)]
    assert pareto_front(points) == [(1.0, 60.0), (2.0, 65.0), (3.0, 70.0)]


def test_pareto_plot(tmp_path):
    from nas.ablate.plots import plot_pareto

    rows = [
        {"kind": "search", "setting": f"weight={w}", "proxy_test_acc": 60 + w, "flops": 1e6 * (5 - w)}
        for w in range(3)
    ]
    rows += [
        {"kind": "baseline", "setting": "random", "proxy_test_acc": 50 + i, "flops": 1e6 * i}
        for i in range(4)
    ]
    assert plot_pareto(rows, tmp_path / "p.png") and (tmp_path / "p.png").read_bytes()[:4] == b"\x89PNG"
    assert not plot_pareto(
        [{"kind": "search", "setting": "x", "proxy_test_acc": None, "flops": 1}], tmp_path / "q.png"
    )


def test_nodes_flag_is_refused_for_a_space_whose_cell_size_is_fixed(tmp_path, capsys):
    from nas.cli import main

    out = tmp_path / "t.json"
    assert main(["cost", "table", "--space", "nb201", "--nodes", "3", "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert err == "nas: error: --nodes: the nb201 space's cell has a fixed number of nodes\n"
    assert not out.exists()
