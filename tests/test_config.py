"""The Hydra app composes, presets follow the task, and paths are made absolute."""
import os

import pytest
from omegaconf import OmegaConf

from pipeline.config import command_line, redact, redact_text, resolve_config, saved_config
from pipeline.errors import PipelineError
from tests.conftest import compose


def test_default_is_the_sudoku_demo():
    cfg = compose()
    assert cfg.stage == "all"
    assert cfg.task.name == "sudoku"


@pytest.mark.parametrize("task", ["sudoku", "maze", "arc"])
def test_task_choice_selects_its_demo_preset(task):
    assert compose(f"task={task}").task.name == task


def test_paths_default_under_outputs_by_preset_and_become_absolute(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cfg = resolve_config(compose("task=maze"))                    # the maze demo preset
    assert cfg.data_dir == str(tmp_path / "outputs" / "demo_maze" / "data")
    assert cfg.run_dir == str(tmp_path / "outputs" / "demo_maze" / "run")
    # A paper preset after the demo never finds the demo's folders; no preset: the task's name.
    assert resolve_config(compose("preset=sudoku_extreme_mlp")).data_dir == str(
        tmp_path / "outputs" / "sudoku_extreme_mlp" / "data")
    assert resolve_config(compose("task=maze", "preset=none")).run_dir == str(tmp_path / "outputs" / "maze" / "run")
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


@pytest.mark.parametrize("text, secret", [
    ("python -m pipeline.run +aws.secret_access_key=wJalrXUtnFEMIK7MDENGbPxRfiCYEXAMPLEKEY", "wJalrXUtnFEMI"),
    ("task.source=s3://AKIAIOSFODNN7EXAMPLE@bucket/x", "AKIAIOSFODNN7EXAMPLE"),
    ("task.source=https://alice:hunter2pass@example.org/tasks.json", "hunter2pass"),
    ("+hf.auth=hf_abcdefghijklmnopqrstuvwxyz0123", "hf_abcdefghij"),
    ("logger=wandb +w.k=local-0123456789abcdef0123456789abcdef01234567", "local-0123"),
])
def test_secret_values_are_redacted_wherever_they_appear(text, secret):
    assert secret not in redact_text(text) and "<redacted>" in redact_text(text)
    assert secret not in str(redact({"command": text, "nested": [text]}))


def test_values_of_secret_environment_variables_are_redacted(monkeypatch):
    monkeypatch.setenv("MY_SERVICE_TOKEN", "s3cr3t-value-from-env")
    assert redact_text("data_dir=s3://b/s3cr3t-value-from-env/x") == "data_dir=s3://b/<redacted>/x"
    assert redact_text("data_dir=s3://bucket/plain checkpoint=best") == "data_dir=s3://bucket/plain checkpoint=best"


def test_command_line_is_redacted(monkeypatch):
    monkeypatch.setattr("sys.argv", ["run.py", "stage=augment", "+x.password=opensesame123"])
    assert command_line() == "python -m pipeline.run stage=augment +x.password=<redacted>"


def test_relative_outputs_are_refused_inside_a_ray_job(tmp_path, monkeypatch):
    package = tmp_path / "session_latest" / "runtime_resources" / "working_dir_files" / "_ray_pkg_0123abcd"
    package.mkdir(parents=True)
    monkeypatch.chdir(package)
    with pytest.raises(PipelineError, match=r"data_dir is not set .*Ray job.*pass data_dir= as an s3:// URL"):
        resolve_config(compose("stage=augment"))
    assert resolve_config(compose("stage=augment", "data_dir=s3://bucket/data")).data_dir == "s3://bucket/data"
    with pytest.raises(PipelineError, match="run_dir is the relative path 'run'"):
        resolve_config(compose("stage=train", f"data_dir={tmp_path}/data", "run_dir=run"))
    cfg = resolve_config(compose("stage=train", f"data_dir={tmp_path}/data", "run_dir=s3://bucket/run"))
    assert cfg.data_dir == f"{tmp_path}/data"


def test_relative_outputs_are_fine_outside_a_ray_job(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert resolve_config(compose("stage=augment")).data_dir.startswith(str(tmp_path))


@pytest.mark.parametrize("stage", ["train", "all", "adapt"])
def test_training_stages_keep_the_dashboard(stage):
    """Ray Train's placement-group cleaner warns every second without the State API the dashboard serves."""
    assert resolve_config(compose(f"stage={stage}", "ray.dashboard=false")).ray.dashboard is True
    assert resolve_config(compose("stage=augment", "ray.dashboard=false")).ray.dashboard is False
