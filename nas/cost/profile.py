"""Model size and cost: parameter counts and FLOPs (torch.utils.flop_counter)."""

from __future__ import annotations

import torch
import torch.nn as nn
from torch.utils.flop_counter import FlopCounterMode


def count_parameters(model: nn.Module, exclude: str | None = None) -> int:
    """Trainable parameters, optionally leaving out those whose name contains `exclude` (DARTS reports
    the network without its auxiliary head)."""
    return sum(p.numel() for name, p in model.named_parameters() if exclude is None or exclude not in name)


@torch.no_grad()
def count_flops(model: nn.Module, input_shape: tuple[int, ...]) -> int:
    """FLOPs of one eval-mode forward pass at batch 1 (a multiply-add counts as 2 FLOPs)."""
    was_training = model.training
    model.eval()
    param = next(model.parameters())
    x = torch.zeros((1, *input_shape), device=param.device, dtype=param.dtype)
    counter = FlopCounterMode(display=False)
    with counter:
        model(x)
    model.train(was_training)
    return int(counter.get_total_flops())


def model_summary(model: nn.Module, input_shape: tuple[int, ...]) -> dict[str, int]:
    flops = count_flops(model, input_shape)
    return {
        "params": count_parameters(model, exclude="auxiliary"),
        "params_with_auxiliary": count_parameters(model),
        "flops": flops,
        "macs": flops // 2,
    }
