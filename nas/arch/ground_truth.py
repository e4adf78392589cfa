"""Ground truth: what every architecture of a space reaches under a tabular benchmark's training protocol
(e.g. NAS-Bench-201's 200-epoch test accuracy of all 15,625 cells), so that a searched cell is judged in
milliseconds, exactly, instead of by a short proxy retrain.

A space that has one provides `ground_truth(cfg: GroundTruthConfig) -> GroundTruth` (see
`nas.arch.space.SearchSpace`); the engine never names the benchmark. A `GroundTruth` is a table (architecture
key -> one accuracy per dataset) plus the function that turns a genotype into its key; percentiles are
against the whole space, ties counting half (as `nas.core.stats.percentile`).

Where it is read: `nas genotype info` (accuracy and percentile per dataset), `nas search` (the derived
cell's accuracy per epoch in metrics.jsonl and TensorBoard, and at the end), `nas ablate` with
`evaluate: ground_truth` (every cell judged by the table, random cells with exact percentiles) and
`nas rank --random N` (the supernet's Kendall tau against the truth).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from nas.arch.genotype import Genotype
from nas.core.errors import UserError


@dataclass
class GroundTruthConfig:
    """Where a space's ground truth comes from (the `ground_truth` section of search configs; flags of
    `nas genotype info` and `nas rank`)."""

    source: str = "table"  # table: the one shipped with the space; nats_bench: the official file (NB201)
    path: str | None = None  # nats_bench: the benchmark file or directory (null: its default location)
    epochs: int = 200  # nats_bench: the training length of the numbers (12 or 200)
    trial_seed: int | None = None  # nats_bench: one training seed's numbers (null: the mean over seeds)


class GroundTruth:
    """Accuracy (%) of every architecture of a space on each of the benchmark's datasets.

    Args:
        name: the benchmark, e.g. "NAS-Bench-201".
        protocol: what the numbers are, in words (training length, split, averaging).
        datasets: the dataset names, the columns of `table`.
        table: architecture key -> accuracies in `datasets` order (every architecture of the space).
        key: genotype -> its key in `table` (raises UserError for a genotype the table cannot hold).
    """

    def __init__(
        self,
        name: str,
        protocol: str,
        datasets: Sequence[str],
        table: Mapping[str, Sequence[float]],
        key: Callable[[Genotype], str],
    ):
        self.name, self.protocol, self.datasets = name, protocol, tuple(datasets)
        self._table = {k: tuple(float(x) for x in v) for k, v in table.items()}
        self._key = key
        columns = np.asarray(list(self._table.values()), dtype=np.float64).reshape(-1, len(self.datasets))
        self._sorted = {d: np.sort(columns[:, i]) for i, d in enumerate(self.datasets)}

    def __len__(self) -> int:
        return len(self._table)

    def accuracy(self, genotype: Genotype) -> dict[str, float]:
        """dataset -> accuracy (%) of `genotype`. Raises UserError if the table does not hold it."""
        key = self._key(genotype)
        if key not in self._table:
            raise UserError(f"{self.name} has no entry for {key}")
        return dict(zip(self.datasets, self._table[key]))

    def values(self, dataset: str) -> np.ndarray:
        """Every architecture's accuracy on `dataset`, sorted ascending."""
        self._check(dataset)
        return self._sorted[dataset]

    def percentile(self, dataset: str, value: float) -> float:
        """Share (%) of the space's architectures below `value` on `dataset`, ties counting half."""
        v = self.values(dataset)
        below = int(np.searchsorted(v, value, side="left"))
        upto = int(np.searchsorted(v, value, side="right"))
        return 100.0 * (below + 0.5 * (upto - below)) / len(v)

    def record(self, genotype: Genotype) -> dict[str, float]:
        """gt_<dataset> (accuracy %) and gt_<dataset>_pct (percentile in the space) of `genotype`."""
        out: dict[str, float] = {}
        for dataset, acc in self.accuracy(genotype).items():
            out[f"gt_{dataset}"] = acc
            out[f"gt_{dataset}_pct"] = self.percentile(dataset, acc)
        return out

    def summary(self, genotype: Genotype) -> str:
        """One line: each dataset's accuracy and percentile, e.g. 'cifar10 93.76 % (p98.9), ...'."""
        parts = [
            f"{d} {a:.2f} % (percentile {self.percentile(d, a):.1f})"
            for d, a in self.accuracy(genotype).items()
        ]
        return f"{self.name} ({self.protocol}): " + ", ".join(parts)

    def _check(self, dataset: str) -> None:
        if dataset not in self._sorted:
            raise UserError(f"{self.name} has no dataset {dataset!r} (it has: {', '.join(self.datasets)})")


def ground_truth_of(space: Any, cfg: GroundTruthConfig | None = None) -> GroundTruth | None:
    """The space's ground truth from `cfg` (default: its shipped table), or None where it has none."""
    provider = getattr(space, "ground_truth", None)
    if provider is None:
        if cfg is not None and cfg.source != "table":
            raise UserError(f"space {space.name} has no ground truth (ground_truth.source={cfg.source})")
        return None
    return provider(cfg or GroundTruthConfig())
