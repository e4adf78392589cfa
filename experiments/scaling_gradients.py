"""How far is one step of a 2-process search from the 1-process step with the same global batch?

Two ranks with B/2 images each all-reduce the mean of their two gradients; one process computes the gradient
of the whole batch of B. Both use the same weights, alphas and sampled architecture. The script prints the
relative L2 difference of the two, for alpha and for the weights, with BatchNorm normalising over the batch
(what the search does: each rank over its own B/2 images) and with BatchNorm in eval mode (its statistics no
longer depend on how the batch is split, so only float rounding is left). For scale it also prints the
difference between the gradients of the two halves (mini-batch noise).

    python experiments/scaling_gradients.py --batch 16 --channels 4 --layers 3 --image-size 16
    python experiments/scaling_gradients.py --batch 64 --channels 16 --layers 8 --image-size 32 --classes 10
"""

from __future__ import annotations

import argparse
import tempfile

import torch

import search_spaces  # noqa: F401  (registers the spaces)
from nas.arch.space import SPACES
from nas.config import SearchRunConfig, load_config
from nas.sampling import sample_architecture
from nas.search.runner import SearchRunner


def build(args: argparse.Namespace, out_dir: str) -> SearchRunner:
    overrides = [
        "device=cpu", "progress=false", f"data.batch_size={args.batch}", f"space.init_channels={args.channels}",
        f"space.layers={args.layers}", f"data.synthetic.image_size={args.image_size}",
        f"data.synthetic.classes={args.classes}", f"data.synthetic.train_size={max(4 * args.batch, 256)}",
        "data.crop_padding=0", "data.flip=false", f"search.epochs={max(args.epochs, 1)}", f"out_dir={out_dir}",
    ]  # fmt: skip
    cfg = load_config(SearchRunConfig, "configs/search/tiny_synthetic.yaml", overrides)
    return SearchRunner(cfg, SPACES.get(cfg.space.name), out_dir)


def compare(runner: SearchRunner, sampler: str, bn_train: bool) -> dict[str, float]:
    """Relative differences (full batch vs mean of halves; half vs half) for alpha and for the weights."""
    x, y = next(iter(runner.train_loader))
    params = list(runner.model.parameters())
    alpha_ids = {id(a) for a in runner.model.arch_parameters()}
    is_alpha = torch.cat([torch.full((p.numel(),), id(p) in alpha_ids) for p in params])
    runner.model.train(bn_train)
    samples = sample_architecture(dict(runner.model.alphas), sampler, 1.0, torch.Generator().manual_seed(0))

    def grad(xb: torch.Tensor, yb: torch.Tensor) -> torch.Tensor:
        loss = runner.criterion(runner.model(xb, samples), yb)
        gs = torch.autograd.grad(loss, params, allow_unused=True, retain_graph=True)
        return torch.cat([(torch.zeros_like(p) if g is None else g).flatten() for p, g in zip(params, gs)])

    h = len(y) // 2
    full, a, b = grad(x, y), grad(x[:h], y[:h]), grad(x[h:], y[h:])
    out = {}
    for name, m in (("alpha", is_alpha), ("weights", ~is_alpha)):
        out[f"{name}: 1 vs 2 processes"] = ((a[m] + b[m]) / 2 - full[m]).norm().item() / full[m].norm().item()
        out[f"{name}: half vs half"] = (a[m] - b[m]).norm().item() / full[m].norm().item()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=16, help="global batch (each of 2 ranks gets half)")
    parser.add_argument("--channels", type=int, default=4)
    parser.add_argument("--layers", type=int, default=3)
    parser.add_argument("--image-size", type=int, default=16)
    parser.add_argument("--classes", type=int, default=4)
    parser.add_argument("--epochs", type=int, default=0, help="search epochs to run first (0 = at init)")
    parser.add_argument("--samplers", default="gdas,softmax")
    args = parser.parse_args()
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as out_dir:
        runner = build(args, out_dir)
        for epoch in range(args.epochs):
            runner.run_epoch(epoch)
        for sampler in args.samplers.split(","):
            for bn_train in (True, False):
                diffs = compare(runner, sampler, bn_train)
                text = "  ".join(f"{k} {v:.1e}" for k, v in diffs.items())
                print(f"{sampler:8s} BatchNorm {'batch stats' if bn_train else 'eval mode  '}  {text}")


if __name__ == "__main__":
    main()
