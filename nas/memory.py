"""How much memory a network needs, measured before it is built, and whether the device has it.

The network is built on PyTorch's `meta` device (shapes only, no storage, no initialisation cost beyond
Python) and run once on a meta batch of two images with a hook on every leaf module: the parameter count
is exact, and the sum of the leaf modules' outputs approximates what autograd keeps for the backward
pass per image. This works for every registered space without knowing its structure, and it also
checks that the network accepts the data's image size (a network whose reductions shrink the image to
nothing fails here, in one line, instead of in the first batch).

The estimate is a floor, not a forecast: operations outside modules (sums, concatenations), the data
and the allocator's slack come on top. A run is refused only when even the floor exceeds the device's
total memory (`total_memory`), so nothing that could fit is refused.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from nas.errors import UserError

GB = 1e9


@dataclass(frozen=True)
class Estimate:
    params: int  # parameters (count)
    state_bytes: int  # parameters, gradients, optimiser slots and buffers
    activation_bytes: int  # kept for the backward pass (training) or the largest layer pair (eval)

    @property
    def total(self) -> int:
        return self.state_bytes + self.activation_bytes


def measure(build: Callable[[], nn.Module], forward: Callable[[nn.Module, torch.Tensor], Any],
            input_shape: tuple[int, ...]) -> tuple[int, int, int, int]:  # fmt: skip
    """(parameters, buffer bytes, summed leaf outputs per image, largest leaf output per image), in
    elements except where named, from a build and a forward pass on the meta device.

    The global torch RNG is left exactly as it was (a run's seeded stream must not move).

    Raises:
        UserError: the network cannot process inputs of `input_shape`.
    """
    outputs: list[int] = []

    def hook(module: nn.Module, args: Any, out: Any) -> None:
        tensors = out if isinstance(out, (tuple, list)) else [out]
        outputs.append(sum(t.numel() for t in tensors if isinstance(t, torch.Tensor)))

    with torch.random.fork_rng(devices=[]), torch.device("meta"):
        model = build()
        params = sum(p.numel() for p in model.parameters())
        buffers = sum(b.numel() * b.element_size() for b in model.buffers())
        leaves = [m for m in model.modules() if not any(True for _ in m.children())]
        handles = [m.register_forward_hook(hook) for m in leaves]
        try:
            # two images, not one: BatchNorm refuses a single value per channel in training mode
            forward(model.train(), torch.zeros((2, *input_shape)))
        except (RuntimeError, ValueError, IndexError) as exc:
            shape = "x".join(map(str, input_shape))
            reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
            raise UserError(f"the network cannot process {shape} images ({reason})") from None
        finally:
            for h in handles:
                h.remove()
    return params, buffers, sum(outputs) // 2, max(outputs, default=0) // 2


def estimate(measured: tuple[int, int, int, int], batch: int, eval_batch: int, optimizer_slots: int,
             amp: bool) -> Estimate:  # fmt: skip
    """The floor of a training run's memory: fp32 parameters + gradients + `optimizer_slots` states per
    parameter, plus activations for `batch` images (half size under bf16 autocast) or, if larger, an
    evaluation batch (no graph: the largest layer's input and output)."""
    params, buffers, per_image, largest = measured
    act = 2 if amp else 4
    activations = max(per_image * batch * act, 2 * largest * eval_batch * act)
    return Estimate(params, params * 4 * (2 + optimizer_slots) + buffers, activations)


def total_memory(device: torch.device) -> int | None:
    """The device's memory in bytes: a GPU's total, or the machine's RAM (or its cgroup limit, if lower);
    None where unknown."""
    if device.type == "cuda":
        return torch.cuda.get_device_properties(device).total_memory
    if device.type != "cpu":
        return None
    try:
        ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None
    for limit in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            ram = min(ram, int(Path(limit).read_text().strip()))
        except (OSError, ValueError):  # absent, or "max"
            continue
    return ram


def check_fits(
    est: Estimate, device: torch.device, what: str, knobs: str, state: str = "training state"
) -> None:
    """Refuse, in one line, a run whose memory floor exceeds the device's total memory.

    Args:
        what: the network, for the message ("the supernet").
        knobs: the config keys that shrink it, for the message.
        state: what `est.state_bytes` holds besides the parameters, for the message.
    """
    have = total_memory(device)
    if have is None or est.total <= have:
        return
    raise UserError(
        f"{what} needs at least {est.total / GB:,.1f} GB ({est.params:,} parameters and their {state}: "
        f"{est.state_bytes / GB:,.1f} GB; activations: {est.activation_bytes / GB:,.1f} GB) "
        f"but {device} has {have / GB:,.1f} GB; lower {knobs}"
    )


def check_bytes(needed: int, device: torch.device, what: str, knobs: str) -> None:
    """Refuse a plain allocation of `needed` bytes that exceeds the device's memory."""
    have = total_memory(device)
    if have is not None and needed > have:
        raise UserError(
            f"{what} needs {needed / GB:,.1f} GB but {device} has {have / GB:,.1f} GB; lower {knobs}"
        )


# --- the two kinds of run --------------------------------------------------------------------------------

_MEASURED: dict[tuple, tuple[int, int, int, int]] = {}  # in-process cache: tests build one config many times


def _cached(key: tuple, build: Callable[[], nn.Module], forward: Callable, shape: tuple[int, ...]):
    if key not in _MEASURED:
        _MEASURED[key] = measure(build, forward, shape)
    return _MEASURED[key]


def check_supernet(cfg: Any, space: Any, info: Any, device: torch.device, unchosen_grad: bool) -> None:
    """Refuse a search whose supernet cannot fit `device` (see `check_fits`): weights with SGD momentum,
    alphas with Adam, activations of one sampled architecture for `data.batch_size` images."""
    from nas.sampling import ArchSample, sample_architecture

    def forward(model: nn.Module, x: torch.Tensor) -> Any:
        alphas = {k: torch.zeros(a.shape, device="cpu") for k, a in model.alphas.items()}
        gen = torch.Generator().manual_seed(0)  # its own stream: the run's sampler generator is untouched
        samples = sample_architecture(alphas, cfg.sampler.name, 1.0, gen, unchosen_grad)
        return model(
            x, {k: ArchSample(s.weights.to("meta"), s.choices, s.unchosen_grad) for k, s in samples.items()}
        )

    shape = (info.in_channels, info.image_size, info.image_size)
    key = ("search", space.name, repr(cfg.space), cfg.sampler.name, unchosen_grad, info.num_classes, shape)
    measured = _cached(
        key, lambda: space.build_supernet(cfg.space, info.num_classes, info.in_channels), forward, shape
    )
    est = estimate(measured, cfg.data.batch_size, cfg.data.eval_batch_size, 1, cfg.amp == "bf16")
    check_fits(
        est, device, "the supernet", "space.init_channels, space.layers, space.nodes or data.batch_size"
    )


def check_network(cfg: Any, genotype: Any, space: Any, info: Any, device: torch.device) -> None:
    """Refuse a retrain whose network cannot fit `device`: weights with SGD momentum (and an EMA copy),
    activations for `data.batch_size` images."""
    shape = (info.in_channels, info.image_size, info.image_size)
    key = ("train", space.name, repr(cfg.model), repr(genotype.cells), info.num_classes, shape)
    measured = _cached(
        key, lambda: space.build_network(genotype, cfg.model, info.num_classes, info.in_channels),
        lambda model, x: model(x), shape,
    )  # fmt: skip
    est = estimate(
        measured, cfg.data.batch_size, cfg.data.eval_batch_size, 1 + cfg.train.ema, cfg.amp == "bf16"
    )
    check_fits(est, device, "the network", "model.init_channels, model.layers or data.batch_size")


def check_one_image(build: Callable[[], nn.Module], space_name: str, key: str, shape: tuple[int, ...],
                    knobs: str) -> None:  # fmt: skip
    """Refuse a network that cannot even hold its weights and one image's largest layer on the CPU
    (`nas genotype info` counts FLOPs with one forward pass there)."""
    measured = _cached(("one", space_name, key, shape), build, lambda model, x: model(x), shape)
    params, buffers, _, largest = measured
    est = Estimate(params, params * 4 + buffers, 2 * largest * 4)
    check_fits(est, torch.device("cpu"), "the network", knobs, state="buffers")
