"""Config keys that do nothing for this command, space, sampler or dataset: one warning line each.

The schemas refuse a key that no command has (`train.epochs` in a search config is an unknown key). A
key the schema has can still be idle: `data.root` when the data is generated, `tau.*` for a sampler that
ignores the temperature, `data.train_portion` when retraining. `IDLE` lists every such case in one place;
`warn_idle` says, once per key, which keys of a run's config are idle and why, so a value that changes
nothing is not mistaken for one that does. Only keys set away from their default are named (the value
a run would have anyway is not news), unless a row says otherwise (`quiet`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from nas.arch.space import SPACES, SearchSpace
from nas.config import SearchRunConfig, TrainRunConfig, flat, to_dict
from nas.core.errors import warn
from nas.sampling import SAMPLERS

DOWNLOADS = ("cifar10", "cifar100")  # the datasets `data.download` fetches (torchvision)


COMMANDS = {"search": SearchRunConfig, "train": TrainRunConfig}


@dataclass(frozen=True)
class Idle:
    """`keys` do nothing for `command` (None: either) when `when(cfg, space)` holds (`space`: the searched
    space, or the retrained genotype's); `why` ends the warning, formatted with `cfg` and `space`. A key is
    named only if its value is not `quiet` (default: its schema default). `example`: overrides under which
    the row holds (documentation, and what tests/test_config_keys.py checks every row with)."""

    keys: tuple[str, ...]
    command: str | None
    when: Callable[[Any, SearchSpace], bool]
    why: str
    example: tuple[str, ...]
    quiet: Callable[[Any], bool] | None = None


def _always(cfg: Any, space: SearchSpace) -> bool:
    return True


def _constant(tau: Any) -> bool:
    return tau.schedule == "constant" and tau.start == tau.end


def _ignores(key: str) -> Callable[[Any, SearchSpace], bool]:
    """The space says its network has no use for `key` (`SearchSpace.idle_keys`, e.g. NB201's)."""
    return lambda cfg, space: key in getattr(space, "idle_keys", ())


_SYNTHETIC = tuple(
    f"data.synthetic.{k}" for k in ("train_size", "test_size", "image_size", "channels", "classes")
)
_TAU = tuple(
    f"tau.{k}"
    for k in ("schedule", "start", "end", "per", "warmup_epochs", "rate", "step_every", "step_factor")
)
_NO_AUX = "for space {space.name} (its network has no auxiliary head)"

# fmt: off
IDLE: tuple[Idle, ...] = (
    # data
    Idle(("data.root",), None, lambda c, s: c.data.name == "synthetic",
         "with data.name=synthetic (generated images)", ("data.name=synthetic",)),
    Idle(("data.download",), None, lambda c, s: c.data.name not in DOWNLOADS,
         "with data.name={cfg.data.name} (only cifar10 and cifar100 are downloaded)", ("data.name=synthetic",)),
    Idle(_SYNTHETIC, None, lambda c, s: c.data.name != "synthetic", "with data.name={cfg.data.name}",
         ("data.name=cifar10",)),
    Idle(("data.image_size", "data.cache_dir"), None, lambda c, s: c.data.name != "image_folder",
         "with data.name={cfg.data.name} (image folders only)", ("data.name=cifar10",)),
    Idle(("data.stream_above_gb", "data.workers"), "search", _always,
         "for nas search (it never streams; nas train streams image folders)", ()),
    Idle(("data.stream_above_gb", "data.workers"), "train", lambda c, s: c.data.name != "image_folder",
         "with data.name={cfg.data.name} (nas train streams image folders only)", ("data.name=cifar10",)),
    Idle(("data.train_portion", "data.split_seed"), "train", _always,
         "for nas train (it trains on the whole training set; the split is the search's)", ()),
    # run
    Idle(("progress_every",), "train", _always, "for nas train (it paces the search's progress bar)", ()),
    Idle(("progress_every",), "search", lambda c, s: not c.progress, "with progress=false (no progress bar)",
         ("progress=false",)),
    # search (the first row that names a key wins: a sampler without tau before the schedule's own keys)
    # (a constant tau, as the DARTS presets set, is how a config says "no temperature": not named)
    Idle(_TAU, "search", lambda c, s: not SAMPLERS.get(c.sampler.name).uses_tau and not _constant(c.tau),
         "with sampler.name={cfg.sampler.name} (it uses no temperature)", ("sampler.name=softmax",)),
    Idle(("tau.rate",), "search", lambda c, s: c.tau.schedule != "exponential",
         "with tau.schedule={cfg.tau.schedule} (exponential only)", ("sampler.name=gdas", "tau.schedule=linear")),
    Idle(("tau.step_every", "tau.step_factor"), "search", lambda c, s: c.tau.schedule != "step",
         "with tau.schedule={cfg.tau.schedule} (step only)", ("sampler.name=gdas", "tau.schedule=linear")),
    Idle(("search.weight_sample",), "search", lambda c, s: SAMPLERS.get(c.sampler.name).one_hot,
         "with sampler.name={cfg.sampler.name} (its weight step trains one-hot paths anyway)",
         ("sampler.name=gumbel_st",)),
    Idle(("search.unrolled_xi",), "search", lambda c, s: c.search.bilevel != "second_order",
         "with search.bilevel={cfg.search.bilevel} (second order only)", ("search.bilevel=first_order",)),
    Idle(("ground_truth.path", "ground_truth.epochs", "ground_truth.trial_seed"), "search",
         lambda c, s: getattr(s, "ground_truth", None) is None, "for space {space.name} (it has no ground truth)",
         ("space.name=darts",)),
    # train
    Idle(("train.lr_decay_rate", "train.lr_decay_epochs"), "train", lambda c, s: c.train.lr_schedule != "step",
         "with train.lr_schedule={cfg.train.lr_schedule} (step only)", ("train.lr_schedule=cosine",)),
    Idle(("train.lr_min",), "train", lambda c, s: c.train.lr_schedule != "cosine",
         "with train.lr_schedule={cfg.train.lr_schedule} (cosine only)", ("train.lr_schedule=step",)),
    Idle(("train.ema_decay",), "train", lambda c, s: not c.train.ema, "with train.ema=false", ("train.ema=false",)),
    Idle(("model.auxiliary_weight",), "train", lambda c, s: not c.model.auxiliary, "with model.auxiliary=false",
         ("model.auxiliary=false",)),
    Idle(("model.auxiliary",), "train", _ignores("model.auxiliary"), _NO_AUX, ("space.name=nb201",),
         quiet=lambda value: value is False),
    Idle(("model.auxiliary_weight",), "train", _ignores("model.auxiliary"), _NO_AUX, ("space.name=nb201",)),
    Idle(("model.drop_path_prob",), "train", _ignores("model.drop_path_prob"),
         "for space {space.name} (its network has no drop path)", ("space.name=nb201",),
         quiet=lambda value: value == 0),
)
# fmt: on


def _defaults(cfg: Any) -> dict[str, Any]:
    """The flat default values of `cfg`'s schema (a search's `space` and `sampler` sections: the chosen ones')."""
    if isinstance(cfg, SearchRunConfig):
        space, sampler = SPACES.get(cfg.space.name), SAMPLERS.get(cfg.sampler.name)
        default = SearchRunConfig(
            space=space.Options(name=cfg.space.name), sampler=sampler.Options(name=cfg.sampler.name)
        )
    else:
        default = type(cfg)()
    return flat(to_dict(default))


def idle_keys(cfg: Any, space: SearchSpace) -> dict[str, str]:
    """{key: why} for every key of `cfg` that `IDLE` says does nothing here and that is set (see `Idle`)."""
    values, defaults = flat(to_dict(cfg)), _defaults(cfg)
    out: dict[str, str] = {}
    for row in IDLE:
        command = row.command is None or isinstance(cfg, COMMANDS[row.command])
        if not (command and row.when(cfg, space)):
            continue
        for key in row.keys:
            if key not in values or key in out:
                continue
            quiet = row.quiet(values[key]) if row.quiet else values[key] == defaults.get(key)
            if not quiet:
                out[key] = row.why.format(cfg=cfg, space=space)
    return out


def warn_idle(cfg: Any, space: SearchSpace) -> None:
    """One warning line per idle key (`idle_keys`): `data.root=/x does nothing with data.name=synthetic ...`."""
    values = flat(to_dict(cfg))
    for key, why in idle_keys(cfg, space).items():
        warn(f"{key}={values[key]} does nothing {why}")
