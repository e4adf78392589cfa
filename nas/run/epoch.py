"""EpochRun: the run skeleton that the search (`SearchRunner`) and retraining (`Trainer`) share.

Both are a loop over epochs that a killed process resumes exactly, alone or under torchrun. What they do
the same way lives here, once:
- set-up: rank and device, backends, seeds, autocast, the run logger, config.yaml of a fresh run;
- the checkpoint: epoch, model, the optimisers and schedulers a run names (`checkpointed`), and each rank's
  loader and RNG states (`loaders`), saved by `state_dict` and restored by `restore`;
- `run`: the remaining epochs, then `finish`, with the logger closed however it ends;
- the end of an epoch (`end_epoch`): stop on a NaN loss, gather every rank's states, check that the ranks'
  replicas agree, rank 0 logs the metrics and writes the checkpoint, then all ranks meet;
- inside an epoch: the weight step (`optimizer_step`: clear, backward, average across ranks where no DDP
  wrapper does, clip, step), the epoch's metric sums (`Tally`, summed across ranks once per epoch) and
  the progress bar (`progress`).

A run implements `build` (loaders, model, optimisers), `epochs`, `run_epoch`, `epoch_line` and `finish`;
the other hooks have defaults. A fix to resume or distributed handling lands here, for both commands.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
from tqdm import tqdm

from nas.config import RunConfig, to_yaml
from nas.core.atomic import atomic_write_text
from nas.core.rundir import CONFIG_FILE, kept_checkpoint
from nas.run.checkpoint import CHECKPOINT, load_checkpoint, restoring, save_checkpoint, stop_if_diverged
from nas.run.distributed import Distributed, gather_rank_states, own_rank_state
from nas.run.runlog import RunLogger
from nas.run.runtime import (
    autocast,
    configure_backends,
    pick_device,
    provenance,
    rng_state,
    seed_everything,
    set_rng_state,
)


class Tally:
    """Named sums of per-batch metrics (loss x batch size, correct predictions, images, ...). Tensor values are
    summed on their device in float64, so that a step never waits for the GPU; plain numbers (batch sizes) are
    summed on the host, so that a step uploads nothing. `totals` sums both across ranks once per epoch."""

    def __init__(self, device: torch.device | str, *names: str):
        self.index = {name: i for i, name in enumerate(names)}
        self.sums = torch.zeros(len(names), device=device, dtype=torch.float64)
        self.counts = [0.0] * len(names)
        self._positions: dict[tuple[str, ...], torch.Tensor] = {}

    def add(self, **values: torch.Tensor | float) -> None:
        """Add each named value (a 0-d tensor or a number) to its sum."""
        tensors = {k: v for k, v in values.items() if isinstance(v, torch.Tensor)}
        for k, v in values.items():
            if k not in tensors:
                self.counts[self.index[k]] += float(v)
        if not tensors:
            return
        keys = tuple(tensors)
        where = self._positions.get(keys)
        if where is None:
            where = self._positions[keys] = torch.tensor(
                [self.index[k] for k in keys], device=self.sums.device
            )
        self.sums[where] += torch.stack([v.detach().double() for v in tensors.values()])

    def peek(self, name: str) -> float:
        """This rank's sum so far (waits for the device)."""
        i = self.index[name]
        return float(self.sums[i]) + self.counts[i]

    def totals(self, dist: Any = None) -> dict[str, float]:
        """Every sum, over all ranks where `dist` is given (collective: every rank calls it)."""
        sums = self.sums + torch.tensor(self.counts, device=self.sums.device, dtype=torch.float64)
        if dist:
            dist.all_reduce_sum(sums)
        return dict(zip(self.index, sums.tolist()))


def optimizer_step(
    loss: torch.Tensor,
    optimizer: torch.optim.Optimizer,
    params: Iterable[torch.Tensor],
    grad_clip: float = 0.0,
    dist: Any = None,
) -> None:
    """One step on `loss`, the same in the search and the retrain loops: clear the gradients, backpropagate,
    average them across ranks where `dist` is given (a network that no DDP wrapper averages), clip their
    norm to `grad_clip` (0 = off), step."""
    params = list(params)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if dist:
        dist.all_reduce_grads([p.grad for p in params if p.grad is not None])
    if grad_clip > 0:
        nn.utils.clip_grad_norm_(params, grad_clip)
    optimizer.step()


class EpochRun:
    """Builds a run from its config in `out_dir` (resuming its last checkpoint if `resume`) and runs it.

    Args:
        dist: optional `nas.run.distributed` context (rank, world size, collectives); None = one process.
    """

    kind = "run"  # the TensorBoard prefix of the epoch metrics: "search/", "train/"
    loss_keys: tuple[str, ...] = ("train_loss",)  # a NaN or infinite one stops the run (`stop_if_diverged`)
    model: nn.Module

    def __init__(
        self, cfg: RunConfig, out_dir: str | Path, resume: bool = False, dist: Distributed | None = None
    ):
        self.cfg, self.out_dir, self.dist = cfg, Path(out_dir), dist
        self.rank = dist.rank if dist else 0
        self.world_size = dist.world_size if dist else 1
        self.device = dist.device if dist else pick_device(cfg.device)
        configure_backends(self.device, cfg.deterministic)
        seed_everything(cfg.seed)
        self.autocast = functools.partial(autocast, self.device, cfg.amp)
        self.build()
        self.start_epoch = 0
        if resume:
            self.restore()
        # a resumed run's metrics.jsonl and TensorBoard events lose what was written after its checkpoint
        self.logger = RunLogger(
            self.out_dir, enabled=self.rank == 0, resume_epoch=self.start_epoch if resume else None
        )
        if not resume and self.rank == 0:
            atomic_write_text(self.out_dir / CONFIG_FILE, to_yaml(cfg, meta=provenance()))
            self.write_start()

    # --- what a run implements ----------------------------------------------------------------------

    def build(self) -> None:
        """Build the loaders, `self.model` (through `place`) and the optimisers, in a fixed order: the
        seeded RNG streams depend on it."""
        raise NotImplementedError

    @property
    def epochs(self) -> int:
        raise NotImplementedError

    def run_epoch(self, epoch: int) -> dict[str, Any]:
        """One epoch on every rank; returns its metrics, already summed over the ranks."""
        raise NotImplementedError

    def epoch_line(self, record: dict[str, Any]) -> str:
        """The console line of a finished epoch."""
        raise NotImplementedError

    def finish(self, record: dict[str, Any]) -> Any:
        """After the last epoch (on every rank; `record` is empty when a finished run was resumed): write
        the final outputs and return what `run` returns."""
        raise NotImplementedError

    def checkpointed(self) -> dict[str, Any]:
        """Checkpoint key -> optimiser or other object with state_dict/load_state_dict (None: absent in
        this run, saved as None). Not the lr schedules: a timm scheduler is a pure function of the epoch
        and the config, and its state_dict holds the config (`t_initial`), so restoring one would keep a
        resume with more epochs on the old, shorter schedule. Each run rebuilds them from its config
        and steps them with the epoch index. (Checkpoints of earlier versions still carry the key; it is
        ignored.)"""
        return {}

    def loaders(self) -> dict[str, Any]:
        """Name -> loader whose position the checkpoint keeps (per rank, under `data`)."""
        return {}

    def extra_state(self) -> dict[str, Any]:
        """Further checkpoint keys of this run."""
        return {}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        """Restore what `extra_state` saved (inside `restoring`: a missing key is a mismatch)."""

    def stopped(self) -> bool:
        """True once the run has ended before its last epoch (the search's collapse guard)."""
        return False

    def finite(self) -> bool:
        """Finiteness checks beyond the losses (the search: the alphas)."""
        return True

    def replicated(self) -> tuple[list[torch.Tensor], str]:
        """The tensors every rank must hold bitwise equal after an epoch, and what to call them."""
        return list(self.model.parameters()), "weights"

    def write_start(self) -> None:
        """Rank 0, fresh runs: files to write next to config.yaml."""

    def write_epoch(self, epoch: int, record: dict[str, Any]) -> None:
        """Rank 0, after a good epoch, before its metrics are logged: derived outputs; may add to `record`."""

    # --- shared -------------------------------------------------------------------------------------

    def progress(self, epoch: int, total: int) -> tqdm:
        """The epoch's progress bar (rank 0, `progress: true`), `total` steps; gone when the epoch ends."""
        return tqdm(total=total, desc=f"epoch {epoch}", disable=not (self.cfg.progress and self.rank == 0),
                    leave=False)  # fmt: skip

    def place(self, model: nn.Module) -> nn.Module:
        """`model` on this run's device, channels_last if the config asks."""
        model = model.to(self.device)
        if self.cfg.channels_last:
            model = model.to(memory_format=torch.channels_last)
        return model

    def loader_states(self) -> dict[str, Any]:
        return {name: loader.state_dict() for name, loader in self.loaders().items()}

    def state_dict(self, next_epoch: int, ranks: list[dict] | None = None) -> dict[str, Any]:
        """Everything a resume needs; `ranks`: every rank's loader and RNG states (`gather_rank_states`)."""
        parts = {k: None if part is None else part.state_dict() for k, part in self.checkpointed().items()}
        return {
            "epoch": next_epoch,
            "model": self.model.state_dict(),
            **parts,
            **self.extra_state(),
            "data": self.loader_states(),
            "rng": rng_state(),
            "ranks": ranks,
        }

    def restore(self) -> None:
        """Load the last checkpoint of `out_dir`: the epoch to start at, the model, the checkpointed parts
        and this rank's own loader and RNG states."""
        path = self.out_dir / CHECKPOINT
        state = load_checkpoint(path, map_location=self.device)
        with restoring(path):
            self.load_state(state)

    def load_state(self, state: dict[str, Any]) -> None:
        """Load a `state_dict` (a checkpoint's, or one held in memory: `experiments/cpu_speed/pooling_ab.py`
        replays the same steps from it). The optimisers keep the tensors they are given: pass a copy to keep
        `state` itself unchanged."""
        self.model.load_state_dict(state["model"])
        for key, part in self.checkpointed().items():
            if part is not None and state[key] is not None:
                part.load_state_dict(state[key])
        self.load_extra_state(state)
        own = own_rank_state(state, self.rank, self.world_size)  # augmentation streams differ per rank
        for name, loader in self.loaders().items():
            loader.load_state_dict(own["data"][name])
        set_rng_state(own["rng"])
        self.start_epoch = int(state["epoch"])

    def run(self) -> Any:
        """Run the remaining epochs, then `finish`."""
        record: dict[str, Any] = {}
        try:
            for epoch in range(self.start_epoch, self.epochs):
                if self.stopped():
                    break
                record = self.run_epoch(epoch)
                self.end_epoch(epoch, record)
            return self.finish(record)
        finally:
            self.logger.close()

    def end_epoch(self, epoch: int, record: dict[str, Any]) -> None:
        """Check, log and checkpoint a finished epoch (collective: every rank calls it)."""
        stop_if_diverged(record, self.loss_keys, self.out_dir / CHECKPOINT, self.finite())
        ranks = gather_rank_states(self.dist, self.loader_states())
        if self.dist:
            self.dist.check_identical(*self.replicated())
        if self.rank == 0:
            self.write_epoch(epoch, record)
            self.logger.epoch(record)
            self.logger.scalars(
                {k: v for k, v in record.items() if k != "epoch"}, epoch, prefix=f"{self.kind}/"
            )
            self.logger.console(self.epoch_line(record))
            state = self.state_dict(epoch + 1, ranks)
            save_checkpoint(self.out_dir / CHECKPOINT, state)
            if epoch + 1 in self.cfg.keep_checkpoints:  # a snapshot to fork runs from (e.g. after a warm-up)
                save_checkpoint(self.out_dir / kept_checkpoint(epoch + 1), state)
        if self.dist:
            self.dist.barrier()
