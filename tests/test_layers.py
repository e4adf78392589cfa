import subprocess
import sys

import pytest
import torch

from nas.arch.layers import PointwiseConv


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
