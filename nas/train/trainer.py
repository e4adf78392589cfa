"""Trainer: retrains a genotype's discrete network from scratch (DARTS protocol by default: SGD with
cosine learning rate, auxiliary head weighted 0.4, drop path ramped linearly, cutout) and reports test
accuracy, parameters and FLOPs in `metrics.json`."""

from __future__ import annotations

import copy
import dataclasses
import json
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F
from timm.scheduler import CosineLRScheduler, StepLRScheduler
from timm.scheduler.scheduler import Scheduler
from timm.utils import ModelEmaV3

from nas.arch.genotype import Genotype, save_genotype
from nas.arch.space import SearchSpace, model_options
from nas.config import TrainConfig, TrainRunConfig
from nas.core.atomic import atomic_write_text
from nas.core.rng import Stream, derive_seed
from nas.core.rundir import GENOTYPE_FILE, RESULT_FILE
from nas.cost.profile import model_summary
from nas.data.loaders import train_loaders
from nas.run.distributed import lr_scale
from nas.run.epoch import EpochRun, Tally, optimizer_step
from nas.run.memory import NETWORK_SIZE, build_checked, check_network


def build_lr_scheduler(optimizer: torch.optim.Optimizer, t: TrainConfig, scale: float = 1.0) -> Scheduler:
    """The epoch-wise learning rate of retraining (timm schedulers, stepped with the epoch index):
    `cosine` anneals from `lr` to `lr_min` (DARTS' CIFAR protocol); `step` multiplies `lr` by `lr_decay_rate`
    every `lr_decay_epochs` epochs (DARTS' ImageNet protocol: x 0.97 every epoch, StepLR in
    `train_imagenet.py`). `warmup_epochs` ramp linearly from lr/100 first; both count epochs after it."""
    warmup = {"warmup_t": t.warmup_epochs, "warmup_lr_init": t.lr * scale * 0.01, "warmup_prefix": True}
    if t.lr_schedule == "step":
        return StepLRScheduler(optimizer, decay_t=t.lr_decay_epochs, decay_rate=t.lr_decay_rate, **warmup)
    return CosineLRScheduler(optimizer, t_initial=t.epochs, lr_min=t.lr_min * scale, **warmup)


class Trainer(EpochRun):
    """Builds the genotype's network and everything its retraining needs from a config, and runs (or
    resumes) it (`nas.run.epoch.EpochRun`).

    Args:
        dist: optional `nas.run.distributed` context (rank, world size, DDP); None = one process.
    """

    kind = "train"
    loss_keys = ("train_loss", "test_loss")

    def __init__(self, cfg: TrainRunConfig, genotype: Genotype, space: SearchSpace, out_dir: str | Path,
                 resume: bool = False, dist=None):  # fmt: skip
        space.validate(genotype)
        self.genotype, self.space = genotype, space
        # sizes left null are the space's standard network's; config.yaml records the values used
        cfg = dataclasses.replace(cfg, model=model_options(space, cfg.model))
        super().__init__(cfg, out_dir, resume, dist)

    @property
    def epochs(self) -> int:
        return self.cfg.train.epochs

    def build(self) -> None:
        cfg, dist = self.cfg, self.dist
        self.train_loader, self.test_loader, self.info = train_loaders(
            cfg.data, device=self.device, seed=cfg.seed, rank=self.rank, world_size=self.world_size,
            channels_last=cfg.channels_last,
        )  # fmt: skip
        model = build_checked(  # refused before any of its memory exists
            lambda: self.space.build_network(
                self.genotype, cfg.model, self.info.num_classes, self.info.in_channels, self.info.image_size
            ),
            lambda net: check_network(net, cfg, self.genotype, self.info, self.device),
            self.device, 4 * (3 + cfg.train.ema), "the network", NETWORK_SIZE,
        )  # fmt: skip
        self.summary = model_summary(
            model, (self.info.in_channels, self.info.image_size, self.info.image_size)
        )
        self.model = self.place(model)
        self.forward_model = dist.wrap(self.model, sync_bn=cfg.train.sync_bn) if dist else self.model
        if dist:  # drop-path masks come from the global RNG: a different stream on each rank
            torch.manual_seed(derive_seed(cfg.seed, Stream.INIT, self.rank))
        t = cfg.train
        scale = lr_scale(cfg.lr_scaling, self.world_size)
        self.optimizer = torch.optim.SGD(
            self.model.parameters(),
            lr=t.lr * scale,
            momentum=t.momentum,
            nesterov=t.nesterov,
            weight_decay=t.weight_decay,
        )
        self.scheduler = build_lr_scheduler(self.optimizer, t, scale)
        self.ema = ModelEmaV3(self.model, decay=t.ema_decay) if t.ema else None

    def write_start(self) -> None:
        save_genotype(self.out_dir / GENOTYPE_FILE, self.genotype)

    def checkpointed(self) -> dict[str, Any]:
        return {"optimizer": self.optimizer, "ema": self.ema}  # the lr schedule: rebuilt from the config

    def loaders(self) -> dict[str, Any]:
        return {"train": self.train_loader}

    def extra_state(self) -> dict[str, Any]:
        return {"data_info": dataclasses.asdict(self.info)}  # what `nas export` writes into its metadata

    def run_epoch(self, epoch: int) -> dict[str, Any]:
        """A training epoch, then the test set evaluated (with the EMA weights too, if kept)."""
        record = self.train_epoch(epoch)
        record.update(self.evaluate(self.model))
        if self.ema is not None:
            record.update({f"ema_{k}": v for k, v in self.evaluate(self.ema.module).items()})
        return record

    def train_epoch(self, epoch: int) -> dict[str, Any]:
        cfg = self.cfg
        self.scheduler.step(epoch)
        self.model.drop_path_prob = cfg.model.drop_path_prob * epoch / cfg.train.epochs  # DARTS' linear ramp
        self.model.train()
        tally = Tally(self.device, "loss", "correct", "n")
        start = time.perf_counter()
        bar = self.progress(epoch, len(self.train_loader))
        for x, y in self.train_loader:
            with self.autocast():
                logits, aux = self.forward_model(x)
                loss = F.cross_entropy(logits, y, label_smoothing=cfg.train.label_smoothing)
                if aux is not None:
                    loss = loss + cfg.model.auxiliary_weight * F.cross_entropy(
                        aux, y, label_smoothing=cfg.train.label_smoothing
                    )
            optimizer_step(loss, self.optimizer, self.model.parameters(), cfg.train.grad_clip)  # DDP averages
            if self.ema is not None:
                self.ema.update(self.model)
            tally.add(loss=loss.detach().double() * len(y), correct=(logits.argmax(1) == y).sum(), n=len(y))
            bar.update(1)
        bar.close()
        sums = tally.totals(self.dist)
        return {
            "epoch": epoch,
            "lr": self.optimizer.param_groups[0]["lr"],
            "drop_path_prob": self.model.drop_path_prob,
            "train_loss": sums["loss"] / sums["n"],
            "train_acc": 100.0 * sums["correct"] / sums["n"],
            "epoch_time": time.perf_counter() - start,
        }

    @torch.no_grad()
    def evaluate(self, model: nn.Module) -> dict[str, float]:
        if self.dist:  # BatchNorm running statistics differ per rank: evaluate (and save) rank 0's
            self.dist.broadcast_module(model, buffers_only=True)
        model.eval()
        tally = Tally(self.device, "loss", "top1", "top5", "n")
        for x, y in self.test_loader:
            with self.autocast():
                logits, _ = model(x)
            logits = logits.float()
            top5 = logits.topk(min(5, logits.shape[1]), dim=1).indices
            tally.add(loss=F.cross_entropy(logits, y, reduction="sum"), top1=(top5[:, 0] == y).sum(),
                      top5=(top5 == y[:, None]).any(1).sum(), n=len(y))  # fmt: skip
        sums = tally.totals(self.dist)
        n = sums["n"]
        return {"test_loss": sums["loss"] / n, "test_acc": 100.0 * sums["top1"] / n,
                "test_acc_top5": 100.0 * sums["top5"] / n}  # fmt: skip

    def epoch_line(self, record: dict[str, Any]) -> str:
        return (
            f"epoch {record['epoch']}: lr {record['lr']:.4g} train_acc {record['train_acc']:.2f} "
            f"test_acc {record['test_acc']:.2f} ({record['epoch_time']:.1f}s)"
        )

    def finish(self, record: dict[str, Any]) -> dict[str, Any]:
        """The final numbers, written to metrics.json by rank 0 and returned on every rank."""
        if not record:  # resumed a finished run: report it again
            record = self.evaluate(self.model)
        result = {
            "test_acc": record["test_acc"],
            "test_acc_top5": record["test_acc_top5"],
            "test_loss": record["test_loss"],
            **({"ema_test_acc": record["ema_test_acc"]} if "ema_test_acc" in record else {}),
            "epochs": self.cfg.train.epochs,
            "dataset": self.info.name,
            **self.summary,
            "genotype": copy.deepcopy(self.genotype.to_dict()["cells"]),
        }
        if self.rank == 0:
            atomic_write_text(self.out_dir / RESULT_FILE, json.dumps(result, indent=2) + "\n")
        return result
