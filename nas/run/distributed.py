"""torchrun / DDP helpers: joining the process group, averaging gradients, and elastic restarts.

One process per device. torchrun sets RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR/MASTER_PORT and
TORCHELASTIC_RESTART_COUNT; `init_distributed` reads them and joins the default group: NCCL on CUDA (this
process's device is cuda:LOCAL_RANK), gloo on the CPU. Without torchrun, or with a single process, it
returns None and every caller takes its one-process path, so `torchrun --nproc_per_node 1` runs exactly
what `nas ...` runs.

Why the search averages gradients by hand and the retrain uses DDP:
- search: the architecture step differentiates w.r.t. alpha only (`torch.autograd.grad`), a hard sampler
  runs one op per edge (DDP would need `find_unused_parameters`, a graph walk every step), and the weight
  and architecture steps update disjoint parameter sets at different times. All ranks run the same sampled
  sub-network, so they hold gradients for the same tensors; averaging exactly those in a few coalesced
  buffers (`all_reduce_grads`) is simpler and, for a supernet of a few MB, as fast.
- retrain: a fixed network whose every parameter is used each step. DDP (`wrap`) overlaps its bucketed
  all-reduce with the backward pass and broadcasts the BatchNorm buffers from rank 0.

Elastic restarts: when a worker dies, torchrun (`--max-restarts N`) stops the group and starts it again
with TORCHELASTIC_RESTART_COUNT raised; `elastic_resume` then makes every rank resume `out_dir` from its
last checkpoint.
"""

from __future__ import annotations

import contextlib
import datetime
import hashlib
import math
import os
import sys
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed as tdist
import torch.nn as nn

from nas.core.errors import UserError
from nas.core.rundir import CONFIG_FILE, RunDir, claim
from nas.run.runtime import pick_device, rng_state

BUCKET_BYTES = 64 * 2**20  # coalesced all-reduce buffers: few calls, bounded extra memory


def launched_by_torchrun() -> bool:
    """True when the torchrun (or any env:// launcher) variables are set."""
    return "RANK" in os.environ and "WORLD_SIZE" in os.environ


def restart_count() -> int:
    """How often torchrun has restarted this worker group (0 on the first attempt or without torchrun)."""
    return int(os.environ.get("TORCHELASTIC_RESTART_COUNT", "0"))


def lr_scale(rule: str, world_size: int) -> float:
    """Learning-rate multiplier for `world_size` processes, each with `data.batch_size` images.

    `none` keeps the configured rate; `linear` multiplies it by world_size (Goyal et al., 2017, for SGD);
    `sqrt` by sqrt(world_size) (Krizhevsky, 2014), the milder rule for short schedules. `rule` was
    checked with the config (`nas.config.validate`).
    """
    return {"none": 1.0, "linear": float(world_size), "sqrt": math.sqrt(world_size)}[rule]


def process_device(name: str, local_rank: int) -> torch.device:
    """This process's device: cuda:LOCAL_RANK for `auto` (with CUDA) and `cuda`, the CPU for `cpu`."""
    device = pick_device(name)
    if device.type == "cpu":
        return device
    if device.type != "cuda":
        raise UserError(f"device {name!r} is not supported with several processes (use cuda or cpu)")
    if device.index is not None:
        raise UserError(f"device={name} would put every process on one GPU; under torchrun use device=cuda")
    if local_rank >= torch.cuda.device_count():
        raise UserError(f"LOCAL_RANK {local_rank} but only {torch.cuda.device_count()} GPU(s) are visible")
    return torch.device("cuda", local_rank)


def init_distributed(device: str = "auto") -> Distributed | None:
    """Join the process group that torchrun described in the environment; None for a single process.

    Args:
        device: the config's `device` (auto | cpu | cuda).
    """
    if not launched_by_torchrun() or int(os.environ["WORLD_SIZE"]) == 1:
        return None
    rank, world_size = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    dev = process_device(device, local_rank)
    backend = "nccl" if dev.type == "cuda" else "gloo"
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    if not tdist.is_initialized():
        timeout = datetime.timedelta(minutes=30)
        store, _, _ = next(tdist.rendezvous("env://", timeout=timeout))
        # torchrun's agent lends the same store to every restarted group; without a per-attempt prefix a
        # new group can read the addresses its dead predecessor published (gloo: "connection refused")
        store = tdist.PrefixStore(f"nas/attempt_{restart_count()}", store)
        tdist.init_process_group(backend, store=store, rank=rank, world_size=world_size, timeout=timeout)
    return Distributed(rank=rank, world_size=world_size, local_rank=local_rank, device=dev, backend=backend)


@dataclass
class Distributed:
    """This process's place in the group and the collectives the search and the trainer use."""

    rank: int
    world_size: int
    local_rank: int
    device: torch.device
    backend: str

    def all_reduce_grads(self, grads: list[torch.Tensor]) -> None:
        """Average gradients across ranks in place, one all-reduce per coalesced bucket.

        Every rank must pass tensors of the same shapes and dtypes in the same order (they do: all ranks
        run the same sub-network). The sum is divided by world_size on each rank; the all-reduced sum is
        the same on every rank, so the averages are bitwise equal everywhere.
        """

        def average(flat: torch.Tensor) -> None:
            tdist.all_reduce(flat)
            flat.div_(self.world_size)

        _coalesced(grads, average)

    def all_reduce_sum(self, tensor: torch.Tensor) -> torch.Tensor:
        """Sum `tensor` over ranks, in place (metric accumulators)."""
        tdist.all_reduce(tensor)
        return tensor

    def broadcast_object(self, obj: Any, src: int = 0) -> Any:
        """Rank `src`'s picklable `obj`, on every rank."""
        box = [obj]
        tdist.broadcast_object_list(box, src)
        return box[0]

    def all_gather_object(self, obj: Any) -> list[Any]:
        """Every rank's picklable `obj`, in rank order, on every rank."""
        out: list[Any] = [None] * self.world_size
        tdist.all_gather_object(out, obj)
        return out

    def broadcast_module(self, module: nn.Module, buffers_only: bool = False) -> None:
        """Copy rank 0's parameters and buffers (or only the buffers) into every rank's `module`."""
        tensors = list(module.buffers()) if buffers_only else [*module.parameters(), *module.buffers()]
        _coalesced([t.data for t in tensors], lambda flat: tdist.broadcast(flat, 0))

    def check_identical(self, tensors: list[torch.Tensor], what: str) -> None:
        """Raise if the ranks' `tensors` are not bitwise equal (a cheap guard against silent divergence).

        Raises:
            RuntimeError: naming `what` and the ranks' digests.
        """
        digests = self.all_gather_object(digest(tensors))
        if len(set(digests)) > 1:
            raise RuntimeError(f"ranks hold different {what}: digests {digests}")

    def barrier(self) -> None:
        if self.backend == "nccl":
            tdist.barrier(device_ids=[self.device.index])
        else:
            tdist.barrier()

    def wrap(self, model: nn.Module, sync_bn: bool = False) -> nn.Module:
        """`model` wrapped in DistributedDataParallel (gradients averaged during backward).

        Args:
            sync_bn: first convert its BatchNorm layers, in place, to SyncBatchNorm (statistics over the
                global batch; CUDA only).
        """
        from torch.nn.parallel import DistributedDataParallel

        if sync_bn:
            if self.device.type != "cuda":
                raise UserError("train.sync_bn=true needs GPUs: PyTorch's SyncBatchNorm has no CPU kernel")
            nn.SyncBatchNorm.convert_sync_batchnorm(model)  # in place for any model but a bare BatchNorm
        device_ids = [self.device.index] if self.device.type == "cuda" else None
        # static_graph: the same parameters are used every step, which also covers a genotype whose
        # dead-end ops (e.g. an NB201 node that only feeds `none`) never receive a gradient. Buffers are
        # broadcast from rank 0 before each forward (DDP's default).
        return DistributedDataParallel(model, device_ids=device_ids, static_graph=True)

    def destroy(self) -> None:
        if tdist.is_initialized():
            tdist.destroy_process_group()


def digest(tensors: list[torch.Tensor]) -> str:
    """SHA-256 of the tensors' bytes (bitwise identity, not closeness)."""
    h = hashlib.sha256()
    for t in tensors:
        h.update(t.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def _buckets(tensors: list[torch.Tensor], limit: int) -> Iterator[list[torch.Tensor]]:
    """Consecutive groups of tensors of one device and dtype, each at most `limit` bytes (or one tensor)."""
    open_buckets: dict[tuple[torch.device, torch.dtype], tuple[list[torch.Tensor], int]] = {}
    for t in tensors:
        key = (t.device, t.dtype)
        bucket, size = open_buckets.get(key, ([], 0))
        nbytes = t.numel() * t.element_size()
        if bucket and size + nbytes > limit:
            yield bucket
            bucket, size = [], 0
        bucket.append(t)
        open_buckets[key] = (bucket, size + nbytes)
    for bucket, _ in open_buckets.values():
        if bucket:
            yield bucket


@torch.no_grad()
def _coalesced(tensors: list[torch.Tensor], op: Callable[[torch.Tensor], Any]) -> None:
    """Apply the in-place collective `op` to flat buckets of `tensors` and copy the results back."""
    for bucket in _buckets(tensors, BUCKET_BYTES):
        flat = torch.cat([t.reshape(-1) for t in bucket])  # (sum of numel,)
        op(flat)
        for t, part in zip(bucket, flat.split([t.numel() for t in bucket])):
            t.copy_(part.view_as(t))


# --- checkpoints: per-rank state ------------------------------------------------------------------------


def gather_rank_states(dist: Distributed | None, data: dict) -> list[dict] | None:
    """Every rank's loader states and global RNG states, for rank 0's checkpoint (collective).

    They differ between ranks (each rank augments with its own stream), so a resumed group needs each
    rank's own to continue exactly where an uninterrupted run would be.
    """
    if dist is None:
        return None
    return dist.all_gather_object({"data": data, "rng": rng_state()})


def own_rank_state(state: dict, rank: int, world_size: int) -> dict:
    """This rank's {'data', 'rng'} from a checkpoint (rank 0's for a one-process checkpoint).

    A checkpoint written by N processes and resumed by M != N continues with rank r taking rank r mod N's
    streams: a valid run, but no longer the one an uninterrupted run would have been.
    """
    ranks = state.get("ranks") or [{"data": state["data"], "rng": state["rng"]}]
    if len(ranks) != world_size and rank == 0:
        warnings.warn(
            f"the checkpoint was written by {len(ranks)} process(es) and is resumed by {world_size}: the "
            "global batch changes and the run will not match an uninterrupted one",
            stacklevel=2,
        )
    return _to_cpu(ranks[rank % len(ranks)])


def _to_cpu(obj: Any) -> Any:
    """Generator and RNG states must be CPU tensors, whatever `map_location` the checkpoint was loaded with."""
    if isinstance(obj, torch.Tensor):
        return obj.cpu()
    if isinstance(obj, dict):
        return {k: _to_cpu(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_to_cpu(v) for v in obj)
    return obj


# --- the run directory and elastic restarts ---------------------------------------------------------------


@contextlib.contextmanager
def run_dir(
    out_dir: str | Path, resume: bool, dist: Distributed | None, done: str, schema: type
) -> Iterator[RunDir]:
    """`nas.core.rundir.claim` on rank 0 only, for the life of the context; every rank follows its decision to
    resume or start afresh. If rank 0 refuses the directory it exits with the error and torchrun stops
    the waiting ranks."""
    if dist is None or dist.rank == 0:
        with claim(out_dir, resume, done, schema) as run:
            if dist is not None:
                dist.broadcast_object(run.resume)  # a collective: the other ranks wait here for the claim
            yield run
    else:
        yield RunDir(Path(out_dir), dist.broadcast_object(None))


def elastic_resume(cfg: Any, checkpoint: str, dist: Distributed | None) -> bool:
    """Whether this (re)started worker group must resume `cfg.out_dir` from `checkpoint`.

    False on torchrun's first attempt. After a restart, rank 0 looks at out_dir and every rank follows its
    decision: resume when the checkpoint is there; otherwise start afresh (the claim clears what an
    attempt that died before its first checkpoint left, `nas.core.rundir.decide`).

    Raises:
        UserError: out_dir holds a run with another config (never resume someone else's run).
    """
    if restart_count() == 0:
        return False
    decision = (
        _elastic_decision(cfg, Path(cfg.out_dir), checkpoint) if dist is None or dist.rank == 0 else None
    )
    return dist.broadcast_object(decision) if dist is not None else decision


def _elastic_decision(cfg: Any, out: Path, checkpoint: str) -> bool:
    from nas.config import load_config

    if not (out / CONFIG_FILE).is_file():
        return False
    if load_config(type(cfg), out / CONFIG_FILE) != cfg:
        raise UserError(f"out_dir {out} holds a run with a different config; choose another out_dir")
    attempt = restart_count()
    if (out / checkpoint).is_file():
        print(
            f"nas: elastic restart {attempt}: resuming {out} from {checkpoint}", file=sys.stderr, flush=True
        )
        return True
    print(
        f"nas: elastic restart {attempt}: no checkpoint in {out} yet, starting afresh",
        file=sys.stderr,
        flush=True,
    )
    return False


def destroy(dist: Distributed | None) -> None:
    """Leave the process group (no-op for a single process)."""
    if dist is not None:
        dist.destroy()
