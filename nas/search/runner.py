"""SearchRunner: the bilevel search loop and what a search derives and writes each epoch.

Per step: an architecture step on a batch of the alpha split (alpha only), then a weight step on a batch
of the weight split (w only). Per epoch: tau from the schedule, metrics, TensorBoard, the derived
genotype. Set-up, the checkpoint and its resume, and the end of an epoch are the run skeleton's
(`nas.run.epoch.EpochRun`): a run killed at any point resumes from its last checkpoint and ends bitwise equal
(on CPU) to an uninterrupted run.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
from timm.scheduler import CosineLRScheduler

from nas.arch import diagnostics
from nas.arch.genotype import save_genotype
from nas.arch.ground_truth import ground_truth_of
from nas.arch.plot import cell_figure, plot_genotype
from nas.arch.space import SearchSpace
from nas.config import SearchRunConfig
from nas.core.atomic import atomic_write_text
from nas.core.rng import sampler_seed
from nas.core.rundir import ALPHAS_FILE, COST_TABLE_FILE, GENOTYPE_FILE
from nas.cost.expected import cost_term
from nas.data.loaders import search_loaders
from nas.run.distributed import lr_scale
from nas.run.epoch import EpochRun, Tally, optimizer_step
from nas.run.memory import SUPERNET_SIZE, build_checked, check_supernet
from nas.sampling import build_sampler
from nas.sampling.schedules import LearnedTemperature, tau_at
from nas.search.architect import Architect, combine
from nas.search.guard import CollapseGuard
from nas.search.provenance import derive_genotype
from nas.search.regularizers import arch_penalty, ramp


class SearchRunner(EpochRun):
    """Builds everything a search needs from a config and runs (or resumes) it (`nas.run.epoch.EpochRun`).

    Args:
        dist: optional `nas.run.distributed` context (rank, world size, gradient all-reduce); None = one process.
    """

    kind = "search"
    loss_keys = ("train_loss", "val_loss")
    # `nas bench` sets this to a callable phase name -> context manager that times the phases of a step
    # ("data", "arch", "weights"); None (the default) costs nothing.
    timer: Callable[[str], contextlib.AbstractContextManager] | None = None

    def __init__(
        self, cfg: SearchRunConfig, space: SearchSpace, out_dir: str | Path, resume: bool = False, dist=None
    ):
        self.space = space
        self.sampler = build_sampler(cfg.sampler, space)
        self.truth = ground_truth_of(space, cfg.ground_truth)  # None where the space has none
        self.epoch = 0  # the epoch in progress (the regularisers' ramp reads it)
        self.tau = cfg.tau.start
        guard = cfg.search.guard
        self.guard = CollapseGuard(guard, space) if guard.max_ops is not None else None
        self.stopped_at: int | None = None  # the epoch at which the guard ended the search
        self.guard_armed = False  # restored from a checkpoint: the guard had armed before it
        super().__init__(cfg, out_dir, resume, dist)
        if self.guard is not None and self.guard_armed:  # armed: the checkpoint's alpha kept the bound
            self.guard.keep(self.model.arch_parameters(), self.start_epoch - 1)

    @property
    def epochs(self) -> int:
        return self.cfg.search.epochs

    def build(self) -> None:
        cfg, dist = self.cfg, self.dist
        self.train_loader, self.val_loader, self.info = search_loaders(
            cfg.data, device=self.device, seed=cfg.seed, rank=self.rank, world_size=self.world_size,
            channels_last=cfg.channels_last,
        )  # fmt: skip
        model = build_checked(  # refused before any of its memory exists; 4 x 3: weights, grads, momentum
            lambda: self.space.build_supernet(cfg.space, self.info.num_classes, self.info.in_channels),
            lambda net: check_supernet(net, cfg, self.info, self.device, self.sampler),
            self.device, 4 * 3, "the supernet", SUPERNET_SIZE,
        )  # fmt: skip
        self.model = self.place(model)
        if dist:  # identical by seeding already; rank 0's copy makes it so by construction
            dist.broadcast_module(self.model)
        self.criterion = nn.CrossEntropyLoss()
        # tau.schedule=learned: tau is an architecture parameter (nas.sampling.schedules.LearnedTemperature)
        learned = cfg.tau.schedule == "learned"
        self.temperature = LearnedTemperature(cfg.tau.start, cfg.tau.end).to(self.device) if learned else None
        self._build_optimizers()
        self.generator = torch.Generator().manual_seed(sampler_seed(cfg.seed))
        # search.cost (nas.cost): the cost penalty and logged costs; None when it asks for nothing
        self.cost = cost_term(cfg.search.cost, self.space, self.info, cfg.space, self.model)
        penalties = [self.cost.penalty if self.cost is not None and self.cost.weight > 0 else None]
        arch = cfg.search.arch
        penalties.append(arch_penalty(arch.beta_decay, arch.entropy, self.sampler, self.reg_scale))
        self.architect = Architect(
            self.model, self.a_opt, self.criterion, self.sampler, self.generator, self.autocast,
            bilevel=cfg.search.bilevel, grad_hook=dist.all_reduce_grads if dist else None,
            xi=cfg.search.unrolled_xi, penalty=combine(penalties), temperature=self.temperature,
            weight_sample=cfg.search.weight_sample,
        )  # fmt: skip

    def _build_optimizers(self) -> None:
        w, a = self.cfg.search.weights, self.cfg.search.arch
        scale = lr_scale(self.cfg.lr_scaling, self.world_size)  # weights only: Adam's alpha lr is not scaled
        fused = {"foreach": True} if self.device.type == "cuda" else {}
        self.w_opt = torch.optim.SGD(
            self.model.weight_parameters(), lr=w.lr * scale, momentum=w.momentum, nesterov=w.nesterov,
            weight_decay=w.weight_decay, **fused,
        )  # fmt: skip
        groups = [{"params": self.model.arch_parameters()}]
        if self.temperature is not None:  # no weight decay on log tau (it would pull tau towards 1)
            groups.append({"params": [self.temperature.theta], "weight_decay": 0.0})
        self.a_opt = torch.optim.Adam(groups, lr=a.lr, betas=tuple(a.betas), weight_decay=a.weight_decay)
        # timm's cosine schedule is a pure function of the epoch: exact on resume
        self.w_sched = CosineLRScheduler(
            self.w_opt, t_initial=self.cfg.search.epochs, lr_min=w.lr_min * scale, warmup_t=w.warmup_epochs,
            warmup_lr_init=w.lr_min * scale, warmup_prefix=True,
        )  # fmt: skip

    def write_start(self) -> None:
        if self.cost is not None:  # what `nas derive --max-...` reads
            self.cost.table.save(self.out_dir / COST_TABLE_FILE)

    # --- checkpoint ---------------------------------------------------------------------------------

    def checkpointed(self) -> dict[str, Any]:
        return {"w_opt": self.w_opt, "a_opt": self.a_opt}  # w_sched: rebuilt from the config (see EpochRun)

    def loaders(self) -> dict[str, Any]:
        return {"train": self.train_loader, "val": self.val_loader}

    def extra_state(self) -> dict[str, Any]:
        return {
            "tau": self.tau,
            "learned_tau": None if self.temperature is None else self.temperature.theta.detach().cpu(),
            "sampler_generator": self.generator.get_state(),
            "sampler": self.sampler.state_dict(),
            "world_size": self.world_size,
            "stopped_at": self.stopped_at,
            "guard_armed": self.guard is not None and self.guard.armed,
        }

    def load_extra_state(self, state: dict[str, Any]) -> None:
        self.generator.set_state(state["sampler_generator"].cpu())
        self.sampler.load_state_dict(state.get("sampler", {}))  # absent before samplers had state
        self.tau = float(state["tau"])
        self.stopped_at = state.get("stopped_at")  # absent before the collapse guard
        self.guard_armed = bool(state.get("guard_armed", False))
        if self.temperature is not None:
            with torch.no_grad():
                self.temperature.theta.copy_(state["learned_tau"])

    def stopped(self) -> bool:
        return self.stopped_at is not None

    def end_epoch(self, epoch: int, record: dict[str, Any]) -> None:
        """The collapse guard (`nas.search.guard`) after an epoch that trained alpha, then the skeleton's end
        of epoch: a tripped guard rolls alpha back before the genotype, metrics and checkpoint are written."""
        if self.guard is not None and epoch >= self.cfg.search.arch_start_epoch:
            genotype = self.genotype(epoch)
            count = self.guard.check(genotype, self.model.arch_parameters(), epoch)
            if count is not None:
                self.stopped_at = epoch
                record.update(guard_stop=count, guard_genotype=diagnostics.genotype_string(genotype))
                if self.rank == 0:
                    self.logger.console(
                        f"collapse guard: the derived {self.guard.cell} cell holds {count} of "
                        f"{', '.join(sorted(self.guard.ops))} (> {self.guard.max_ops}); search stopped at epoch "
                        f"{epoch}, keeping the architecture of epoch {self.guard.kept_epoch}"
                    )
        super().end_epoch(epoch, record)

    # --- the loop -----------------------------------------------------------------------------------

    def reg_scale(self) -> float:
        """The architecture regularisers' ramp at the current epoch (nas.search.regularizers.ramp)."""
        return ramp(self.epoch, self.cfg.search.arch_start_epoch, self.cfg.search.epochs)

    def tau_for(self, epoch: int, step: int = 0) -> float:
        if self.temperature is not None:  # its current value (the architecture step uses the tensor)
            return float(self.temperature.value().detach())
        return tau_at(self.cfg.tau, epoch, self.cfg.search.epochs, step, len(self.train_loader))

    def _phase(self, name: str) -> contextlib.AbstractContextManager:
        return self.timer(name) if self.timer is not None else contextlib.nullcontext()

    def run_epoch(self, epoch: int, max_steps: int | None = None) -> dict[str, Any]:
        """One epoch of search steps (only the first `max_steps` of them if given: `nas bench`)."""
        self.w_sched.step(epoch)
        self.epoch = epoch
        self.model.train()
        lr = self.w_opt.param_groups[0]["lr"]
        update_alpha = epoch >= self.cfg.search.arch_start_epoch
        tally = Tally(
            self.device, "train_loss", "train_correct", "train_n", "val_loss", "val_correct", "val_n"
        )
        steps = len(self.train_loader)
        steps = steps if max_steps is None else min(steps, max_steps)
        bar = self.progress(epoch, steps)
        start = time.perf_counter()
        batches = zip(self.train_loader, self.val_loader)
        for step in range(steps):
            with self._phase("data"):
                train, val = next(batches)
            self.tau = self.tau_for(epoch, step)
            if update_alpha:
                with self._phase("arch"):
                    out = self.architect.step(val, train, self.tau, lr, self.w_opt)
                n = len(val[1])
                tally.add(val_loss=out["loss"].double() * n, val_correct=out["correct"], val_n=n)
            with self._phase("weights"):
                out = self.weight_step(*train)
            n = len(train[1])
            tally.add(train_loss=out["loss"].double() * n, train_correct=out["correct"], train_n=n)
            bar.update(1)
            if not bar.disable and (step + 1) % self.cfg.progress_every == 0:  # waits for the GPU
                loss = tally.peek("train_loss") / tally.peek("train_n")
                bar.set_postfix(loss=f"{loss:.3f}", tau=f"{self.tau:.3g}")
        bar.close()
        sums = tally.totals(self.dist)
        seen = sums["train_n"], sums["val_n"]
        return {
            "epoch": epoch,
            "tau": self.tau,
            "lr": lr,
            "train_loss": sums["train_loss"] / seen[0],
            "train_acc": 100.0 * sums["train_correct"] / seen[0],
            "val_loss": sums["val_loss"] / seen[1] if seen[1] else None,
            "val_acc": 100.0 * sums["val_correct"] / seen[1] if seen[1] else None,
            "epoch_time": time.perf_counter() - start,
            "images_per_s": (seen[0] + seen[1]) / (time.perf_counter() - start),
        }

    def weight_step(self, x: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
        """One SGD step on the weights, on the Architect's sample for it (`sample_for_weights`)."""
        samples = self.architect.sample_for_weights(self.tau)
        with self.autocast():
            logits = self.model(x, samples)
            loss = self.criterion(logits, y)
        params = self.w_opt.param_groups[0]["params"]  # weight_parameters(), without rebuilding it per step
        # the supernet runs a different sub-network each step, so no DDP wrapper: its gradients are averaged here
        optimizer_step(loss, self.w_opt, params, self.cfg.search.weights.grad_clip, self.dist)
        return {"loss": loss.detach(), "correct": (logits.detach().argmax(1) == y).sum()}

    # --- per-epoch outputs --------------------------------------------------------------------------

    def derive_logits(self) -> dict[str, torch.Tensor]:
        """Per cell type, the logits whose softmax is the sampler's op probabilities (derive reads them)."""
        return {k: self.sampler.derive_logits(a.detach()) for k, a in self.model.alphas.items()}

    def edge_logits(self) -> dict[str, torch.Tensor]:
        """Per cell type, the edge-normalisation logits derive reads too (empty without edge normalisation)."""
        return {k: b.detach() for k, b in self.model.edge_logits().items()}

    def genotype(self, epoch: int):
        """The derived genotype with its provenance (`nas.search.provenance`)."""
        return derive_genotype(
            self.cfg, self.space, self.derive_logits(), self.edge_logits(), epoch, self.tau
        )

    def finite(self) -> bool:
        return all(bool(torch.isfinite(a).all()) for a in self.model.arch_parameters())

    def replicated(self) -> tuple[list[torch.Tensor], str]:
        learned = [] if self.temperature is None else [self.temperature.theta]
        return [*self.model.arch_parameters(), *learned], "alphas"

    def write_epoch(self, epoch: int, record: dict[str, Any]) -> None:
        """genotype.json, the epoch's diagnostics (entropy, cost) in `record`, alphas and cells in TensorBoard."""
        genotype = self.genotype(epoch)
        save_genotype(self.out_dir / GENOTYPE_FILE, genotype)
        logits = self.derive_logits()
        record.update(diagnostics.epoch_diagnostics(logits, genotype, self.space))
        if self.truth is not None:  # how good the derived cell really is (gt_<dataset>, gt_<dataset>_pct)
            record.update(self.truth.record(genotype))
        if self.cost is not None:  # expected cost under alpha and the derived cell's actual cost
            record.update(self.cost.epoch_record(dict(self.model.alphas), genotype))
        diagnostics.log_alphas(self.logger, logits, self.space.primitives, epoch)
        self.logger.text("genotype", diagnostics.genotype_text(genotype), epoch)
        self.logger.figure("genotype/cells", cell_figure(genotype), epoch)

    def epoch_line(self, record: dict[str, Any]) -> str:
        val_acc = record["val_acc"] if record["val_acc"] is None else round(record["val_acc"], 2)
        return (
            f"epoch {record['epoch']}: tau {record['tau']:.3g} lr {record['lr']:.4g} "
            f"train_acc {record['train_acc']:.2f} val_acc {val_acc} ({record['epoch_time']:.1f}s)"
        )

    def finish(self, record: dict[str, Any]) -> dict[str, Any]:
        """alphas.json and genotype.png (rank 0); returns the last epoch's metrics (empty if none was left)."""
        if self.rank == 0:
            write_alphas(
                self.out_dir / ALPHAS_FILE, self.model.alphas, self.space.primitives, self.edge_logits()
            )
            last = self.cfg.search.epochs - 1 if self.stopped_at is None else self.stopped_at
            plot_genotype(self.genotype(last), self.out_dir / "genotype.png")
        return record


def write_alphas(
    path: Path, alphas: nn.ParameterDict | dict[str, torch.Tensor], primitives, betas: dict | None = None
) -> None:
    """Final logits per cell type at full precision (Python floats round-trip float32 exactly); with edge
    normalisation, its logits per cell type too (`betas`)."""
    data = {
        "primitives": list(primitives),
        "alphas": {name: a.detach().double().cpu().tolist() for name, a in alphas.items()},
    }
    if betas:
        data["betas"] = {name: b.detach().double().cpu().tolist() for name, b in betas.items()}
    atomic_write_text(path, json.dumps(data, indent=1) + "\n")
