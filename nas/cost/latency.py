"""Measured latency of ops and networks on one device (`nas cost profile`).

Each measurement runs the module in eval mode under `torch.inference_mode` on a batch of zeros: `warmup`
untimed calls, then `repeats` timed calls (synchronising the GPU around each), and reports the median in
milliseconds per batch. Op timings are cached in a JSON file keyed by device name, torch version, thread
count, batch, dtype and the op's (space, name, input, output), so a second profile of the same shapes
measures nothing; a different device or torch version never reads another's numbers.
"""

from __future__ import annotations

import json
import math
import statistics
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from nas.core.atomic import atomic_write_text, read_json_object
from nas.core.errors import UserError, warn


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return f"cuda:{torch.cuda.get_device_name(device)}"
    import platform

    return f"cpu:{platform.processor() or platform.machine()}"


def _read_cache(path: Path) -> dict[str, float]:
    """The timings in `path`; a file that is not one (corrupt, random bytes, another program's) is ignored
    with a warning and overwritten by the next measurement."""
    try:
        cache = read_json_object(path, "latency cache")
    except UserError as exc:
        warn(f"ignoring {exc}")
        return {}
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and v >= 0
               for v in cache.values()):  # fmt: skip
        warn(f"ignoring latency cache {path}: its values are not timings")
        return {}
    return cache


class LatencyTimer:
    """Times modules on `device` at batch `batch`; `cache`: the JSON file of earlier op timings (or None)."""

    def __init__(
        self, device: str, batch: int, warmup: int = 5, repeats: int = 20, cache: str | Path | None = None
    ):
        self.device = torch.device(device)
        self.batch, self.warmup, self.repeats = batch, warmup, repeats
        self.cache_path = Path(cache) if cache else None
        self.cache: dict[str, float] = {}
        if self.cache_path is not None and self.cache_path.is_file():
            self.cache = _read_cache(self.cache_path)
        self.hits = self.measured = 0

    def meta(self) -> dict[str, Any]:
        return {"device": device_name(self.device), "torch": torch.__version__, "threads": torch.get_num_threads(),
                "batch": self.batch, "dtype": "float32", "warmup": self.warmup, "repeats": self.repeats,
                "unit": "ms per batch, median"}  # fmt: skip

    def _key(self, site: tuple) -> str:
        m = self.meta()
        return json.dumps([m["device"], m["torch"], m["threads"], m["batch"], m["dtype"], *map(str, site)])

    @torch.inference_mode()
    def _time(self, module: nn.Module, shape: tuple[int, ...]) -> float:
        module = module.to(self.device).eval()
        x = torch.zeros((self.batch, *shape), device=self.device)
        sync = torch.cuda.synchronize if self.device.type == "cuda" else (lambda: None)
        for _ in range(self.warmup):
            module(x)
        sync()
        times = []
        for _ in range(self.repeats):
            start = time.perf_counter()
            module(x)
            sync()
            times.append(time.perf_counter() - start)
        return 1000.0 * statistics.median(times)

    def module(self, module: nn.Module, shape: tuple[int, ...], site: tuple) -> float:
        """The median latency of one op at input `shape` (C, H, W); `site` names it in the cache."""
        key = self._key(site)
        if key in self.cache:
            self.hits += 1
            return self.cache[key]
        self.measured += 1
        self.cache[key] = value = self._time(module, shape)
        if self.cache_path is not None:
            self.cache_path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_text(self.cache_path, json.dumps(self.cache, indent=0) + "\n")
        return value

    def network(self, network: nn.Module, shape: tuple[int, ...]) -> float:
        """The median latency of a whole network (not cached: it calibrates the table's fixed part)."""
        return self._time(network, shape)
