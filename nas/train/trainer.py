"""Trainer: retrains a genotype's discrete network from scratch (DARTS protocol by default: SGD with
cosine learning rate, auxiliary head weighted 0.4, drop path ramped linearly, cutout) and reports test
accuracy, parameters and FLOPs in `metrics.json`."""

from __future__ import annotations

import copy
import dataclasses
import functools
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
from tqdm import tqdm

from nas.atomic import atomic_write_text
from nas.checkpoint import CHECKPOINT, load_checkpoint, restoring, save_checkpoint, stop_if_diverged
from nas.config import TrainConfig, TrainRunConfig, to_yaml
from nas.data import train_loaders
from nas.distributed import gather_rank_states, lr_scale, own_rank_state
from nas.genotype import Genotype, save_genotype
from nas.memory import NETWORK_SIZE, check_network, parameter_budget
from nas.profile import model_summary
from nas.rng import Stream, derive_seed
from nas.rundir import CONFIG_FILE, GENOTYPE_FILE, RESULT_FILE
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
from nas.space import SearchSpace


def build_lr_scheduler(optimizer: torch.optim.Optimizer, t: TrainConfig, scale: float = 1.0) -> Scheduler:
    """The epoch-wise learning rate of retraining (timm schedulers, stepped with the epoch index):
    `cosine` anneals from `lr` to `lr_min` (DARTS' CIFAR protocol); `step` multiplies `lr` by `lr_decay_rate`
    every `lr_decay_epochs` epochs (DARTS' ImageNet protocol: x 0.97 every epoch, StepLR in
    `train_imagenet.py`). `warmup_epochs` ramp linearly from lr/100 first; both count epochs after it."""
    warmup = {"warmup_t": t.warmup_epochs, "warmup_lr_init": t.lr * scale * 0.01, "warmup_prefix": True}
    if t.lr_schedule == "step":
        return StepLRScheduler(optimizer, decay_t=t.lr_decay_epochs, decay_rate=t.lr_decay_rate, **warmup)
    return CosineLRScheduler(optimizer, t_initial=t.epochs, lr_min=t.lr_min * scale, **warmup)


class Trainer:
    def __init__(self, cfg: TrainRunConfig, genotype: Genotype, space: SearchSpace, out_dir: str | Path,
                 resume: bool = False, dist=None):  # fmt: skip
        space.validate(genotype)
        self.cfg, self.genotype, self.out_dir, self.dist = cfg, genotype, Path(out_dir), dist
        self.rank = dist.rank if dist else 0
        self.world_size = dist.world_size if dist else 1
        self.device = dist.device if dist else pick_device(cfg.device)
        configure_backends(self.device, cfg.deterministic)
        seed_everything(cfg.seed)
        self.train_loader, self.test_loader, self.info = train_loaders(
            cfg.data, device=self.device, seed=cfg.seed, rank=self.rank, world_size=self.world_size,
            channels_last=cfg.channels_last,
        )  # fmt: skip
        with parameter_budget(self.device, 4 * (3 + cfg.train.ema), "the network", NETWORK_SIZE):
            model = space.build_network(
                genotype, cfg.model, self.info.num_classes, self.info.in_channels, self.info.image_size
            )
        check_network(model, cfg, genotype, self.info, self.device)  # before it moves there
        self.summary = model_summary(
            model, (self.info.in_channels, self.info.image_size, self.info.image_size)
        )
        self.model = model.to(self.device)
        if cfg.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
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
        self.autocast = functools.partial(autocast, self.device, cfg.amp)
        self.start_epoch = 0
        if resume:
            self._restore()
        self.logger = RunLogger(
            self.out_dir, enabled=self.rank == 0, resume_epoch=self.start_epoch if resume else None
        )
        if not resume and self.rank == 0:
            atomic_write_text(self.out_dir / CONFIG_FILE, to_yaml(cfg, meta=provenance()))
            save_genotype(self.out_dir / GENOTYPE_FILE, genotype)

    def state_dict(self, next_epoch: int, ranks: list[dict] | None = None) -> dict[str, Any]:
        """Everything a resume needs; `ranks`: every rank's loader and RNG states (`gather_rank_states`)."""
        return {
            "epoch": next_epoch,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "ema": self.ema.state_dict() if self.ema else None,
            "data": {"train": self.train_loader.state_dict()},
            "data_info": dataclasses.asdict(self.info),  # what `nas export` writes into its metadata
            "rng": rng_state(),
            "ranks": ranks,
        }

    def _restore(self) -> None:
        path = self.out_dir / CHECKPOINT
        state = load_checkpoint(path, map_location=self.device)
        with restoring(path):
            self.model.load_state_dict(state["model"])
            self.optimizer.load_state_dict(state["optimizer"])
            self.scheduler.load_state_dict(state["scheduler"])
            if self.ema is not None and state["ema"] is not None:
                self.ema.load_state_dict(state["ema"])
            own = own_rank_state(state, self.rank, self.world_size)
            self.train_loader.load_state_dict(own["data"]["train"])
            set_rng_state(own["rng"])
            self.start_epoch = int(state["epoch"])

    def run(self) -> dict[str, Any]:
        record: dict[str, Any] = {}
        try:
            for epoch in range(self.start_epoch, self.cfg.train.epochs):
                record = self.train_epoch(epoch)
                record.update(self.evaluate(self.model))
                if self.ema is not None:
                    record.update({f"ema_{k}": v for k, v in self.evaluate(self.ema.module).items()})
                self.end_epoch(epoch, record)
            result = self.finish(record)
        finally:
            self.logger.close()
        return result

    def train_epoch(self, epoch: int) -> dict[str, Any]:
        cfg = self.cfg
        self.scheduler.step(epoch)
        self.model.drop_path_prob = cfg.model.drop_path_prob * epoch / cfg.train.epochs  # DARTS' linear ramp
        self.model.train()
        sums = torch.zeros(3, device=self.device, dtype=torch.float64)  # loss * n, correct, n
        start = time.perf_counter()
        bar = tqdm(
            self.train_loader,
            desc=f"epoch {epoch}",
            disable=not (cfg.progress and self.rank == 0),
            leave=False,
        )
        for x, y in bar:
            with self.autocast():
                logits, aux = self.forward_model(x)
                loss = F.cross_entropy(logits, y, label_smoothing=cfg.train.label_smoothing)
                if aux is not None:
                    loss = loss + cfg.model.auxiliary_weight * F.cross_entropy(
                        aux, y, label_smoothing=cfg.train.label_smoothing
                    )
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if cfg.train.grad_clip > 0:
                nn.utils.clip_grad_norm_(self.model.parameters(), cfg.train.grad_clip)
            self.optimizer.step()
            if self.ema is not None:
                self.ema.update(self.model)
            sums += torch.stack(
                [
                    loss.detach().double() * len(y),
                    (logits.argmax(1) == y).sum().double(),
                    sums.new_tensor(len(y)),
                ]
            )
        if self.dist:
            self.dist.all_reduce_sum(sums)
        loss_sum, correct, n = sums.tolist()
        return {
            "epoch": epoch,
            "lr": self.optimizer.param_groups[0]["lr"],
            "drop_path_prob": self.model.drop_path_prob,
            "train_loss": loss_sum / n,
            "train_acc": 100.0 * correct / n,
            "epoch_time": time.perf_counter() - start,
        }

    @torch.no_grad()
    def evaluate(self, model: nn.Module) -> dict[str, float]:
        if self.dist:  # BatchNorm running statistics differ per rank: evaluate (and save) rank 0's
            self.dist.broadcast_module(model, buffers_only=True)
        model.eval()
        sums = torch.zeros(4, device=self.device, dtype=torch.float64)  # loss * n, top1, top5, n
        for x, y in self.test_loader:
            with self.autocast():
                logits, _ = model(x)
            logits = logits.float()
            top5 = logits.topk(min(5, logits.shape[1]), dim=1).indices
            sums += torch.stack([
                F.cross_entropy(logits, y, reduction="sum").double(),
                (top5[:, 0] == y).sum().double(),
                (top5 == y[:, None]).any(1).sum().double(),
                sums.new_tensor(len(y)),
            ])  # fmt: skip
        if self.dist:
            self.dist.all_reduce_sum(sums)
        loss_sum, top1, top5, n = sums.tolist()
        return {"test_loss": loss_sum / n, "test_acc": 100.0 * top1 / n, "test_acc_top5": 100.0 * top5 / n}

    def end_epoch(self, epoch: int, record: dict[str, Any]) -> None:
        stop_if_diverged(record, ("train_loss", "test_loss"), self.out_dir / CHECKPOINT)
        ranks = gather_rank_states(self.dist, {"train": self.train_loader.state_dict()})
        if self.dist:
            self.dist.check_identical(list(self.model.parameters()), "weights")
        if self.rank == 0:
            self.logger.epoch(record)
            self.logger.scalars({k: v for k, v in record.items() if k != "epoch"}, epoch, prefix="train/")
            self.logger.console(
                f"epoch {epoch}: lr {record['lr']:.4g} train_acc {record['train_acc']:.2f} "
                f"test_acc {record['test_acc']:.2f} ({record['epoch_time']:.1f}s)"
            )
            save_checkpoint(self.out_dir / CHECKPOINT, self.state_dict(epoch + 1, ranks))
        if self.dist:
            self.dist.barrier()

    def finish(self, record: dict[str, Any]) -> dict[str, Any]:
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
