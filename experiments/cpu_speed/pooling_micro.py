"""Per-call speed of `nas.arch.layers.MaxPool3x3` / `AvgPool3x3` against torch's nn.MaxPool2d /
nn.AvgPool2d(count_include_pad=False) on the map sizes of the DARTS CPU preset's mixed ops (batch 64, PC-DARTS
K = 4 at 8 channels: 2-16 channels), both layouts, strides 1 and 2, without autograd (an architecture step's
unchosen ops) and forward + backward. Prints torch's time / ours (> 1: ours is faster).

    OMP_NUM_THREADS=1 python experiments/cpu_speed/pooling_micro.py
"""

from __future__ import annotations

import time
from functools import partial

import torch
import torch.nn as nn

from nas.arch.layers import AvgPool3x3, MaxPool3x3


def per_call(fn, n: int = 30) -> float:
    fn(), fn()
    t0 = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - t0) / n


def forward_backward(module: nn.Module, x: torch.Tensor):
    x = x.detach().requires_grad_()

    def run():
        y = module(x)
        y.backward(torch.ones_like(y))

    return run


def main() -> None:
    torch.manual_seed(0)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s); torch's time / ours")
    print(
        f"{'map':>14} {'layout':>13} {'stride':>6} {'max no-grad':>11} {'max fwd+bwd':>11} {'avg no-grad':>11} {'avg fwd+bwd':>11}"
    )
    for C, H in [(2, 32), (8, 32), (4, 16), (16, 16)]:
        for layout in ("nchw", "channels_last"):
            x = torch.randn(64, C, H, H)
            if layout == "channels_last":
                x = x.contiguous(memory_format=torch.channels_last)
            for s in (1, 2):
                cols = []
                pairs = [
                    (nn.MaxPool2d(3, s, 1), MaxPool3x3(s)),
                    (nn.AvgPool2d(3, s, 1, count_include_pad=False), AvgPool3x3(s)),
                ]
                for ref, ours in pairs:
                    with torch.no_grad():
                        cols.append(per_call(partial(ref, x)) / per_call(partial(ours, x)))
                    cols.append(per_call(forward_backward(ref, x)) / per_call(forward_backward(ours, x)))
                shape = f"64x{C}x{H}x{H}"
                print(f"{shape:>14} {layout:>13} {s:>6} " + " ".join(f"{c:>10.1f}x" for c in cols))


if __name__ == "__main__":
    main()
