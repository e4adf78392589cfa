"""torch.compile vs eager for one softmax supernet step (forward + backward with weight gradients).

    python experiments/compile_cpu.py eager
    python experiments/compile_cpu.py compile     # on 2 CPU cores the first step compiles for ~16 minutes

The `gdas_cifar10` preset's supernet (DARTS space, 16 channels, 8 cells), batch 64, 32x32, channels_last,
fixed random data and fixed alphas, so both modes do the same work. Prints the first step (compilation
included), then the time of three more. Numbers: experiments/benchmarks.md.
"""

import sys
import time

import torch

import search_spaces  # noqa: F401  (registers the spaces)
from nas.arch.space import SPACES
from nas.config import SearchRunConfig, load_config
from nas.sampling import sample_architecture


def main(mode: str) -> None:
    torch.manual_seed(0)
    cfg = load_config(SearchRunConfig, "configs/search/gdas_cifar10.yaml", ["sampler.name=softmax"])
    model = SPACES.get("darts").build_supernet(cfg.space, 10, 3).to(memory_format=torch.channels_last)
    alphas = {k: a.detach() for k, a in model.alphas.items()}
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(64, 3, 32, 32).to(memory_format=torch.channels_last)
    y = torch.randint(0, 10, (64,))
    forward = torch.compile(model) if mode == "compile" else model

    def step() -> float:
        start = time.perf_counter()
        logits = forward(x, sample_architecture(alphas, "softmax", 1.0, gen))
        torch.nn.functional.cross_entropy(logits, y).backward()
        return time.perf_counter() - start

    print(f"{mode}: first step {step():.1f} s", flush=True)
    print(f"{mode}: next steps " + ", ".join(f"{step():.2f}" for _ in range(3)) + " s", flush=True)


if __name__ == "__main__":
    if len(sys.argv) != 2 or sys.argv[1] not in ("eager", "compile"):
        print("usage: python experiments/compile_cpu.py eager|compile", file=sys.stderr)
        sys.exit(2)
    main(sys.argv[1])
