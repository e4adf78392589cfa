"""The CPU fast paths of `nas.arch.layers` (3x3 max/avg pooling from shifted slices) against torch's own
kernels, on a real search step.

`nas bench --compare` compares configs, not code; these fast paths have no switch (they are bitwise torch's
layers), so this script swaps the forward methods back to torch's in the same process. Per layout, one
SearchRunner of the given config is built and warmed up, its state (weights, both optimisers, the sampler's
noise, the loaders' generators, the global RNG: `EpochRun.state_dict`, what a resume restores) is held in
memory, and every measurement loads it first: each variant runs exactly the same steps (same
architectures sampled, same data). Rounds alternate the order of the variants (A B, B A, A B). The state
after the timed steps (weights, alphas, buffers, both optimisers) is hashed: the fast paths are bitwise
torch's, so every variant and round must leave the same digest.

    OMP_NUM_THREADS=1 python experiments/cpu_speed/pooling_ab.py --config configs/search/darts_cifar10_cpu.yaml \
        --epoch 30 --steps 4 --rounds 3
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import statistics
import tempfile
import time
from pathlib import Path

import torch
import torch.nn as nn

import search_spaces  # noqa: F401  (registers the spaces)
from nas.arch import layers
from nas.arch.space import SPACES
from nas.config import SearchRunConfig, load_config
from nas.search.runner import SearchRunner

OURS = {
    layers.MaxPool3x3: layers.MaxPool3x3.forward,
    layers.AvgPool3x3: layers.AvgPool3x3.forward,
}
TORCH = {
    layers.MaxPool3x3: nn.MaxPool2d.forward,
    layers.AvgPool3x3: nn.AvgPool2d.forward,
}


def digest(runner: SearchRunner) -> str:
    """sha256 of every weight, alpha, buffer and optimiser state after the timed steps."""
    h = hashlib.sha256()
    states = [
        runner.model.state_dict(),
        runner.w_opt.state_dict()["state"],
        runner.a_opt.state_dict()["state"],
    ]
    for state in states:
        for key in sorted(state, key=str):
            value = state[key]
            for t in value.values() if isinstance(value, dict) else [value]:
                if torch.is_tensor(t):
                    h.update(t.detach().contiguous().cpu().numpy().tobytes())
    return h.hexdigest()


def use(impl: dict) -> None:
    for module, forward in impl.items():
        module.forward = forward


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default="configs/search/darts_cifar10_cpu.yaml")
    ap.add_argument(
        "--epoch", type=int, default=30, help="30: an architecture epoch of the preset; 0: warm-up"
    )
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--layouts", default="true,false", help="channels_last values to run")
    ap.add_argument("overrides", nargs="*")
    args = ap.parse_args()
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} thread(s); epoch {args.epoch}, {args.steps} steps"
    )
    runners = {}
    for cl in args.layouts.split(","):
        cfg = load_config(
            SearchRunConfig, args.config, ["progress=false", f"channels_last={cl}", *args.overrides]
        )
        runner = SearchRunner(cfg, SPACES.get(cfg.space.name), Path(tempfile.mkdtemp(prefix="pool-ab-")))
        runner.run_epoch(args.epoch, max_steps=2)  # warm-up (allocator, oneDNN primitives)
        state = copy.deepcopy(runner.state_dict(args.epoch))  # what a resume restores, held in memory
        runners[cl] = (runner, state)
    times: dict[tuple[str, str], list[float]] = {}
    digests: dict[str, set[str]] = {}  # per layout: the state after the timed steps, for every variant
    for r in range(args.rounds):
        for cl, (runner, state) in runners.items():
            order = [("torch", TORCH), ("ours", OURS)]
            for name, impl in order if r % 2 == 0 else order[::-1]:
                use(impl)
                runner.load_state(copy.deepcopy(state))  # an optimiser keeps and updates the tensors it gets
                t0 = time.perf_counter()
                runner.run_epoch(args.epoch, max_steps=args.steps)
                times.setdefault((cl, name), []).append((time.perf_counter() - t0) / args.steps)
                digests.setdefault(cl, set()).add(digest(runner))
    use(OURS)
    base = statistics.median(times[(args.layouts.split(",")[0], "torch")])
    print(f"{'channels_last':>13}  {'pooling':>8}  {'s/step (median)':>15}  {'rounds':>22}  vs first")
    for (cl, name), ts in times.items():
        med = statistics.median(ts)
        rounds = ", ".join(f"{t:.2f}" for t in ts)
        print(f"{cl:>13}  {name:>8}  {med:>15.3f}  {rounds:>22}  {base / med:.2f}x")
    for cl, seen in digests.items():  # one digest: every variant and round left the same state
        print(
            f"channels_last={cl}: states after the timed steps bitwise equal across variants: {len(seen) == 1}"
        )


if __name__ == "__main__":
    main()
