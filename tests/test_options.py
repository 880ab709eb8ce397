"""Typed options: every YAML key has its field, values are converted once, bad ones refused naming the option."""
import dataclasses

import pytest
from omegaconf import OmegaConf

from pipeline.config import resolve_config
from pipeline.errors import PipelineError
from pipeline.options import Options, TrainOptions, build
from tests.conftest import compose


@pytest.mark.parametrize("preset", ["demo_sudoku", "demo_arc", "arc_agi_1", "adapt_arc_agi_2", "none"])
def test_every_section_of_every_preset_builds(preset):
    task = "arc" if "arc" in preset else "sudoku"
    cfg = compose(f"task={task}", f"preset={preset}")
    options = Options.of(cfg)
    for section in dataclasses.fields(Options):
        yaml_keys = set(OmegaConf.to_container(cfg[section.name]))
        assert yaml_keys == {f.name for f in dataclasses.fields(getattr(options, section.name))}, section.name


def test_values_are_typed():
    options = Options.of(compose("train.lr=1", "eval.select=q_halt", "solve.puzzle=5300", "train.ray_log_level=info",
                                 "eval_arc.pass_ks=[2,1]"))
    assert options.train.lr == 1.0 and isinstance(options.train.lr, float)
    assert options.eval.select == ("q_halt",)
    assert options.solve.puzzle == "5300"                        # Hydra reads digits as a number
    assert options.train.ray_log_level == "INFO"
    assert options.eval_arc.pass_ks == (2, 1)
    with pytest.raises(dataclasses.FrozenInstanceError):
        options.train.steps = 3


@pytest.mark.parametrize("override, message", [
    ("train.steps=ten", "train.steps='ten': expected an integer"),
    ("train.steps=0", "train.steps=0: must be at least 1"),
    ("train.ema=maybe", "train.ema='maybe': expected true or false"),
    ("train.resume=sometimes", "train.resume='sometimes': expected true or false or auto"),
    ("train.placement_strategy=FAR", "train.placement_strategy='FAR': not one of PACK, SPREAD, STRICT_SPREAD"),
    ("train.global_batch_size=10", "train.global_batch_size=10 must be a multiple of train.num_workers=4"),
    ("eval.select=[vote,best]", r"eval.select\[1\]='best': not one of vote, q_halt, first_halt"),
    ("eval.noise=-0.5", "eval.noise=-0.5: must be at least 0"),
    ("eval_arc.pass_ks=[0,2]", r"eval_arc.pass_ks=\[0, 2\]: need positive integers"),
    ("adapt.embedding_only_fraction=1.5", r"adapt.embedding_only_fraction=1.5: must be in \[0, 1\]"),
])
def test_a_bad_value_is_refused_naming_the_option_the_value_and_what_is_allowed(override, message):
    extra = ["train.num_workers=4"] if "global_batch_size" in override else []
    with pytest.raises(PipelineError, match=message):
        resolve_config(compose(override, *extra))      # checked with the config, before any stage starts


def test_a_stage_section_is_named_in_its_errors():
    values = OmegaConf.to_container(compose().train)
    with pytest.raises(PipelineError, match="finetune.lr='fast': expected a number"):
        build(TrainOptions, {**values, "lr": "fast"}, "finetune")
    with pytest.raises(PipelineError, match="finetune.warmup: no such option"):
        build(TrainOptions, {**values, "warmup": 3}, "finetune")


@pytest.mark.parametrize("overrides, message", [
    (["task=sudoku", "task.size=5"], r"task.size=5: choose one of \[4, 6, 9\]"),
    (["task=sudoku", "task.size=4", "task.max_blanks=17"], "task.max_blanks=17: must be null or in 1..16"),
    (["task=maze", "task.style=spiral"], "task.style='spiral': not one of"),
    (["task=maze", "task.num_aug=8"], "task.num_aug=8: must be 0..7 dihedral copies"),
    (["task=arc", "task.test_subset=concept2"], "task.test_subset=concept2 is not one of task.subsets="),
    (["task=arc", "task.canvas=31"], "task.canvas=31: must be in 1..30"),
])
def test_each_task_checks_its_own_section(overrides, message):
    with pytest.raises(PipelineError, match=message):
        resolve_config(compose(*overrides))
