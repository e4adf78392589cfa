"""SearchRunner: the bilevel search loop, per-epoch derive/log/checkpoint, and resume.

Per step: an architecture step on a batch of the alpha split (alpha only), then a weight step on a batch
of the weight split (w only). Per epoch: tau from the schedule, metrics, TensorBoard, the derived
genotype, an atomic checkpoint. A run killed at any point resumes from its last checkpoint and ends
bitwise equal (on CPU) to an uninterrupted run.
"""

from __future__ import annotations

import contextlib
import functools
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
from timm.scheduler import CosineLRScheduler
from tqdm import tqdm

from nas import diagnostics
from nas.atomic import atomic_write_text
from nas.checkpoint import CHECKPOINT, load_checkpoint, restoring, save_checkpoint, stop_if_diverged
from nas.config import SearchRunConfig, to_dict, to_yaml
from nas.cost.expected import cost_term
from nas.data import search_loaders
from nas.distributed import gather_rank_states, lr_scale, own_rank_state
from nas.genotype import save_genotype
from nas.memory import SUPERNET_SIZE, check_supernet, parameter_budget
from nas.plot import cell_figure, plot_genotype
from nas.rundir import ALPHAS_FILE, CONFIG_FILE, COST_TABLE_FILE, GENOTYPE_FILE
from nas.runlog import RunLogger
from nas.runtime import (
    autocast,
    configure_backends,
    pick_device,
    provenance,
    rng_state,
    seed_everything,
    set_rng_state,
)
from nas.sampling import build_sampler
from nas.schedules import tau_at, validate_schedule
from nas.search.architect import Architect
from nas.space import SearchSpace


class SearchRunner:
    """Builds everything a search needs from a config and runs (or resumes) it.

    Args:
        dist: optional `nas.distributed` context (rank, world size, gradient all-reduce); None = one process.
    """

    # `nas bench` sets this to a callable phase name -> context manager that times the phases of a step
    # ("data", "arch", "weights"); None (the default) costs nothing.
    timer: Callable[[str], contextlib.AbstractContextManager] | None = None

    def __init__(
        self, cfg: SearchRunConfig, space: SearchSpace, out_dir: str | Path, resume: bool = False, dist=None
    ):
        self.sampler = build_sampler(cfg.sampler, space)
        validate_schedule(cfg.tau)
        self.cfg, self.space, self.out_dir, self.dist = cfg, space, Path(out_dir), dist
        self.rank = dist.rank if dist else 0
        self.world_size = dist.world_size if dist else 1
        self.device = dist.device if dist else pick_device(cfg.device)
        configure_backends(self.device, cfg.deterministic)
        seed_everything(cfg.seed)
        self.train_loader, self.val_loader, self.info = search_loaders(
            cfg.data, device=self.device, seed=cfg.seed, rank=self.rank, world_size=self.world_size,
            channels_last=cfg.channels_last,
        )  # fmt: skip
        with parameter_budget(self.device, 4 * 3, "the supernet", SUPERNET_SIZE):  # weights, grads, momentum
            model = space.build_supernet(cfg.space, self.info.num_classes, self.info.in_channels)
        check_supernet(model, cfg, self.info, self.device, self.sampler)  # before it moves there
        self.model = model.to(self.device)
        if cfg.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        if dist:  # identical by seeding already; rank 0's copy makes it so by construction
            dist.broadcast_module(self.model)
        self.criterion = nn.CrossEntropyLoss()
        self.autocast = functools.partial(autocast, self.device, cfg.amp)
        self._build_optimizers()
        self.generator = torch.Generator().manual_seed(cfg.seed + 1)  # the sampler's noise stream
        self.cost = cost_term(cfg.search.cost, space, self.info, cfg.space.nodes, self.model)  # None: off
        self.architect = Architect(
            self.model, self.a_opt, self.criterion, self.sampler, self.generator, self.autocast,
            bilevel=cfg.search.bilevel, grad_hook=dist.all_reduce_grads if dist else None,
            xi=cfg.search.unrolled_xi,
            penalty=self.cost.penalty if self.cost is not None and self.cost.weight > 0 else None,
        )  # fmt: skip
        self.start_epoch = 0
        self.tau = cfg.tau.start
        if resume:
            self._restore()
        self.logger = RunLogger(
            self.out_dir, enabled=self.rank == 0, resume_epoch=self.start_epoch if resume else None
        )
        if not resume and self.rank == 0:
            atomic_write_text(self.out_dir / CONFIG_FILE, to_yaml(cfg, meta=provenance()))
            if self.cost is not None:  # what `nas derive --max-...` reads
                self.cost.table.save(self.out_dir / COST_TABLE_FILE)

    def _build_optimizers(self) -> None:
        w, a = self.cfg.search.weights, self.cfg.search.arch
        scale = lr_scale(self.cfg.lr_scaling, self.world_size)  # weights only: Adam's alpha lr is not scaled
        fused = {"foreach": True} if self.device.type == "cuda" else {}
        self.w_opt = torch.optim.SGD(
            self.model.weight_parameters(), lr=w.lr * scale, momentum=w.momentum, nesterov=w.nesterov,
            weight_decay=w.weight_decay, **fused,
        )  # fmt: skip
        self.a_opt = torch.optim.Adam(
            self.model.arch_parameters(), lr=a.lr, betas=tuple(a.betas), weight_decay=a.weight_decay
        )
        # timm's cosine schedule is a pure function of the epoch: exact on resume
        self.w_sched = CosineLRScheduler(
            self.w_opt, t_initial=self.cfg.search.epochs, lr_min=w.lr_min * scale, warmup_t=w.warmup_epochs,
            warmup_lr_init=w.lr_min * scale, warmup_prefix=True,
        )  # fmt: skip

    # --- checkpoint ---------------------------------------------------------------------------------

    def state_dict(self, next_epoch: int, ranks: list[dict] | None = None) -> dict[str, Any]:
        """Everything a resume needs; `ranks`: every rank's loader and RNG states (`gather_rank_states`)."""
        return {
            "epoch": next_epoch,
            "tau": self.tau,
            "model": self.model.state_dict(),
            "w_opt": self.w_opt.state_dict(),
            "a_opt": self.a_opt.state_dict(),
            "w_sched": self.w_sched.state_dict(),
            "sampler_generator": self.generator.get_state(),
            "sampler": self.sampler.state_dict(),
            "data": {"train": self.train_loader.state_dict(), "val": self.val_loader.state_dict()},
            "rng": rng_state(),
            "world_size": self.world_size,
            "ranks": ranks,
        }

    def _restore(self) -> None:
        path = self.out_dir / CHECKPOINT
        state = load_checkpoint(path, map_location=self.device)
        with restoring(path):
            self.model.load_state_dict(state["model"])
            self.w_opt.load_state_dict(state["w_opt"])
            self.a_opt.load_state_dict(state["a_opt"])
            self.w_sched.load_state_dict(state["w_sched"])
            self.generator.set_state(state["sampler_generator"].cpu())
            self.sampler.load_state_dict(state.get("sampler", {}))  # absent before samplers had state
            own = own_rank_state(state, self.rank, self.world_size)  # augmentation streams differ per rank
            self.train_loader.load_state_dict(own["data"]["train"])
            self.val_loader.load_state_dict(own["data"]["val"])
            set_rng_state(own["rng"])
            self.start_epoch, self.tau = int(state["epoch"]), float(state["tau"])

    # --- the loop -----------------------------------------------------------------------------------

    def tau_for(self, epoch: int, step: int = 0) -> float:
        return tau_at(self.cfg.tau, epoch, self.cfg.search.epochs, step, len(self.train_loader))

    def run(self) -> dict[str, Any]:
        """Run the remaining epochs; returns the last epoch's metrics (empty if nothing was left to do)."""
        record: dict[str, Any] = {}
        try:
            for epoch in range(self.start_epoch, self.cfg.search.epochs):
                record = self.run_epoch(epoch)
                self.end_epoch(epoch, record)
            if self.rank == 0:
                self.finish()
        finally:
            self.logger.close()
        return record

    def _phase(self, name: str) -> contextlib.AbstractContextManager:
        return self.timer(name) if self.timer is not None else contextlib.nullcontext()

    def run_epoch(self, epoch: int, max_steps: int | None = None) -> dict[str, Any]:
        """One epoch of search steps (only the first `max_steps` of them if given: `nas bench`)."""
        self.w_sched.step(epoch)
        self.model.train()
        lr = self.w_opt.param_groups[0]["lr"]
        update_alpha = epoch >= self.cfg.search.arch_start_epoch
        sums = torch.zeros(
            4, device=self.device, dtype=torch.float64
        )  # train loss, correct, val loss, correct
        seen = torch.zeros(2, device=self.device, dtype=torch.float64)
        steps = len(self.train_loader)
        bar = tqdm(
            total=steps,
            desc=f"epoch {epoch}",
            disable=not (self.cfg.progress and self.rank == 0),
            leave=False,
        )
        start = time.perf_counter()
        batches = zip(self.train_loader, self.val_loader)
        for step in range(steps if max_steps is None else min(steps, max_steps)):
            with self._phase("data"):
                train, val = next(batches)
            self.tau = self.tau_for(epoch, step)
            if update_alpha:
                with self._phase("arch"):
                    out = self.architect.step(val, train, self.tau, lr, self.w_opt)
                sums[2:] += torch.stack([out["loss"].double() * len(val[1]), out["correct"].double()])
                seen[1] += len(val[1])
            with self._phase("weights"):
                out = self.weight_step(*train)
            sums[:2] += torch.stack([out["loss"].double() * len(train[1]), out["correct"].double()])
            seen[0] += len(train[1])
            bar.update(1)
            if not bar.disable and (step + 1) % self.cfg.log_every == 0:  # .item() waits for the GPU
                bar.set_postfix(loss=f"{(sums[0] / seen[0]).item():.3f}", tau=f"{self.tau:.3g}")
        bar.close()
        if self.dist:
            self.dist.all_reduce_sum(sums)
            self.dist.all_reduce_sum(seen)
        sums, seen = sums.tolist(), seen.tolist()
        return {
            "epoch": epoch,
            "tau": self.tau,
            "lr": lr,
            "train_loss": sums[0] / seen[0],
            "train_acc": 100.0 * sums[1] / seen[0],
            "val_loss": sums[2] / seen[1] if seen[1] else None,
            "val_acc": 100.0 * sums[3] / seen[1] if seen[1] else None,
            "epoch_time": time.perf_counter() - start,
            "images_per_s": (seen[0] + seen[1]) / (time.perf_counter() - start),
        }

    def weight_step(self, x: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
        """One SGD step on the weights, on the Architect's sample for it (`sample_for_weights`)."""
        samples = self.architect.sample_for_weights(self.tau)
        with self.autocast():
            logits = self.model(x, samples)
            loss = self.criterion(logits, y)
        self.w_opt.zero_grad(set_to_none=True)
        loss.backward()
        params = self.w_opt.param_groups[0]["params"]  # weight_parameters(), without rebuilding it per step
        if self.dist:
            self.dist.all_reduce_grads([p.grad for p in params if p.grad is not None])
        if self.cfg.search.weights.grad_clip > 0:
            nn.utils.clip_grad_norm_(params, self.cfg.search.weights.grad_clip)
        self.w_opt.step()
        return {"loss": loss.detach(), "correct": (logits.detach().argmax(1) == y).sum()}

    # --- per-epoch outputs --------------------------------------------------------------------------

    def derive_logits(self) -> dict[str, torch.Tensor]:
        """Per cell type, the logits whose softmax is the sampler's op probabilities (derive reads them)."""
        return {k: self.sampler.derive_logits(a.detach()) for k, a in self.model.alphas.items()}

    def genotype(self, epoch: int):
        """The derived genotype with its provenance (config, seed, epoch, op probabilities)."""
        logits = self.derive_logits()
        genotype = self.space.derive(logits)
        prov = {
            "run": self.cfg.name,
            "epoch": epoch,
            "seed": self.cfg.seed,
            "sampler": self.cfg.sampler.name,
            "tau": self.tau,
            "probabilities": diagnostics.probabilities(logits, self.space.primitives),
            "config": to_dict(self.cfg),
        }
        return type(genotype)(genotype.space, genotype.cells, prov)

    def end_epoch(self, epoch: int, record: dict[str, Any]) -> None:
        finite = all(bool(torch.isfinite(a).all()) for a in self.model.arch_parameters())
        stop_if_diverged(record, ("train_loss", "val_loss"), self.out_dir / CHECKPOINT, finite)
        data = {"train": self.train_loader.state_dict(), "val": self.val_loader.state_dict()}
        ranks = gather_rank_states(self.dist, data)
        if self.dist:
            self.dist.check_identical(self.model.arch_parameters(), "alphas")
        if self.rank == 0:
            genotype = self.genotype(epoch)
            save_genotype(self.out_dir / GENOTYPE_FILE, genotype)
            logits = self.derive_logits()
            record.update(diagnostics.epoch_diagnostics(logits, genotype, self.space))
            if self.cost is not None:  # expected cost under alpha and the derived cell's actual cost
                record.update(self.cost.epoch_record(dict(self.model.alphas), genotype))
            self.logger.epoch(record)
            self.logger.scalars({k: v for k, v in record.items() if k != "epoch"}, epoch, prefix="search/")
            diagnostics.log_alphas(self.logger, logits, self.space.primitives, epoch)
            self.logger.text("genotype", diagnostics.genotype_text(genotype), epoch)
            self.logger.figure("genotype/cells", cell_figure(genotype), epoch)
            self.logger.console(
                f"epoch {epoch}: tau {record['tau']:.3g} lr {record['lr']:.4g} train_acc {record['train_acc']:.2f} "
                f"val_acc {record['val_acc'] if record['val_acc'] is None else round(record['val_acc'], 2)} "
                f"({record['epoch_time']:.1f}s)"
            )
            save_checkpoint(self.out_dir / CHECKPOINT, self.state_dict(epoch + 1, ranks))
        if self.dist:
            self.dist.barrier()

    def finish(self) -> None:
        write_alphas(self.out_dir / ALPHAS_FILE, self.model.alphas, self.space.primitives)
        plot_genotype(self.genotype(self.cfg.search.epochs - 1), self.out_dir / "genotype.png")


def write_alphas(path: Path, alphas: nn.ParameterDict | dict[str, torch.Tensor], primitives) -> None:
    """Final logits per cell type at full precision (Python floats round-trip float32 exactly)."""
    data = {
        "primitives": list(primitives),
        "alphas": {name: a.detach().double().cpu().tolist() for name, a in alphas.items()},
    }
    atomic_write_text(path, json.dumps(data, indent=1) + "\n")
