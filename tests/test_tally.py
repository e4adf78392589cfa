"""Tally: the one metric sum of search and retrain (nas/run/epoch.py)."""

import random

import pytest
import torch

from nas.run.epoch import Tally


@pytest.mark.parametrize("seed", range(5))
def test_tally_equals_python_sums_for_any_mix_of_tensors_and_numbers(seed):
    rng = random.Random(seed)
    names = ("loss", "correct", "n")
    tally = Tally("cpu", *names)
    expected = dict.fromkeys(names, 0.0)
    for _ in range(50):
        keys = rng.sample(names, rng.randint(1, 3))
        values = {}
        for k in keys:
            x = rng.uniform(-5, 5) if k == "loss" else float(rng.randint(0, 64))
            values[k] = torch.tensor(x, dtype=torch.float32) if rng.random() < 0.5 else x
            expected[k] += float(values[k])
        tally.add(**values)
    totals = tally.totals()
    for k in names:
        assert totals[k] == pytest.approx(expected[k], rel=1e-6, abs=1e-5)
        assert tally.peek(k) == pytest.approx(expected[k], rel=1e-6, abs=1e-5)


def test_tally_does_not_keep_the_graph_of_a_loss():
    w = torch.ones(3, requires_grad=True)
    tally = Tally("cpu", "loss")
    tally.add(loss=(w * 2).sum())
    assert not tally.sums.requires_grad
    assert tally.totals() == {"loss": 6.0}


def test_tally_refuses_an_unknown_name():
    tally = Tally("cpu", "loss")
    with pytest.raises(KeyError):
        tally.add(lossx=1.0)
