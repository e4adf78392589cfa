"""How much memory a network needs, and whether the device has it, found out before the memory is used.

Two measurements, neither of which knows anything about the search space:
- `parameter_budget`: while a network is built, every parameter registration is counted (a global
  module hook). The parameter that takes the total past what the device can hold stops the build before
  its memory is initialised, so `init_channels=100000` is refused in a line instead of filling the
  machine. A CPU allocation the operating system refuses outright is reported the same way.
- `build_checked`: both of them on a build on the meta device, before the real build: nothing of a
  network that cannot fit is ever allocated.
- `activations`: one forward pass of the built network on PyTorch's `meta` device (shapes only, no
  storage; the parameters are swapped for meta tensors for the pass) with a hook on every leaf module.
  The sum of the leaf outputs approximates what autograd keeps for the backward pass per image. It also checks that the network accepts the data's image size: a network whose reductions
  shrink the image to nothing fails here, in one line, not in the first batch.

The total is a floor, not a forecast: operations outside modules (sums, concatenations), the data and the
allocator's slack come on top. A run is refused only when even the floor exceeds the device's total
memory (`total_memory`), so nothing that could fit is refused.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from nas.core.errors import UserError

GB = 1e9
_ACTIVATIONS: dict[tuple, tuple[int, int]] = {}  # in-process cache: tests build one config many times


@dataclass(frozen=True)
class Estimate:
    params: int  # parameters (count)
    state_bytes: int  # parameters, gradients, optimiser slots and buffers
    activation_bytes: int  # kept for the backward pass (training) or the largest layer pair (eval)

    @property
    def total(self) -> int:
        return self.state_bytes + self.activation_bytes


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


@contextlib.contextmanager
def parameter_budget(device: torch.device, bytes_per_param: int, what: str, knobs: str) -> Iterator[None]:
    """Around a network's construction (on the CPU, to be moved to `device`): refuse it as soon as its
    parameters alone, at `bytes_per_param` each (weights, gradients, optimiser slots), pass the memory of
    the CPU or of `device`. A build refused this way has allocated at most the CPU's memory divided by
    `bytes_per_param / 4` (a third for SGD with momentum), and only for the moment of the refusal.

    Raises:
        UserError: saying how much the parameters counted so far need, and which keys shrink them.
    """
    sizes = [total_memory(torch.device("cpu")), total_memory(device)]
    have = min((s for s in sizes if s is not None), default=None)
    limit = have / bytes_per_param if have is not None else float("inf")
    count = [0]

    def refuse(n: int) -> UserError:
        return UserError(
            f"{what} needs more than {n * bytes_per_param / GB:,.1f} GB for its parameters and their training "
            f"state alone (over {n:,} parameters, counting stopped there) but {device} has "
            f"{(have or 0) / GB:,.1f} GB; lower {knobs}"
        )

    def refused_allocation(exc: RuntimeError) -> UserError:
        tried = re.search(r"allocate (\d+) bytes", str(exc))  # one fp32 tensor the allocator refused
        return refuse(count[0] + (int(tried.group(1)) // 4 if tried else 0))

    def on_parameter(module: nn.Module, name: str, param: Any) -> None:
        count[0] += param.numel() if param is not None else 0
        if count[0] > limit:  # raised before the module initialises this parameter's memory
            raise refuse(count[0])

    hook = nn.modules.module.register_module_parameter_registration_hook(on_parameter)
    try:
        yield
    except RuntimeError as exc:  # the allocator refused one tensor outright (larger than RAM + swap)
        if "allocate" not in str(exc):
            raise
        raise refused_allocation(exc) from None
    finally:
        hook.remove()


def build_checked(build: Callable[[], nn.Module], check: Callable[[nn.Module], None], device: torch.device,
                  bytes_per_param: int, what: str, knobs: str) -> nn.Module:  # fmt: skip
    """`build()` twice: first on the meta device (shapes only, no memory; the global RNG left as it was),
    counted by `parameter_budget` and judged by `check(model)`, then, only if it passed, for real on the
    CPU. So a network that cannot fit is refused before any of its memory exists (a 10-node, 100-layer,
    4096-channel supernet took 5 GB of RAM before its refusal when it was counted while being built),
    at the price of building twice (Python time only).

    Raises:
        UserError: the refusal of `parameter_budget` or of `check`.
    """
    with (
        torch.random.fork_rng(devices=[]),
        torch.device("meta"),
        parameter_budget(device, bytes_per_param, what, knobs),
    ):
        shadow = build()
    check(shadow)
    del shadow
    with parameter_budget(device, bytes_per_param, what, knobs):  # e.g. a CPU allocation refused outright
        return build()


@contextlib.contextmanager
def _on_meta(model: nn.Module) -> Iterator[None]:
    """Swap every parameter and buffer of `model` for a storage-less meta tensor of the same shape, and
    back. Module attributes are swapped directly (`_parameters`, `_buffers`): `functional_call` does the
    same but walks the module tree once per tensor, which costs more than the forward pass itself."""
    saved = []
    for module in model.modules():
        for store in (module._parameters, module._buffers):
            for name, tensor in store.items():
                if tensor is not None:
                    saved.append((store, name, tensor))
                    store[name] = torch.empty_like(tensor, device="meta")
    try:
        yield
    finally:
        for store, name, tensor in saved:
            store[name] = tensor


def activations(model: nn.Module, forward: Callable[[nn.Module, torch.Tensor], Any], input_shape: tuple[int, ...],
                key: tuple | None = None) -> tuple[int, int]:  # fmt: skip
    """(summed leaf-module outputs, largest leaf output), in elements per image, from one forward pass of
    one image on the meta device; `forward(model, x)` runs the network. Evaluation mode: BatchNorm's
    training-mode meta kernel costs twice as much, and the shapes are the same (only an auxiliary head that
    runs in training alone is left out of the floor). Cached per `key` within the process (if given). The
    model, its mode and the global RNG are left as they were.

    Raises:
        UserError: the network cannot process inputs of `input_shape`.
    """
    if key is not None and key in _ACTIVATIONS:
        return _ACTIVATIONS[key]
    outputs: list[int] = []

    def on_output(module: nn.Module, args: Any, out: Any) -> None:
        tensors = out if isinstance(out, (tuple, list)) else [out]
        outputs.append(sum(t.numel() for t in tensors if isinstance(t, torch.Tensor)))

    leaves = [m for m in model.modules() if not any(True for _ in m.children())]
    handles = [m.register_forward_hook(on_output) for m in leaves]
    was_training = model.training
    try:
        with torch.random.fork_rng(devices=[]), torch.no_grad(), _on_meta(model):
            forward(model.eval(), torch.zeros((1, *input_shape), device="meta"))
    except (RuntimeError, ValueError, IndexError) as exc:
        shape = "x".join(map(str, input_shape))
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        raise UserError(f"the network cannot process {shape} images ({reason})") from None
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    measured = (sum(outputs), max(outputs, default=0))
    if key is not None:
        _ACTIVATIONS[key] = measured
    return measured


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


def check_training(model: nn.Module, measured: tuple[int, int], device: torch.device, *, batch: int,
                   eval_batch: int, slots: int, amp: bool, what: str, knobs: str) -> None:  # fmt: skip
    """The floor of a training run: fp32 parameters + gradients + `slots` optimiser states each, plus the
    activations of `batch` images (half size under bf16 autocast) or, if larger, of an evaluation batch
    (no graph: the largest layer's input and output)."""
    params = sum(p.numel() for p in model.parameters())
    buffers = sum(b.numel() * b.element_size() for b in model.buffers())
    per_image, largest = measured
    act = 2 if amp else 4
    est = Estimate(
        params, params * 4 * (2 + slots) + buffers, max(per_image * batch, 2 * largest * eval_batch) * act
    )
    check_fits(est, device, what, knobs)


def check_inference(model: nn.Module, shape: tuple[int, ...], knobs: str) -> None:
    """Refuse a network whose weights and one image's largest layer (input and output) do not fit the CPU:
    what a single no-grad forward pass there needs (`nas genotype info`)."""
    params = sum(p.numel() for p in model.parameters())
    _, largest = activations(model, lambda net, x: net(x), shape)
    check_fits(
        Estimate(params, params * 4, 2 * largest * 4), torch.device("cpu"), "the network", knobs, "buffers"
    )


def check_bytes(needed: int, device: torch.device, what: str, knobs: str) -> None:
    """Refuse a plain allocation of `needed` bytes that exceeds the device's memory."""
    have = total_memory(device)
    if have is not None and needed > have:
        raise UserError(
            f"{what} needs {needed / GB:,.1f} GB but {device} has {have / GB:,.1f} GB; lower {knobs}"
        )


# --- the two kinds of run --------------------------------------------------------------------------------

# the keys that shrink a network's parameters, and its whole floor (for the messages); a space's own
# sizes (its `Options`' int keys) are named where its config is at hand (`space_sizes`)
SUPERNET_SIZE = "space.init_channels, space.layers or another space.* size"
NETWORK_SIZE = "model.init_channels or model.layers"
NETWORK_KNOBS = "model.init_channels, model.layers or data.batch_size"


def space_sizes(space_cfg: Any) -> str:
    """The `space.*` keys that size a supernet, for the messages: every int key of the space's config
    (init_channels, layers, and the space's own, e.g. DARTS' nodes and stem_multiplier)."""
    return ", ".join(f"space.{f.name}" for f in fields(space_cfg) if type(getattr(space_cfg, f.name)) is int)


def check_supernet(model: nn.Module, cfg: Any, info: Any, device: torch.device, sampler: Any) -> None:
    """Refuse a search whose supernet (built on the CPU under `parameter_budget`) cannot fit `device`:
    weights with SGD momentum, alphas with Adam, one sampled architecture's activations per batch
    (`sampler`: the run's `nas.sampling.Sampler`, whose sample decides which ops run)."""
    from nas.sampling import sample_architecture

    first_order = getattr(cfg.search, "bilevel", "first_order") == "first_order"

    def forward(net: nn.Module, x: torch.Tensor) -> Any:
        alphas = {k: torch.zeros(a.shape) for k, a in net.alphas.items()}
        gen = torch.Generator().manual_seed(0)  # its own stream: the run's sampler generator is untouched
        # as the architecture step runs it (nas.search.architect): first order detaches unchosen ops
        samples = sample_architecture(alphas, sampler, 1.0, gen, detach_unchosen=first_order)
        return net(x, {k: replace(s, weights=s.weights.to("meta")) for k, s in samples.items()})

    shape = (info.in_channels, info.image_size, info.image_size)
    key = ("search", repr(cfg.space), repr(cfg.sampler), sampler.unchosen_grad, info.num_classes, shape)
    check_training(model, activations(model, forward, shape, key), device, batch=cfg.data.batch_size,
                   eval_batch=cfg.data.eval_batch_size, slots=1, amp=cfg.amp == "bf16", what="the supernet",
                   knobs=f"{space_sizes(cfg.space)} or data.batch_size")  # fmt: skip


def check_network(model: nn.Module, cfg: Any, genotype: Any, info: Any, device: torch.device) -> None:
    """Refuse a retrain whose network (built on the CPU under `parameter_budget`) cannot fit `device`:
    weights with SGD momentum (and an EMA copy), activations of a batch."""
    shape = (info.in_channels, info.image_size, info.image_size)
    key = ("train", repr(cfg.model), repr(genotype.cells), info.num_classes, shape)
    check_training(model, activations(model, lambda net, x: net(x), shape, key), device,
                   batch=cfg.data.batch_size, eval_batch=cfg.data.eval_batch_size, slots=1 + cfg.train.ema,
                   amp=cfg.amp == "bf16", what="the network", knobs=NETWORK_KNOBS)  # fmt: skip
