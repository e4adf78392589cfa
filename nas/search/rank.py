"""`nas rank`: how a search run's final supernet ranks given architectures.

Each genotype is run inside the supernet with its one-hot op weights (only its ops run, as in a hard
sample; edges it does not keep carry `none`), on the architecture split of the run's training set (the
`1 - data.train_portion` of it that alpha was trained on: not held out, not augmented), and scored by
accuracy. BatchNorm uses the
statistics of each batch, as during the search: the supernet's running statistics mix every sampled path
and describe none of them (the evaluation protocol of one-shot NAS benchmarks, e.g. Yu et al. 2020,
"Evaluating the search phase of neural architecture search").

Comparing these accuracies with the same cells' retrained accuracies (Kendall's tau in the ablation
report) measures whether the supernet can rank architectures at all, whatever the sampler.
"""

from __future__ import annotations

from pathlib import Path

import torch

from nas.arch.genotype import Genotype
from nas.arch.space import SPACES
from nas.config import SearchRunConfig, load_config
from nas.core.errors import UserError
from nas.core.rundir import CONFIG_FILE
from nas.data.loaders import arch_eval_loader
from nas.run.runtime import pick_device
from nas.sampling import ArchSample
from nas.search.load import load_supernet


def random_cells(space, space_cfg, n: int, seed: int) -> list[Genotype]:
    """n uniform draws from the space under its derive rule's constraints; draw i from (seed, i), as the
    ablation's random baseline draws them."""
    import random

    from nas.core.rng import derive_seed

    return [space.sample_random(random.Random(derive_seed(seed, i)), space_cfg) for i in range(n)]


@torch.no_grad()
def supernet_accuracies(
    run_dir: str | Path, genotypes: list[Genotype], device: str | None = None
) -> list[float]:
    """Top-1 accuracy (%) of each genotype inside the supernet of `run_dir`'s last checkpoint.

    Raises:
        UserError: not a search run, no checkpoint, or a genotype of another space.
    """
    run_dir = Path(run_dir)
    cfg = load_config(SearchRunConfig, run_dir / CONFIG_FILE)
    space = SPACES.get(cfg.space.name)
    for genotype in genotypes:
        if genotype.space != space.name:
            raise UserError(f"genotype of space {genotype.space!r} cannot run in a {space.name!r} supernet")
    dev = pick_device(device or cfg.device)
    loader, info = arch_eval_loader(cfg.data, device=dev, seed=cfg.seed, channels_last=cfg.channels_last)
    _, model = load_supernet(run_dir, cfg, info, dev)  # batch statistics (module docstring); nothing saved
    accuracies = []
    for genotype in genotypes:
        weights = {name: w.to(dev) for name, w in space.one_hot(genotype).items()}
        samples = {name: ArchSample(w, w.argmax(1).tolist()) for name, w in weights.items()}
        correct = torch.zeros((), dtype=torch.int64, device=dev)
        total = 0
        for x, y in loader:
            correct += (model(x, samples).argmax(1) == y).sum()
            total += len(y)
        accuracies.append(100.0 * correct.item() / total)
    return accuracies
