"""Unknown option names are refused with the closest valid one, `+` or not; a missing task.source before Ray."""
import pytest

from pipeline.config import resolve_config
from pipeline.errors import PipelineError
from pipeline.options_check import check_command_line, check_task_source
from tests.conftest import compose


@pytest.mark.parametrize("args, message", [
    (["train.step=300"], "train.step: no such option; did you mean train.steps?"),
    (["+train.step=300"], "train.step: no such option; did you mean train.steps?"),
    (["++eval.tt=8"], "eval.tt: no such option; did you mean eval.tta?"),
    (["trian.steps=3"], "trian.steps: no such option; did you mean train.steps?"),
    (["task=arc", "task.canvass=6"], "task.canvass: no such option; did you mean task.canvas?"),
    (["stagee=eval"], "stagee: no such option; did you mean stage?"),
])
def test_unknown_option_refused_with_closest_name(args, message):
    with pytest.raises(PipelineError, match=message.replace("?", r"\?")):
        check_command_line(args)


@pytest.mark.parametrize("args", [
    ["train.steps=3", "task=maze", "task.style=random", "eval.select=[vote,q_halt]"],
    ["task=arc", "task.canvas=6", "preset=none", "+model.seq_len=36"],   # a model field TRMConfig takes
    ["hydra.verbose=true", "hydra/job_logging=none", "--cfg", "job"],
    ["task=sudok"],                                                        # Hydra names the valid choices
])
def test_valid_options_pass(args):
    check_command_line(args)


def test_missing_task_source_refused_before_ray(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(PipelineError, match="task.source=nope/tasks: no such file, folder or file prefix"):
        check_task_source(resolve_config(compose("task=arc", "stage=augment", "task.source=nope/tasks")))
    (tmp_path / "arc_training_challenges.json").write_text("{}")     # an ARC Kaggle prefix exists
    check_task_source(resolve_config(compose("task=arc", "stage=augment", "task.source=arc")))
    check_task_source(resolve_config(compose("stage=eval", "task.source=nope")))   # eval does not read it
