"""Start a search from another search's warm-up checkpoint, so that grid points that share their first
`search.arch_start_epoch` epochs bit for bit do not recompute them.

While alpha is fixed, a one-hot sampler's weight steps sample argmax(log_softmax(alpha) + g), which does not
depend on tau (dividing by tau keeps the argmax) nor on which one-hot sampler draws it (gumbel_st, gdas and
reinmax draw the same noise from the same generator; gumbel_rao draws more and differs). So for a fixed seed,
split, data, space and weight recipe, every such search has the same checkpoint at the end of its warm-up,
whatever its sampler, temperature schedule or architecture-step settings (and a sampler that ignores tau,
softmax or drnas, shares its warm-up with itself under any architecture-step settings). This script writes a run directory
holding that checkpoint (and the warm-up's metrics lines) with the target run's own resolved config; `nas
search --resume DIR` then runs the architecture epochs. `nas ablate` resumes such a directory like one it
killed itself, so a fork placed at `OUT/runs/<id>` is picked up by the ablation.

    python experiments/fork_warmup.py WARM.pt WARM_METRICS.jsonl OUT_DIR --config BASE.yaml key=value ...

Checks before writing: the checkpoint is at the warm-up's end (its epoch equals the target's
arch_start_epoch); the target's sampler is one of those that share the warm-up; the config keys that shape
the warm-up equal the source run's (`--source-config`, the source run's config.yaml). Whether a fork ends
bitwise where a fresh run ends is checked, not assumed: experiments/tau_ablation/README.md says where.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

from nas.checkpoint import load_checkpoint
from nas.config import SearchRunConfig, load_config, to_dict, to_yaml
from nas.errors import UserError

SHARED = {"gumbel_st", "gdas", "reinmax"}  # one-hot samplers drawing the same noise in the weight step
# what may differ between runs that share a warm-up (everything else must be equal)
FREE = ("name", "out_dir", "progress", "sampler", "tau", "search.arch", "search.derive_exclude", "ground_truth")


def _flat(tree: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in tree.items():
        out.update(_flat(v, f"{prefix}{k}.") if isinstance(v, dict) else {prefix + k: v})
    return out


def check_compatible(source: SearchRunConfig, target: SearchRunConfig) -> None:
    from nas.sampling import SAMPLERS

    same = source.sampler == target.sampler and not SAMPLERS.get(target.sampler.name).uses_tau
    if not same and not {source.sampler.name, target.sampler.name} <= SHARED:
        raise UserError(f"samplers {source.sampler.name} and {target.sampler.name} do not share a warm-up (only "
                        f"{sorted(SHARED)} do, or one sampler that ignores tau with itself)")  # fmt: skip
    a, b = _flat(to_dict(source)), _flat(to_dict(target))
    for key in sorted(set(a) | set(b)):
        if any(key == f or key.startswith(f + ".") for f in FREE):
            continue
        if a.get(key) != b.get(key):
            raise UserError(f"{key} differs ({a.get(key)!r} in the source, {b.get(key)!r} here): no shared warm-up")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("checkpoint")
    p.add_argument("metrics", help="the source run's metrics.jsonl (its first arch_start_epoch lines are copied)")
    p.add_argument("out_dir")
    p.add_argument("--source-config", required=True, help="the source run's config.yaml")
    p.add_argument("--config", help="the target's base search config")
    p.add_argument("overrides", nargs="*")
    args = p.parse_intermixed_args(argv)
    try:
        out = Path(args.out_dir)
        target = load_config(SearchRunConfig, args.config, [*args.overrides, f"out_dir={out}"])
        source = load_config(SearchRunConfig, args.source_config)
        check_compatible(source, target)
        start = target.search.arch_start_epoch
        state = load_checkpoint(args.checkpoint)
        if int(state["epoch"]) != start:
            raise UserError(f"{args.checkpoint} is at epoch {state['epoch']}, the warm-up ends at {start}")
        if out.exists():
            raise UserError(f"{out} exists")
        (out / "checkpoints").mkdir(parents=True)
        shutil.copyfile(args.checkpoint, out / "checkpoints" / "last.pt")
        lines = Path(args.metrics).read_text().splitlines()[:start]
        (out / "metrics.jsonl").write_text("".join(line + "\n" for line in lines))
        meta = {"forked_from": {"checkpoint": str(Path(args.checkpoint).resolve()), "epoch": start}}
        (out / "config.yaml").write_text(to_yaml(target, meta=meta))
    except UserError as exc:
        print(f"fork_warmup: error: {exc}", file=sys.stderr)
        return 2
    print(f"{out}: resume with nas search --resume {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
