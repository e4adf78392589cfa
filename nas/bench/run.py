"""`nas bench`: speed and memory of the real search (or retraining) loop.

The search benchmark drives `SearchRunner.run_epoch` itself (data pipeline, architecture step, weight step:
the code path of `nas search`), capped at a few steps, and times its phases through the runner's `timer`
hook. The retraining benchmark drives `Trainer.train_epoch` with its loader wrapped to time the data part.

Several settings (`--compare key=a,b`) are built in one process and run in interleaved rounds (A B, B A,
A B, ...), so slow phases of a shared, noisy machine hit every setting alike and ratios stay meaningful.

Reported per setting, after a warm-up:

- images/s: images of the training split per second. One search step consumes one batch of each split
  (a forward+backward pass for alpha, one for the weights) and counts as `batch_size` images.
- ms per step, split into data / arch / weights (search) or data / step (train), plus "other" (the
  per-step bookkeeping around them). On a GPU the phases are timed with CUDA events, so timing adds no
  synchronisation.
- peak memory: GPU `torch.cuda.max_memory_allocated`; CPU peak resident set size (Linux: VmHWM, reset per
  round through /proc/self/clear_refs, with freed heap handed back by glibc's malloc_trim first;
  elsewhere `resource.getrusage`). Because the settings share one process, the peak of a setting is
  estimated as what a process running it alone would reach: memory before anything was built + what
  building and warming up this setting added + the largest rise during one of its rounds.
- projected: the wall time of the whole configured run at this speed (steps per epoch x epochs).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from nas.bench.report import expand_compare
from nas.core.errors import UserError
from nas.run.runtime import pick_device


class PhaseTimer:
    """Callable `name -> context manager` that accumulates seconds per phase.

    CPU: wall clock. CUDA: a pair of events around each phase, read only in `collect()` (one
    synchronisation per round instead of one per phase).
    """

    def __init__(self, device: torch.device):
        self.cuda = device.type == "cuda"
        self.totals: dict[str, float] = defaultdict(float)
        self._pending: list[tuple[str, Any, Any]] = []

    @contextlib.contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        if self.cuda:
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            yield
            end.record()
            self._pending.append((name, start, end))
        else:
            t0 = time.perf_counter()
            yield
            self.totals[name] += time.perf_counter() - t0

    def collect(self) -> dict[str, float]:
        """Seconds per phase since the last call (synchronises the GPU once), then reset."""
        if self._pending:
            torch.cuda.synchronize()
            for name, start, end in self._pending:
                self.totals[name] += start.elapsed_time(end) / 1000.0
        out, self.totals, self._pending = dict(self.totals), defaultdict(float), []
        return out


class MemoryProbe:
    """Current and peak memory in bytes: allocated GPU memory, or the process's resident set on a CPU."""

    def __init__(self, device: torch.device):
        self.device = device
        self.kind = "gpu_max_allocated" if device.type == "cuda" else "cpu_peak_rss"
        self._can_reset = device.type == "cuda" or self._reset_rss_peak()

    @staticmethod
    def _reset_rss_peak() -> bool:
        try:  # Linux >= 4.0: "5" resets the peak RSS (VmHWM) to the current RSS
            Path("/proc/self/clear_refs").write_text("5")
            return True
        except OSError:
            return False

    @staticmethod
    def _status_kb(field: str) -> int | None:
        try:
            for line in Path("/proc/self/status").read_text().splitlines():
                if line.startswith(field + ":"):
                    return int(line.split()[1])
        except OSError:
            pass
        return None

    @staticmethod
    def _trim_heap() -> None:
        """Give freed heap memory back to the OS (glibc), so the RSS counts live memory only and one
        setting's freed activations do not hide the next setting's rise."""
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(None).malloc_trim(0)

    def current(self) -> int:
        if self.device.type == "cuda":
            return torch.cuda.memory_allocated(self.device)
        self._trim_heap()
        kb = self._status_kb("VmRSS")
        return kb * 1024 if kb is not None else self.peak()

    def reset_peak(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
        elif self._can_reset:
            self._reset_rss_peak()

    def peak(self) -> int:
        if self.device.type == "cuda":
            return torch.cuda.max_memory_allocated(self.device)
        kb = self._status_kb("VmHWM") if self._can_reset else None
        if kb is None:  # no resettable peak: the process-lifetime maximum (an overestimate)
            import resource

            kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux, bytes on macOS
            kb //= 1024 if sys.platform == "darwin" else 1
        return kb * 1024


# --- what is measured ----------------------------------------------------------------------------------


class SearchCase:
    """A SearchRunner in a scratch directory; `run(n)` takes n search steps through `run_epoch`."""

    residual = "other"  # the part of a step outside the timed phases: bookkeeping between them

    def __init__(self, cfg, space, workdir: Path):
        from nas.search.runner import SearchRunner

        self.runner = SearchRunner(cfg, space, workdir)
        self.device = self.runner.device
        self.timer = PhaseTimer(self.device)
        self.runner.timer = self.timer
        self.batch_size = cfg.data.batch_size
        self.steps_per_epoch = len(self.runner.train_loader)
        search = cfg.search
        # a step with an architecture update: the steady state of the search
        self.epoch = min(search.arch_start_epoch, search.epochs - 1)
        self.epochs = search.epochs
        self.epochs_without_arch = min(search.arch_start_epoch, search.epochs)

    def run(self, steps: int) -> None:
        while steps > 0:
            n = min(steps, self.steps_per_epoch)
            self.runner.run_epoch(self.epoch, max_steps=n)
            steps -= n

    def projected_s(self, phase_ms: dict[str, float]) -> float:
        """Seconds for every step of the configured search (epochs before `arch_start_epoch` skip arch)."""
        step = sum(phase_ms.values()) / 1000.0
        arch = phase_ms.get("arch", 0.0) / 1000.0
        return self.steps_per_epoch * (self.epochs * step - self.epochs_without_arch * arch)


class _TimedLoader:
    """Wraps a loader: at most `limit` batches per pass, the time to produce each one counted as "data"."""

    def __init__(self, loader, timer: PhaseTimer, limit: int):
        self.loader, self.timer, self.limit = loader, timer, limit

    def __len__(self) -> int:
        return min(len(self.loader), self.limit)

    def __iter__(self) -> Iterator:
        batches = iter(self.loader)
        for _ in range(len(self)):
            with self.timer("data"):
                batch = next(batches)
            yield batch


class TrainCase:
    """A Trainer in a scratch directory; `run(n)` takes n training steps through `train_epoch`."""

    residual = "step"  # everything but data: forward, backward, optimiser (and EMA) step

    def __init__(self, cfg, genotype, space, workdir: Path):
        from nas.train.trainer import Trainer

        self.trainer = Trainer(cfg, genotype, space, workdir)
        self.device = self.trainer.device
        self.timer = PhaseTimer(self.device)
        self.loader = self.trainer.train_loader
        self.batch_size = cfg.data.batch_size
        self.steps_per_epoch = len(self.loader)
        self.epochs = cfg.train.epochs
        self.epoch = cfg.train.epochs // 2  # drop path ramps up linearly: its middle is the average cost

    def run(self, steps: int) -> None:
        while steps > 0:
            n = min(steps, self.steps_per_epoch)
            self.trainer.train_loader = _TimedLoader(self.loader, self.timer, n)
            self.trainer.train_epoch(self.epoch)
            steps -= n
        self.trainer.train_loader = self.loader

    def projected_s(self, phase_ms: dict[str, float]) -> float:
        """Seconds for every training step of the configured run (per-epoch evaluation not included)."""
        return self.steps_per_epoch * self.epochs * sum(phase_ms.values()) / 1000.0


# --- the benchmark -------------------------------------------------------------------------------------


def _measure(case, steps: int, probe: MemoryProbe) -> dict[str, Any]:
    """Run `steps` steps of one case; wall seconds, seconds per phase, and the rise of memory above start."""
    case.timer.collect()
    start_mem = probe.current()
    probe.reset_peak()
    t0, c0 = time.perf_counter(), time.process_time()
    case.run(steps)
    if case.device.type == "cuda":
        torch.cuda.synchronize(case.device)
    seconds = time.perf_counter() - t0
    return {
        "steps": steps,
        "seconds": seconds,
        "cpu_seconds": time.process_time() - c0,
        "phases": case.timer.collect(),
        "rise": probe.peak() - start_mem,
    }


def _build(make_case, cfg, warmup: int) -> dict[str, Any]:
    """Build one case and warm it up; remembers how much memory that added."""
    probe = MemoryProbe(pick_device(cfg.device))
    before = probe.current()
    case = make_case(cfg)
    case.run(warmup)
    case.timer.collect()
    return {"case": case, "probe": probe, "resident": probe.current() - before}


def _summarise(label: str, overrides: list[str], built: dict, rounds: list[dict], baseline: int) -> dict:
    case = built["case"]
    steps = sum(r["steps"] for r in rounds)
    seconds = sum(r["seconds"] for r in rounds)
    phase_ms = defaultdict(float)
    for r in rounds:
        for name, s in r["phases"].items():
            phase_ms[name] += 1000.0 * s / steps
    total_ms = 1000.0 * seconds / steps
    phase_ms[case.residual] = max(0.0, total_ms - sum(phase_ms.values()))
    per_round = [r["steps"] * case.batch_size / r["seconds"] for r in rounds]
    peak = baseline + built["resident"] + max(0, max(r["rise"] for r in rounds))
    return {
        "setting": label,
        "overrides": overrides,
        "device": str(case.device),
        "batch_size": case.batch_size,
        "steps": steps,
        "images_per_s": steps * case.batch_size / seconds,
        "images_per_s_rounds": per_round,
        "images_per_s_std": statistics.stdev(per_round) if len(per_round) > 1 else 0.0,
        "ms_per_step": total_ms,
        # CPU time of all this process's threads: robust to other load, but includes threads' spin-waits
        "cpu_ms_per_step": 1000.0 * sum(r["cpu_seconds"] for r in rounds) / steps,
        "phase_ms": dict(phase_ms),
        "peak_memory_mb": peak / 2**20,
        "memory": built["probe"].kind,
        "steps_per_epoch": case.steps_per_epoch,
        "epochs": case.epochs,
        "projected_s": case.projected_s(dict(phase_ms)),
    }


def run_bench(
    make_case, cfgs: list, variants: list[list[str]], *, steps: int, warmup: int, rounds: int
) -> list[dict[str, Any]]:
    """Build every setting, warm each up, then time them in interleaved rounds.

    Args:
        make_case: `cfg -> case` (a `SearchCase` or `TrainCase` factory).
        cfgs: one validated config per setting.
        variants: the overrides that distinguish each setting (its label).
        steps: timed steps per setting, spread over `rounds` rounds.
        warmup: untimed steps per setting first.

    Returns:
        One summary dict per setting, in the order of `cfgs`.
    """
    if steps < 1 or warmup < 0 or rounds < 1:
        raise UserError(f"need --steps >= 1, --warmup >= 0, --rounds >= 1 (got {steps}, {warmup}, {rounds})")
    rounds = min(rounds, steps)
    chunks = [steps // rounds + (1 if i < steps % rounds else 0) for i in range(rounds)]
    cpu_baseline = MemoryProbe(torch.device("cpu")).current()  # the process before any setting exists
    built = [_build(make_case, cfg, warmup) for cfg in cfgs]
    records: list[list[dict]] = [[] for _ in built]
    for i, n in enumerate(chunks):
        order = range(len(built)) if i % 2 == 0 else reversed(range(len(built)))
        for j in order:
            records[j].append(_measure(built[j]["case"], n, built[j]["probe"]))
    out = []
    for variant, b, recs in zip(variants, built, records):
        base = cpu_baseline if b["case"].device.type == "cpu" else 0
        out.append(_summarise(" ".join(variant) or "base", variant, b, recs, base))
    first = out[0]["images_per_s"]
    for r in out:
        r["speedup_vs_first"] = r["images_per_s"] / first
    return out


def bench(
    *,
    config: str | None,
    overrides: list[str],
    compare: list[str],
    steps: int,
    warmup: int,
    rounds: int,
    genotype=None,
) -> dict[str, Any]:
    """Everything `nas bench` does except printing: the search loop, or retraining `genotype` if given.

    Every setting's config is loaded and checked before anything is built; runs write only to a scratch
    directory that is removed afterwards.

    Returns:
        The report: what was run, on what machine, and one summary per setting (see `run_bench`).
    """
    from nas.arch.space import SPACES
    from nas.config import SearchRunConfig, TrainRunConfig, load_config
    from nas.run.runtime import provenance

    train = genotype is not None
    variants = expand_compare(compare) if compare else [[]]
    schema = TrainRunConfig if train else SearchRunConfig
    cfgs = [load_config(schema, config, [*overrides, *v, "progress=false"]) for v in variants]
    spaces = [SPACES.get(genotype.space if train else cfg.space.name) for cfg in cfgs]
    load_before = _load_average()
    with tempfile.TemporaryDirectory(prefix="nas-bench-") as tmp:
        made = iter(range(len(cfgs)))

        def make_case(cfg):
            i = next(made)
            workdir = Path(tmp) / str(i)
            if train:
                return TrainCase(cfg, genotype, spaces[i], workdir)
            return SearchCase(cfg, spaces[i], workdir)

        results = run_bench(make_case, cfgs, variants, steps=steps, warmup=warmup, rounds=rounds)
    machine = provenance() | {
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "load_average": [load_before, _load_average()],  # 1-minute load before and after: was it busy?
    }
    return {
        "kind": "train" if train else "search",
        "config": config,
        "overrides": overrides,
        "compare": compare,
        "genotype": genotype.to_dict() if train else None,
        "steps": steps,
        "warmup": warmup,
        "rounds": rounds,
        "machine": machine,
        "results": results,
    }


def _load_average() -> float | None:
    return os.getloadavg()[0] if hasattr(os, "getloadavg") else None
