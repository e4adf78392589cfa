"""NAS-Bench-201's ground truth: the test accuracy of all 15,625 cells after the benchmark's 200-epoch training
(16 channels, 5 cells per stage), averaged over its training seeds, on CIFAR-10, CIFAR-100 and
ImageNet16-120.

The shipped table (`nb201_accuracies.csv.gz`, 256 KB; the CSV inside has sha256
5d64733e6915408060ee4ff6807f81834b324ae0530dcdbf3aa4a6bb950e39f2) was exported from the NATS-Bench
topology benchmark (Dong et al., TPAMI 2021: `get_more_info(index, dataset, hp="200",
is_random=False)["test-accuracy"]`) as published in the public repository v-tao/nats-bench-landscape.
Columns: `index` (the NATS-Bench topology index), `arch` (the NB201 arch string), `cifar10_test`,
`cifar100_test`, `imagenet16_120_test`. Sanity values: best cell 94.3633 / 73.5133 / 47.3111, the ResNet
cell 93.91 on CIFAR-10, the all-`none` cell 10.0.

`ground_truth.source=nats_bench` reads the official benchmark file instead, through the `nats_bench`
package (`pip install nats_bench`), for what the table lacks: the 12-epoch numbers (`ground_truth.epochs=12`)
or one training seed's (`ground_truth.trial_seed`). It queries all 15,625 cells once (minutes) and caches
the result as a table of the same layout.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import io
import os
from functools import cache, lru_cache
from pathlib import Path

from nas.arch.genotype import Genotype
from nas.arch.ground_truth import GroundTruth, GroundTruthConfig
from nas.core.errors import UserError
from search_spaces.nb201.cell import validate_genotype

TABLE = Path(__file__).with_name("nb201_accuracies.csv.gz")
DATASETS = ("cifar10", "cifar100", "imagenet16_120")
COLUMNS = tuple(f"{d}_test" for d in DATASETS)
NATS_DATASETS = {"cifar10": "cifar10", "cifar100": "cifar100", "imagenet16_120": "ImageNet16-120"}
NATS_EPOCHS = (12, 200)
SPACE_SIZE = 5**6


def arch_key(genotype: Genotype) -> str:
    """The NB201 arch string of `genotype`, each node's inputs in ascending order (the table's key)."""
    validate_genotype(genotype)
    nodes = genotype.cells["cell"].nodes
    return "+".join(
        "|" + "|".join(f"{op}~{j}" for op, j in sorted(node, key=lambda e: e[1])) + "|" for node in nodes
    )


def read_table(text: str, source: str) -> dict[str, tuple[float, ...]]:
    """arch -> accuracies (COLUMNS order) from CSV text with at least `arch` and COLUMNS."""
    rows = csv.DictReader(io.StringIO(text))
    missing = [c for c in ("arch", *COLUMNS) if c not in (rows.fieldnames or [])]
    if missing:
        raise UserError(f"{source}: not a NAS-Bench-201 accuracy table (no column {missing[0]!r})")
    table = {row["arch"]: tuple(float(row[c]) for c in COLUMNS) for row in rows}
    if len(table) != SPACE_SIZE:
        raise UserError(f"{source}: {len(table)} cells, NAS-Bench-201 has {SPACE_SIZE}")
    return table


@cache
def shipped() -> GroundTruth:
    """The table that ships with the package (loaded once, on first use: ~0.1 s)."""
    table = read_table(gzip.decompress(TABLE.read_bytes()).decode(), str(TABLE))
    return GroundTruth(
        "NAS-Bench-201", "test accuracy after 200 epochs, mean over seeds", DATASETS, table, arch_key
    )


def ground_truth(cfg: GroundTruthConfig) -> GroundTruth:
    """The ground truth `cfg` asks for (the space's `ground_truth`). Raises UserError for a bad source."""
    if cfg.source == "table":
        if cfg.path is not None or cfg.epochs != 200 or cfg.trial_seed is not None:
            raise UserError(
                "ground_truth.path, .epochs and .trial_seed need ground_truth.source=nats_bench (the shipped "
                "table holds the 200-epoch mean)"
            )
        return shipped()
    if cfg.source == "nats_bench":
        return from_nats_bench(cfg.path, cfg.epochs, cfg.trial_seed)
    raise UserError(f"ground_truth.source must be 'table' or 'nats_bench', got {cfg.source!r}")


@lru_cache(maxsize=4)
def from_nats_bench(path: str | None, epochs: int, trial_seed: int | None) -> GroundTruth:
    """The table built from the official NATS-Bench topology file (cached under ~/.cache/nas)."""
    if epochs not in NATS_EPOCHS:
        raise UserError(f"ground_truth.epochs must be 12 or 200 (NATS-Bench's hp), got {epochs}")
    try:
        import nats_bench
    except ImportError:
        raise UserError(
            "ground_truth.source=nats_bench needs the nats_bench package: pip install nats_bench"
        ) from None
    where = path or os.path.join(
        os.environ.get("TORCH_HOME", os.path.expanduser("~/.torch")), "NATS-tss-v1_0-3ffb9-simple"
    )
    if not os.path.exists(where):
        raise UserError(f"NATS-Bench file not found: {where} (set ground_truth.path)")
    tag = hashlib.sha256(f"{os.path.abspath(where)}|{epochs}|{trial_seed}".encode()).hexdigest()[:16]
    cache = (
        Path(os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache"))) / "nas" / f"nats-tss-{tag}.csv"
    )
    protocol = f"test accuracy after {epochs} epochs, " + (
        "mean over seeds" if trial_seed is None else f"seed {trial_seed}"
    )
    if cache.is_file():
        table = read_table(cache.read_text(), str(cache))
    else:
        api = nats_bench.create(where, "tss", fast_mode=True, verbose=False)
        table = query_all(api, epochs, trial_seed)
        _write_cache(cache, table)
    return GroundTruth("NATS-Bench (topology)", protocol, DATASETS, table, arch_key)


def query_all(api, epochs: int, trial_seed: int | None) -> dict[str, tuple[float, ...]]:
    """arch -> test accuracy per dataset for every cell of a NATS-Bench topology API object."""
    table = {}
    for index in range(len(api)):
        arch = api.arch(index)
        table[arch] = tuple(
            float(api.get_more_info(index, NATS_DATASETS[d], hp=str(epochs),
                                    is_random=False if trial_seed is None else trial_seed)["test-accuracy"])
            for d in DATASETS
        )  # fmt: skip
    return table


def _write_cache(path: Path, table: dict[str, tuple[float, ...]]) -> None:
    from nas.core.atomic import atomic_write_text

    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["arch", *COLUMNS])
    writer.writerows([arch, *(repr(v) for v in values)] for arch, values in table.items())
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, buffer.getvalue())
