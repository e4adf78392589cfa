"""Config keys that are not what they seem: renamed keys still load under their old name with one
warning line (old configs, ablation files, saved runs that resume); keys that do nothing for the command,
space, sampler or dataset are named in one warning line each (`nas.config.idle.IDLE`, every row tested)."""

from pathlib import Path

import pytest

from nas.arch.space import SPACES
from nas.cli import main
from nas.config import RENAMED_KEYS, SearchRunConfig, TrainRunConfig, flat, load_config, to_dict, to_yaml
from nas.config.idle import COMMANDS, IDLE, Idle, idle_keys, warn_idle
from nas.run.resume import resume_config
from tests.conftest import ROOT, TINY_SEARCH

TINY = str(ROOT / "configs/search/tiny_synthetic.yaml")

OLD, NEW = "log_every", "progress_every"


def _warnings(capsys) -> list[str]:
    return [line for line in capsys.readouterr().err.splitlines() if line.startswith("nas: warning:")]


@pytest.mark.parametrize("old, new", list(RENAMED_KEYS.items()))
@pytest.mark.parametrize("schema", [SearchRunConfig, TrainRunConfig])
def test_a_renamed_key_is_read_under_its_new_name_with_one_warning(tmp_path, capsys, schema, old, new):
    default = getattr(schema(), new)
    assert getattr(load_config(schema, None, [f"{old}={default + 7}"]), new) == default + 7
    (tmp_path / "old.yaml").write_text(f"{old}: {default + 3}\n")
    assert getattr(load_config(schema, tmp_path / "old.yaml"), new) == default + 3
    said = _warnings(capsys)  # once a process, where it was first met (an ablation reads many old runs)
    assert len(said) == 1 and f"{old} (in overrides)" in said[0] and f"it is now {new}" in said[0]
    both = load_config(schema, tmp_path / "old.yaml", [f"{new}={default + 5}"])  # the new name wins
    assert getattr(both, new) == default + 5
    with pytest.raises(Exception, match=new):  # the new name is checked as the old one was
        load_config(schema, None, [f"{old}=0"])


def test_a_saved_run_with_the_old_name_resumes_with_one_warning(tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    cfg = load_config(SearchRunConfig, None, [f"out_dir={run}", f"{NEW}=9"])
    saved = to_yaml(cfg, meta={"git": "old"}).replace(f"{NEW}:", f"{OLD}:")
    assert f"{OLD}: 9" in saved
    (run / "config.yaml").write_text(saved)
    resumed, changed = resume_config(SearchRunConfig, Path(run), ["search.epochs=3"])
    assert getattr(resumed, NEW) == 9 and changed == {"search.epochs": [cfg.search.epochs, 3]}
    assert len(_warnings(capsys)) == 1  # read twice by the resume, said once


# --- keys that do nothing here: one warning line each (nas.config.idle.IDLE) ---------------------------------------

VALUES = {  # a value other than the default (and valid) for every key the table names
    "data.root": "/elsewhere",
    "data.download": True,
    "data.synthetic.train_size": 100,
    "data.synthetic.test_size": 100,
    "data.synthetic.image_size": 8,
    "data.synthetic.channels": 1,
    "data.synthetic.classes": 3,
    "data.image_size": 24,
    "data.cache_dir": "/tmp/elsewhere",
    "data.stream_above_gb": 2.0,
    "data.workers": 2,
    "data.train_portion": 0.8,
    "data.split_seed": 3,
    "progress_every": 7,
    "search.weight_sample": "one_hot",
    "tau.schedule": "exponential",
    "tau.start": 5.0,
    "tau.end": 0.5,
    "tau.per": "step",
    "tau.warmup_epochs": 2,
    "tau.rate": 0.5,
    "tau.step_every": 5,
    "tau.step_factor": 0.7,
    "search.unrolled_xi": 0.01,
    "ground_truth.path": "/elsewhere",
    "ground_truth.epochs": 12,
    "ground_truth.trial_seed": 1,
    "train.lr_decay_rate": 0.5,
    "train.lr_decay_epochs": 2,
    "train.lr_min": 0.001,
    "train.ema_decay": 0.99,
    "model.auxiliary": True,
    "model.auxiliary_weight": 0.3,
    "model.drop_path_prob": 0.1,
}
CASES = [(i, key) for i, row in enumerate(IDLE) for key in row.keys]


def _config(row: Idle, extra: list[str]):
    """The row's example as a config of its command (search, where a row serves either) and the space."""
    schema = COMMANDS[row.command or "search"]
    space = next((o.partition("=")[2] for o in row.example if o.startswith("space.name=")), "darts")
    overrides = [o for o in row.example if schema is SearchRunConfig or not o.startswith("space.")]
    return load_config(schema, None, [*overrides, *extra]), SPACES.get(space)


def test_the_table_names_real_keys_and_each_has_a_test_value():
    keys = {key for row in IDLE for key in row.keys}
    assert keys == set(VALUES)
    every = set(flat(to_dict(SearchRunConfig()))) | set(flat(to_dict(TrainRunConfig())))
    assert keys <= every


@pytest.mark.parametrize("index, key", CASES, ids=[f"{i}-{k}" for i, k in CASES])
def test_an_idle_key_set_is_named_in_one_warning_line_and_at_rest_is_not(capsys, index, key):
    row = IDLE[index]
    cfg, space = _config(row, [f"{key}={VALUES[key]}"])
    assert key in idle_keys(cfg, space)
    warn_idle(cfg, space)
    said = [line for line in _warnings(capsys) if f" {key}=" in line]
    assert len(said) == 1 and "does nothing" in said[0], said
    default = getattr(SearchRunConfig() if row.command != "train" else TrainRunConfig(), key.split(".")[0])
    rest = False if key == "model.auxiliary" else 0.0 if key == "model.drop_path_prob" else None
    cfg, space = _config(row, [] if rest is None else [f"{key}={rest}"])  # its default (or a quiet value)
    assert key not in idle_keys(cfg, space), default


@pytest.mark.parametrize("preset", sorted((ROOT / "configs").glob("[st]*/*.yaml")), ids=lambda p: p.stem)
def test_shipped_presets_set_no_idle_key(preset):
    schema = SearchRunConfig if preset.parent.name == "search" else TrainRunConfig
    cfg = load_config(schema, preset)
    space = cfg.space.name if schema is SearchRunConfig else "nb201" if "nb201" in preset.stem else "darts"
    assert idle_keys(cfg, SPACES.get(space)) == {}


def test_a_search_names_an_idle_key_before_its_run_and_a_train_key_is_refused(tmp_path, capsys):
    out = tmp_path / "run"
    assert (
        main(
            [
                "search",
                "--config",
                TINY,
                *TINY_SEARCH,
                "search.epochs=1",
                "data.root=/nowhere",
                f"out_dir={out}",
            ]
        )
        == 0
    )
    said = _warnings(capsys)
    assert said == [
        "nas: warning: data.root=/nowhere does nothing with data.name=synthetic (generated images)"
    ]
    assert (
        main(["search", "--config", TINY, *TINY_SEARCH, "train.epochs=3", f"out_dir={tmp_path / 'x'}"]) == 2
    )
    assert "train: unknown key here: train.* is a section of nas train's config" in capsys.readouterr().err
