"""Each search space owns its `space` config section: its keys, defaults and ranges (its `Options`)."""

from __future__ import annotations

import json
import random

import pytest
from omegaconf import OmegaConf

from nas.arch.space import SPACES, ModelConfig, model_options, space_options
from nas.cli import main
from nas.config import SamplerConfig, SearchRunConfig, SpaceConfig, load_config, to_dict, to_yaml
from nas.core.errors import UserError
from nas.core.rundir import CONFIG_FILE, GENOTYPE_FILE
from nas.sampling import base as sampling_base
from tests.conftest import ROOT


def _old_style(cfg: SearchRunConfig, **meta) -> str:
    """The config.yaml a run wrote while one DARTS-shaped schema served every space: with `_meta`, and
    `space.nodes: 4` and `space.stem_multiplier: 3` whatever the space."""
    tree = {"_meta": meta or {"command": "search"}, **to_dict(cfg)}
    tree["space"] = {**tree["space"], "nodes": 4, "stem_multiplier": 3}
    return OmegaConf.to_yaml(OmegaConf.create(tree))


def test_each_space_types_its_section_with_its_own_defaults():
    nb201 = load_config(SearchRunConfig, None, ["space.name=nb201"]).space
    assert isinstance(nb201, SPACES.get("nb201").Options)
    assert (nb201.init_channels, nb201.layers) == (16, 5)  # NAS-Bench-201's network, from its schema
    assert set(to_dict(nb201)) == {"name", "init_channels", "layers"}
    darts = load_config(SearchRunConfig).space  # darts: the default space
    assert isinstance(darts, SPACES.get("darts").Options)
    assert to_dict(darts) == dict(name="darts", init_channels=16, layers=8, nodes=4, stem_multiplier=3,
                                  partial_channels=1, edge_norm=False)  # fmt: skip


def test_a_file_naming_a_space_types_the_section_and_an_override_can_switch_it(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("space: {name: nb201, init_channels: 8}\n")
    cfg = load_config(SearchRunConfig, path)
    assert (cfg.space.name, cfg.space.init_channels, cfg.space.layers) == ("nb201", 8, 5)
    cfg = load_config(SearchRunConfig, path, ["space.name=darts", "space.nodes=2"])
    assert (cfg.space.name, cfg.space.init_channels, cfg.space.layers, cfg.space.nodes) == ("darts", 8, 8, 2)


@pytest.mark.parametrize("key", ["nodes", "stem_multiplier"])
def test_a_key_of_another_space_is_refused_naming_it(tmp_path, key):
    with pytest.raises(
        UserError,
        match=rf"^bad overrides: space\.{key}: unknown key \(space nb201 takes: name, init_channels, layers\)$",
    ):
        load_config(SearchRunConfig, None, ["space.name=nb201", f"space.{key}=4"])
    path = tmp_path / "c.yaml"  # a hand-written file (no `_meta`) gets no legacy leniency
    path.write_text(f"space: {{name: nb201, {key}: 4}}\n")
    with pytest.raises(
        UserError, match=rf"space\.{key}: unknown key \(space nb201 takes: name, init_channels, layers\)$"
    ):
        load_config(SearchRunConfig, path)


def test_an_unknown_space_is_refused_at_load(tmp_path):
    with pytest.raises(UserError, match=r"^unknown search space 'x' \(known: darts, nb201\)$"):
        load_config(SearchRunConfig, None, ["space.name=x"])
    path = tmp_path / "c.yaml"
    path.write_text("space: {name: bogus}\n")
    with pytest.raises(UserError, match=r"^unknown search space 'bogus' \(known: darts, nb201\)$"):
        load_config(SearchRunConfig, path)


def test_an_old_saved_run_config_drops_the_legacy_keys_its_space_lacks(tmp_path):
    expected = load_config(SearchRunConfig, None, ["space.name=nb201", "space.layers=1"])
    path = tmp_path / CONFIG_FILE
    path.write_text(_old_style(expected))
    assert "nodes: 4" in path.read_text() and "_meta:" in path.read_text()
    assert to_dict(load_config(SearchRunConfig, path)) == to_dict(expected)
    # only the saved file's legacy keys are dropped, not an override's
    with pytest.raises(UserError, match=r"space\.nodes: unknown key \(space nb201 takes"):
        load_config(SearchRunConfig, path, ["space.nodes=4"])


def test_only_the_legacy_keys_are_dropped_and_only_where_the_space_lacks_them(tmp_path):
    path = tmp_path / CONFIG_FILE
    saved = OmegaConf.create(
        {"_meta": {}, **to_dict(load_config(SearchRunConfig, None, ["space.name=nb201"]))}
    )
    saved.space.bogus = 1
    path.write_text(OmegaConf.to_yaml(saved))
    with pytest.raises(UserError, match=r"space\.bogus: unknown key"):
        load_config(SearchRunConfig, path)
    darts = OmegaConf.create({"_meta": {}, **to_dict(load_config(SearchRunConfig, None, ["space.nodes=2"]))})
    path.write_text(OmegaConf.to_yaml(darts))
    assert load_config(SearchRunConfig, path).space.nodes == 2  # a key the space has is kept


def test_an_old_nb201_run_directory_still_resumes_derives_and_ranks(tiny_search, tmp_path, capsys):
    run = tmp_path / "run"
    tiny = ["--config", str(ROOT / "configs/search/tiny_synthetic.yaml"), *tiny_search, "search.epochs=1"]
    assert main(["search", *tiny, "space.name=nb201", "space.layers=1", f"out_dir={run}"]) == 0
    (run / CONFIG_FILE).write_text(_old_style(load_config(SearchRunConfig, run / CONFIG_FILE)))
    assert main(["derive", str(run)]) == 0
    assert json.loads((run / GENOTYPE_FILE).read_text())["space"] == "nb201"
    assert main(["rank", str(run), "zoo:NB201_RESNET"]) == 0
    assert main(["search", "--resume", str(run), "search.epochs=2"]) == 0
    cfg = load_config(SearchRunConfig, run / CONFIG_FILE)
    assert cfg.search.epochs == 2 and "nodes" not in to_dict(cfg.space)
    capsys.readouterr()


def test_a_space_takes_a_plain_space_config_with_its_defaults_for_the_rest():
    darts = SPACES.get("darts")
    own = space_options(darts, SpaceConfig(init_channels=4, layers=3))
    assert isinstance(own, darts.Options) and (own.init_channels, own.layers, own.nodes) == (4, 3, 4)
    genotype = darts.sample_random(random.Random(0), SpaceConfig())
    assert len(genotype.cells["normal"].nodes) == 4


def test_sampler_config_lives_with_the_samplers_and_is_re_exported():
    assert SamplerConfig is sampling_base.SamplerConfig
    assert "sampler:\n  name: gdas" in to_yaml(SearchRunConfig())


@pytest.mark.parametrize("name", SPACES.names())
def test_model_sizes_left_null_are_the_spaces_standard_network(name):
    space = SPACES.get(name)
    for network, standard in space.networks.items():
        filled = model_options(space, ModelConfig(network=network))
        assert (filled.init_channels, filled.layers) == (standard["init_channels"], standard["layers"])
        mixed = model_options(space, ModelConfig(network=network, layers=3))  # a size given is kept
        assert (mixed.init_channels, mixed.layers) == (standard["init_channels"], 3)
    with pytest.raises(UserError, match="has no such network"):
        model_options(space, ModelConfig(network="no-such-network"))


def test_a_retrain_config_without_sizes_builds_the_genotypes_own_network(tmp_path, capsys):
    """An NB201 cell retrained from a config that sets no model sizes gets NAS-Bench-201's network (16
    channels x 5 cells per stage: the ResNet cell's 559,386 parameters), recorded in config.yaml, not
    DARTS' 36 x 20."""
    path = tmp_path / "t.yaml"
    path.write_text("data: {name: synthetic, batch_size: 8, synthetic: {train_size: 16, test_size: 8}}\n"
                    "model: {auxiliary: false, drop_path_prob: 0.0}\ntrain: {epochs: 1}\n")  # fmt: skip
    out = tmp_path / "run"
    assert main(["train", "--genotype", "zoo:NB201_RESNET", "--config", str(path), f"out_dir={out}"]) == 0
    assert "params 559,386" in capsys.readouterr().out
    saved = OmegaConf.load(out / CONFIG_FILE).model
    assert (saved.init_channels, saved.layers) == (16, 5)
