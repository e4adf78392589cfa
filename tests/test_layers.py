import subprocess
import sys

import pytest
import torch

from nas.arch.layers import AvgPool3x3, MaxPool3x3, PointwiseConv


@pytest.mark.parametrize("C_in", [3, 6, 16])
@pytest.mark.parametrize("size", [7, 8])
def test_pointwise_conv_is_a_strided_1x1_conv_in_every_layout(C_in, size):
    """Values and every gradient equal the plain strided convolution on an NCHW input."""
    torch.manual_seed(0)
    conv = PointwiseConv(C_in, 5, stride=2)
    ref = torch.nn.Conv2d(C_in, 5, 1, stride=2, bias=False)
    ref.weight.data.copy_(conv.weight.data)
    x = torch.randn(2, C_in, size, size)
    x_cl = x.clone().to(memory_format=torch.channels_last).requires_grad_()
    x_ref = x.clone().requires_grad_()
    g = torch.randn(2, 5, (size + 1) // 2, (size + 1) // 2)
    y, y_ref = conv(x_cl), ref(x_ref)
    (y * g).sum().backward()
    (y_ref * g).sum().backward()
    torch.testing.assert_close(y, y_ref)
    torch.testing.assert_close(x_cl.grad, x_ref.grad)
    torch.testing.assert_close(conv.weight.grad, ref.weight.grad)


CRASH = """
import torch
torch.set_num_threads(1)
from search_spaces.darts.ops import FactorizedReduce as DartsFR
from search_spaces.nb201.ops import FactorizedReduce as NB201FR
for fr in (DartsFR(4, 4), NB201FR(4, 4, 2, True, True)):
    fr = fr.to(memory_format=torch.channels_last)
    for _ in range(30):
        x = torch.randn(8, 4, 16, 16).to(memory_format=torch.channels_last).requires_grad_()
        fr(x).sum().backward()
print("ok")
"""


def test_factorized_reduce_survives_one_thread_channels_last_with_few_channels():
    """torch 2.14.1's oneDNN aborts (heap corruption) in this case with a plain strided 1x1 conv."""
    out = subprocess.run([sys.executable, "-c", CRASH], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr[-2000:]


def _same_pooling(ours, ref, x, grad_mode):
    """Forward values, output strides and (with autograd) the input gradient, all bitwise."""
    a, b = x.clone(), x.clone()
    with torch.set_grad_enabled(grad_mode):
        if grad_mode:
            a.requires_grad_(), b.requires_grad_()
        y, y_ref = ours(a), ref(b)
    assert torch.equal(y, y_ref) and y.stride() == y_ref.stride()
    if grad_mode:
        g = torch.randn_like(y_ref)
        y.backward(g), y_ref.backward(g)
        assert torch.equal(a.grad, b.grad)


@pytest.mark.parametrize("shape", [(3, 2, 32, 32), (2, 5, 7, 9), (2, 3, 1, 1), (1, 2, 2, 3), (2, 16, 8, 8)])
@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("layout", ["nchw", "channels_last"])
@pytest.mark.parametrize("ties", [False, True])
@pytest.mark.parametrize("grad_mode", [False, True])
def test_3x3_poolings_are_torchs_bitwise(shape, stride, layout, ties, grad_mode):
    """MaxPool3x3 / AvgPool3x3 (their CPU fast paths) against nn.MaxPool2d / nn.AvgPool2d: odd sizes, a 1x1
    map, channels_last, and ties (integer-valued inputs: torch's kernel sends the gradient to the first
    maximum of a window in row-major order, and so must ours)."""
    torch.manual_seed(0)
    x = torch.randn(*shape) * (3 if ties else 1)
    x = x.round() if ties else x
    if layout == "channels_last":
        x = x.contiguous(memory_format=torch.channels_last)
    _same_pooling(MaxPool3x3(stride), torch.nn.MaxPool2d(3, stride, 1), x, grad_mode)
    avg_ref = torch.nn.AvgPool2d(3, stride, 1, count_include_pad=False)
    _same_pooling(AvgPool3x3(stride), avg_ref, x, grad_mode)


def test_max_pool_propagates_nan_like_torch():
    x = torch.randn(1, 1, 5, 5)
    x[0, 0, 2, 2] = float("nan")
    with torch.no_grad():
        ours, ref = MaxPool3x3(1)(x), torch.nn.MaxPool2d(3, 1, 1)(x)
    assert torch.equal(ours.isnan(), ref.isnan()) and torch.equal(ours.nan_to_num(), ref.nan_to_num())


def test_3x3_poolings_keep_torchs_parameters():
    """They are the torch layers (isinstance, settings, no parameters or buffers): a retrained network's
    counts and checkpoints do not change."""
    assert isinstance(MaxPool3x3(2), torch.nn.MaxPool2d) and isinstance(AvgPool3x3(1), torch.nn.AvgPool2d)
    assert MaxPool3x3(2).extra_repr() == torch.nn.MaxPool2d(3, 2, 1).extra_repr()
    assert AvgPool3x3(1).extra_repr() == torch.nn.AvgPool2d(3, 1, 1, count_include_pad=False).extra_repr()
    assert not list(MaxPool3x3(1).parameters()) and not MaxPool3x3(1).state_dict()
