"""nas.run.memory: a build is stopped at the parameter that passes the device's memory, the meta-device pass
measures without touching the model or the RNG, and a run is refused only when even its floor cannot fit."""

import pytest
import torch
import torch.nn as nn

import nas.run.memory
from nas.core.errors import UserError
from nas.run.memory import activations, check_training, parameter_budget

CPU = torch.device("cpu")


@pytest.fixture
def one_gb(monkeypatch):
    monkeypatch.setattr(nas.run.memory, "total_memory", lambda device: 10**9)


def test_a_build_is_stopped_at_the_parameter_that_passes_the_budget(one_gb):
    built = []
    with pytest.raises(UserError) as refused:  # 12 bytes per parameter: 1 GB holds 83M
        with parameter_budget(CPU, 12, "the net", "net.width"):
            built.append(nn.Linear(1000, 1000))  # 1M parameters: fits
            built.append(nn.Linear(10_000, 10_000, bias=False))  # 100M more: refused at its weight
            built.append("after")
    message = str(refused.value)
    assert message.startswith("the net needs more than 1.2 GB for its parameters")
    assert "over 101,001,000 parameters" in message and message.endswith("has 1.0 GB; lower net.width")
    assert len(built) == 1  # the second module never finished its construction
    nn.Linear(10_000, 10_000, bias=False, device="meta")  # outside the context nothing is counted


def test_activations_measure_on_meta_and_leave_model_mode_and_rng_alone():
    net = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.Conv2d(8, 2, 3, stride=2)
    )
    net.train()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    rng = torch.get_rng_state()
    per_image, largest = activations(net, lambda m, x: m(x), (3, 8, 8))
    assert per_image == 3 * 8 * 8 * 8 + 2 * 3 * 3 and largest == 8 * 8 * 8  # conv, bn, relu, conv
    assert net.training and torch.equal(torch.get_rng_state(), rng)
    assert all(t.device.type == "cpu" for t in net.state_dict().values())
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())  # BN statistics included


def test_an_input_the_network_cannot_process_is_one_line():
    net = nn.Sequential(nn.Conv2d(3, 4, 5))
    with pytest.raises(UserError, match=r"^the network cannot process 3x2x2 images \("):
        activations(net, lambda m, x: m(x), (3, 2, 2))


def test_a_run_is_refused_only_when_its_floor_exceeds_the_device(one_gb):
    net = nn.Linear(10, 10)  # 110 parameters: the state is negligible, the activations decide
    kw = dict(eval_batch=1, slots=1, amp=False, what="the net", knobs="batch")
    check_training(net, (10**6, 1), CPU, batch=249, **kw)  # 249 images x 1M floats x 4 bytes < 1 GB
    with pytest.raises(
        UserError, match=r"^the net needs at least 1\.0 GB .*activations: 1\.0 GB\) but cpu has 1\.0 GB"
    ):
        check_training(net, (10**6, 1), CPU, batch=251, **kw)
    check_training(net, (10**6, 1), CPU, batch=251, **{**kw, "amp": True})  # bf16 activations: half
