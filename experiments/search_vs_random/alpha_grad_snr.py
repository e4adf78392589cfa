"""Size and signal-to-noise ratio of one sample's alpha gradient, per temperature.

For a search run's last checkpoint, draw `--batches` batches of its architecture split and, at each tau,
one sample of the sampler's architecture gradient per batch (the Architect's first-order step without the
update). Prints the mean over entries of |mean gradient|, the mean per-entry standard deviation of one
sample, and the SNR of the mean, |mean| / (std / sqrt(batches)); divide by sqrt(batches) for one sample.

    python experiments/search_vs_random/alpha_grad_snr.py RUN_DIR [--sampler gdas] [--batches 40]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

import search_spaces  # noqa: F401  (registers the spaces)
from nas.config import SamplerConfig, SearchRunConfig, load_config
from nas.data.loaders import search_loaders
from nas.sampling import build_sampler, sample_architecture
from nas.search.load import load_supernet


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir")
    parser.add_argument("--sampler", default="gdas")
    parser.add_argument("--batches", type=int, default=40)
    parser.add_argument("--taus", default="10,3,1,0.3")
    parser.add_argument("--unchosen-grad", action="store_true", help="gdas: the reference NB201 form")
    args = parser.parse_args()
    run = Path(args.run_dir)
    cfg = load_config(SearchRunConfig, run / "config.yaml")
    _, arch_loader, info = search_loaders(cfg.data, device="cpu", seed=cfg.seed)
    space, net = load_supernet(run, cfg, info)
    batches = [b for _, b in zip(range(args.batches), arch_loader)]
    alphas = list(net.alphas.values())
    print(
        f"{args.sampler} on {run}: {len(batches)} batches; max |alpha| {max(a.abs().max().item() for a in alphas):.3g}"
    )
    print(f"{'tau':>6} {'|mean|':>10} {'std':>10} {'SNR of mean':>12}")
    sampler = build_sampler(SamplerConfig(name=args.sampler, unchosen_grad=args.unchosen_grad))
    for tau in (float(t) for t in args.taus.split(",")):
        gen = torch.Generator().manual_seed(0)
        grads = []
        for x, y in batches:
            samples = sample_architecture(dict(net.alphas), sampler, tau, gen)
            loss = torch.nn.functional.cross_entropy(net(x, samples), y)
            grads.append(torch.cat([g.flatten() for g in torch.autograd.grad(loss, alphas)]))
        g = torch.stack(grads)  # (batches, entries)
        mean, std = g.mean(0), g.std(0)
        snr = (mean.abs() / (std / len(batches) ** 0.5).clamp_min(1e-30)).mean()
        print(f"{tau:>6g} {mean.abs().mean():>10.2e} {std.mean():>10.2e} {snr:>12.2f}")


if __name__ == "__main__":
    main()
