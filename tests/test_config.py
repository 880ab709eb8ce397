"""The Hydra app composes, presets follow the task, and paths are made absolute."""
import os

import pytest
from omegaconf import OmegaConf

from pipeline.config import redact, resolve_config, saved_config
from tests.conftest import compose


def test_default_is_the_sudoku_demo():
    cfg = compose()
    assert cfg.stage == "all"
    assert cfg.task.name == "sudoku"


@pytest.mark.parametrize("task", ["sudoku", "maze", "arc"])
def test_task_choice_selects_its_demo_preset(task):
    assert compose(f"task={task}").task.name == task


def test_paths_default_under_outputs_and_become_absolute(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cfg = resolve_config(compose("task=maze"))
    assert cfg.data_dir == str(tmp_path / "outputs" / "maze" / "data")
    assert cfg.run_dir == str(tmp_path / "outputs" / "maze" / "run")
    cfg = resolve_config(compose("data_dir=rel/data", "run_dir=s3://bucket/run/"))
    assert cfg.data_dir == os.path.join(str(tmp_path), "rel", "data")
    assert cfg.run_dir == "s3://bucket/run"


def test_unknown_option_is_named():
    with pytest.raises(Exception, match="not_an_option"):
        compose("task.not_an_option=1")


def test_saved_config_has_no_secrets():
    cfg = OmegaConf.create({"a": {"aws_secret_access_key": "x", "wandb_api_key": "y", "ok": 1}})
    assert redact(OmegaConf.to_container(cfg)) == {"a": {"aws_secret_access_key": "<redacted>",
                                                         "wandb_api_key": "<redacted>", "ok": 1}}
    assert "secret" not in str(saved_config(compose())).lower()
