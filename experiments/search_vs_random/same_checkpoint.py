"""Are two search checkpoints the same supernet? Bitwise comparison of their model tensors and noise generator.

    python experiments/search_vs_random/same_checkpoint.py A.pt B.pt

Used to show that two runs share their warm-up exactly (e.g. gumbel with `search.weight_sample=one_hot` and
gumbel_st at epoch 40: `keep_checkpoints: [40]` keeps `checkpoints/epoch-40.pt`), so that what differs after it
is the architecture step alone. Exit code 0 when every tensor and the generator state are equal, 1 otherwise.
"""

from __future__ import annotations

import sys

import torch


def main() -> int:
    if len(sys.argv) != 3:
        sys.exit(__doc__.strip().splitlines()[2].strip())
    a, b = (torch.load(p, weights_only=False, map_location="cpu") for p in sys.argv[1:3])
    ma, mb = a["model"], b["model"]
    keys = sorted(set(ma) | set(mb))
    same = [k for k in keys if k in ma and k in mb and torch.equal(ma[k], mb[k])]
    generator = torch.equal(a["sampler_generator"], b["sampler_generator"])
    print(f"epoch {a['epoch']} / {b['epoch']}: model tensors bitwise equal {len(same)} of {len(keys)}; "
          f"noise generator state equal: {generator}")  # fmt: skip
    return 0 if len(same) == len(keys) and generator and a["epoch"] == b["epoch"] else 1


if __name__ == "__main__":
    sys.exit(main())
