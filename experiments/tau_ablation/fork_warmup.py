"""Fork the points of an ablation from the warm-up checkpoints its source points kept (nas/ablate/fork.py).

    python experiments/tau_ablation/fork_warmup.py ABLATION.yaml [--epoch 40] [--from OUT_DIR ...] [key=value ...]

Run the source points first (one per seed and sampler, with `keep_checkpoints: [EPOCH]` in the ablation's
overrides), e.g. `nas ablate --config ABLATION.yaml --run schedule-linear_name-gumbel-st_seed-0`; once their
kept checkpoint exists, this script creates every other point's run directory from it, and `nas ablate
--config ABLATION.yaml` resumes them. Points whose config differs from every source in more than `tau.*`
are left to run from scratch. `--from` also takes sources from another ablation's output directory.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from nas.ablate.fork import fork_ablation
from nas.ablate.spec import load_ablation


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("ablation")
    p.add_argument("--epoch", type=int, default=40, help="the kept checkpoint to fork from")
    p.add_argument("--from", dest="others", action="append", type=Path, default=[], metavar="OUT_DIR")
    p.add_argument("overrides", nargs="*")
    args = p.parse_args()
    spec = load_ablation(args.ablation, args.overrides)
    for target, source in fork_ablation(spec, Path(spec.out_dir), args.epoch, args.others):
        print(f"forked {target} from {source} at epoch {args.epoch}")


if __name__ == "__main__":
    main()
