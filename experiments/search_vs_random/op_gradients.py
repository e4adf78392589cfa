"""What the architecture gradient of a hard sampler sees: dL/dw_k for every op k on every edge.

For a search run's last checkpoint, on `--batches` batches of its architecture split, sample a hard
architecture (GDAS: Gumbel-max), run the supernet with *every* op computed and the sampled one-hot weights
as a leaf tensor, and record d loss / d w_k, separately for the chosen op and for the unchosen ones.
GDAS' alpha gradient uses only the chosen op's entry (and `none`'s is always 0); straight-through
Gumbel-softmax (gumbel_st) uses every entry. The mean per op says which way each estimator pushes.

    python experiments/search_vs_random/op_gradients.py RUN_DIR [--batches 40]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

import search_spaces  # noqa: F401  (registers the spaces)
from nas.config import SearchRunConfig, load_config
from nas.data.loaders import search_loaders
from nas.sampling import ArchSample, sample_architecture
from nas.search.load import load_supernet


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir")
    parser.add_argument("--batches", type=int, default=40)
    args = parser.parse_args()
    run = Path(args.run_dir)
    cfg = load_config(SearchRunConfig, run / "config.yaml")
    _, arch_loader, info = search_loaders(cfg.data, device="cpu", seed=cfg.seed)
    space, net = load_supernet(run, cfg, info)
    gen = torch.Generator().manual_seed(0)
    K = len(space.primitives)
    sums = {"chosen": torch.zeros(K), "unchosen": torch.zeros(K)}
    counts = {"chosen": torch.zeros(K), "unchosen": torch.zeros(K)}
    for b, (x, y) in enumerate(arch_loader):
        if b == args.batches:
            break
        drawn = sample_architecture({k: a.detach() for k, a in net.alphas.items()}, "gdas", 1.0, gen)
        leaves = {k: s.weights.detach().clone().requires_grad_() for k, s in drawn.items()}
        loss = torch.nn.functional.cross_entropy(net(x, {k: ArchSample(w) for k, w in leaves.items()}), y)
        grads = torch.autograd.grad(loss, list(leaves.values()))
        for w, g in zip(leaves.values(), grads):  # (E, K) each
            chosen = w.detach() > 0.5
            for kind, mask in (("chosen", chosen), ("unchosen", ~chosen)):
                sums[kind] += (g * mask).sum(0)
                counts[kind] += mask.sum(0)
    print(f"mean dL/dw_k over {args.batches} batches of {run} (negative: a larger weight lowers the loss)")
    print(f"{'op':<16}{'chosen':>12}{'unchosen':>12}")
    for k, op in enumerate(space.primitives):
        c, u = (sums[kind][k] / counts[kind][k].clamp_min(1) for kind in ("chosen", "unchosen"))
        print(f"{op:<16}{c.item():>12.2e}{u.item():>12.2e}")


if __name__ == "__main__":
    main()
