"""Config keys that are not what they seem: renamed keys still load under their old name with one
warning line (old configs, ablation files, saved runs that resume)."""

from pathlib import Path

import pytest

from nas.config import RENAMED_KEYS, SearchRunConfig, TrainRunConfig, load_config, to_yaml
from nas.resume import resume_config

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
