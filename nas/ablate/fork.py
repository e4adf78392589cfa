"""Start grid points from another point's warm-up checkpoint instead of from scratch.

The points of a temperature ablation that share a seed and a sampler are the same run until the
architecture starts training: while alpha is fixed (`search.arch_start_epoch`) and tau is held at its start
value (`tau.warmup_epochs`), a hard sampler's forward pass is the one-hot sample, whatever the schedule.
Their first epochs are therefore computed once, in a source point that keeps the checkpoint of the fork
epoch (`keep_checkpoints: [E]`), and every other point of the group resumes from a copy of it.

A fork is refused unless it is exact: the two configs may differ only in `tau.*` keys (and their own
name and out_dir), the fork epoch lies inside both the tau hold and the alpha-free warm-up, and the
architecture optimiser has taken no step yet. A forked run then equals the run from scratch (same weights,
same data order, same RNG streams; tests/test_ablate_fork.py checks it) and costs only the epochs after
the fork.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from nas.config import SearchRunConfig, flat, load_config, to_dict, to_yaml
from nas.core.atomic import atomic_write_text
from nas.core.errors import UserError
from nas.core.rundir import CHECKPOINT, CONFIG_FILE, METRICS_LOG, kept_checkpoint
from nas.run.checkpoint import load_checkpoint, save_checkpoint
from nas.run.runtime import provenance
from nas.sampling.schedules import LearnedTemperature

OWN_KEYS = ("name", "out_dir", "keep_checkpoints")  # a run's own, not what it computes


def fork_differences(source: SearchRunConfig, target: SearchRunConfig) -> list[str]:
    """The keys (dotted) in which two search configs differ, other than the runs' own."""
    a, b = flat(to_dict(source)), flat(to_dict(target))
    return sorted(k for k in {**a, **b} if a.get(k) != b.get(k) and k not in OWN_KEYS)


def check_forkable(source: SearchRunConfig, target: SearchRunConfig, epoch: int) -> None:
    """Raise UserError unless `target` started from `source`'s checkpoint at `epoch` equals `target` run
    from scratch."""
    other = [k for k in fork_differences(source, target) if not k.startswith("tau.")]
    if other:
        raise UserError(f"cannot fork: the configs differ in {', '.join(other)} (only tau.* may differ)")
    for cfg in (source, target):
        if epoch > cfg.search.arch_start_epoch or epoch > cfg.tau.warmup_epochs:
            raise UserError(
                f"cannot fork at epoch {epoch}: it must not pass search.arch_start_epoch "
                f"({cfg.search.arch_start_epoch}) or tau.warmup_epochs ({cfg.tau.warmup_epochs})"
            )


def fork_run(source_dir: Path, target_dir: Path, target: SearchRunConfig, epoch: int) -> bool:
    """Create `target_dir` as the run `target` resumed from `source_dir`'s kept checkpoint of `epoch`;
    False (nothing done) where `target_dir` already holds a checkpoint or a config.yaml.

    Raises:
        UserError: the fork would not be exact, or the source lacks the kept checkpoint or its metrics.
    """
    source_dir, target_dir = Path(source_dir), Path(target_dir)
    if (target_dir / CHECKPOINT).exists() or (target_dir / CONFIG_FILE).exists():
        return False
    source = load_config(SearchRunConfig, source_dir / CONFIG_FILE, [f"out_dir={source_dir}"])
    check_forkable(source, target, epoch)
    kept = source_dir / kept_checkpoint(epoch)
    if not kept.is_file():
        raise UserError(f"cannot fork: {kept} not found (run the source with keep_checkpoints=[{epoch}])")
    state = load_checkpoint(kept)
    if state["epoch"] != epoch or (state.get("a_opt") or {}).get("state"):
        raise UserError(f"cannot fork: {kept} is not a checkpoint from before the first architecture step")
    lines = (source_dir / METRICS_LOG).read_text().splitlines()[:epoch]
    if len(lines) < epoch:
        raise UserError(f"cannot fork: {source_dir / METRICS_LOG} holds fewer than {epoch} epochs")
    state = _retarget(state, target)
    lines = [
        json.dumps({**row, "tau": target.tau.start} if "tau" in row else row)
        for row in map(json.loads, lines)
    ]
    (target_dir / "checkpoints").mkdir(parents=True, exist_ok=True)
    meta = provenance() | {"forked_from": {"run": str(source_dir), "epoch": epoch}}
    atomic_write_text(target_dir / METRICS_LOG, "".join(line + "\n" for line in lines))
    save_checkpoint(target_dir / CHECKPOINT, state)
    # last: a directory with a config.yaml and a checkpoint is a run `nas search --resume` continues
    atomic_write_text(target_dir / CONFIG_FILE, to_yaml(target, meta=meta))
    return True


def _retarget(state: dict[str, Any], target: SearchRunConfig) -> dict[str, Any]:
    """The checkpoint as the target's own warm-up would have written it (tau, logged in the warm-up's metrics
    too, is held at its start value there): tau at its start value, a fresh
    learned temperature, and the (never stepped) architecture optimiser rebuilt by the target."""
    state = dict(state, tau=float(target.tau.start), a_opt=None)
    learned = target.tau.schedule == "learned"
    state["learned_tau"] = (
        LearnedTemperature(target.tau.start, target.tau.end).theta.detach() if learned else None
    )
    return state


def fork_ablation(spec: Any, out: Path, epoch: int, others: list[Path] = ()) -> list[tuple[str, str]]:
    """Fork every search point of an ablation that has not started from the first run (this ablation's,
    in plan order, then those of the `others` ablation directories) that kept its checkpoint of `epoch`
    and that it can be forked from exactly; [(target id, source run directory)]."""
    from nas.ablate.spec import plan, search_config, searches

    runs = searches(plan(spec))
    candidates = [out / "runs" / run.id for run in runs] + [
        d for o in others for d in sorted((o / "runs").iterdir())
    ]
    sources = {d: load_config(SearchRunConfig, d / CONFIG_FILE, [f"out_dir={d}"])
               for d in candidates if (d / kept_checkpoint(epoch)).is_file()}  # fmt: skip
    forked = []
    for run in runs:
        target_dir, target = out / "runs" / run.id, search_config(spec, run, out)
        if target_dir in sources or (target_dir / CHECKPOINT).exists() or (target_dir / CONFIG_FILE).exists():
            continue
        for source_dir, source in sources.items():
            try:
                check_forkable(source, target, epoch)
            except UserError:
                continue
            if fork_run(source_dir, target_dir, target, epoch):
                forked.append((run.id, str(source_dir)))
            break
    return forked
