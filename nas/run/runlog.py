"""Run logs: TensorBoard events, `metrics.jsonl` (one JSON object per epoch) and console lines.

Only the process that owns the run directory (rank 0) writes; other ranks get a disabled logger.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import Any

from nas.core.atomic import atomic_write_text
from nas.core.rundir import METRICS_LOG


def _jsonable(value: Any) -> Any:
    if hasattr(value, "item") and getattr(value, "ndim", 1) == 0:
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


class RunLogger:
    def __init__(self, out_dir: str | Path, enabled: bool = True, resume_epoch: int | None = None):
        """Args:
        resume_epoch: when resuming at this epoch, drop metrics lines and TensorBoard events from that
            epoch on (they were written after the checkpoint the run resumes from).
        """
        self.out_dir = Path(out_dir)
        self.enabled = enabled
        self._tb = None
        self._purge_step = None
        if enabled and resume_epoch is not None:
            self._truncate_metrics(resume_epoch)
            self._purge_step = resume_epoch

    @property
    def metrics_path(self) -> Path:
        return self.out_dir / METRICS_LOG

    def _truncate_metrics(self, epoch: int) -> None:
        if not self.metrics_path.is_file():
            return
        keep = []
        for line in self.metrics_path.read_text().splitlines():
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                continue  # a torn last line from a kill
            done = row.get("epoch", -1) if isinstance(row, dict) else None  # not an object: a foreign line
            if isinstance(done, (int, float)) and done < epoch:
                keep.append(line)
        atomic_write_text(self.metrics_path, "".join(line + "\n" for line in keep))

    @property
    def tb(self):
        """The TensorBoard SummaryWriter, created on first use (importing tensorboard is slow)."""
        if self._tb is None and self.enabled:
            from torch.utils.tensorboard import SummaryWriter

            self._tb = SummaryWriter(str(self.out_dir / "tb"), purge_step=self._purge_step)
        return self._tb

    def scalars(self, values: dict[str, Any], step: int, prefix: str = "") -> None:
        if not self.enabled:
            return
        for key, value in values.items():
            value = _jsonable(value)
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                self.tb.add_scalar(prefix + key, value, step)

    def text(self, tag: str, text: str, step: int) -> None:
        if self.enabled:
            self.tb.add_text(tag, text, step)

    def figure(self, tag: str, figure: Any, step: int) -> None:
        if self.enabled:
            self.tb.add_figure(tag, figure, step, close=True)

    def epoch(self, record: dict[str, Any]) -> None:
        """Append one line to metrics.jsonl (flushed and fsynced: a killed run keeps every finished epoch)."""
        if not self.enabled:
            return
        line = json.dumps({k: _jsonable(v) for k, v in record.items()})
        with open(self.metrics_path, "a") as f:
            f.write(line + "\n")
        if self._tb is not None:
            self._tb.flush()

    def console(self, message: str) -> None:
        if self.enabled:
            print(message, file=sys.stderr, flush=True)

    def close(self) -> None:
        if self._tb is not None:
            self._tb.close()
            self._tb = None


def read_metrics(path: str | Path) -> list[dict[str, Any]]:
    """metrics.jsonl as a list of dicts, skipping a torn last line (and any line that is not an object)."""
    rows = []
    path = Path(path)
    if not path.is_file():
        return rows
    for line in path.read_text().splitlines():
        try:
            row = json.loads(line)
        except (json.JSONDecodeError, RecursionError):
            continue
        if isinstance(row, dict):
            rows.append(row)
    return rows
