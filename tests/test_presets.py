"""Every preset composes, names its command, and builds the model the paper describes (no training)."""
from pathlib import Path

import pytest

from pipeline.checkpoints.checkpoint import model_config
from pipeline.errors import PipelineError
from pipeline.run import run_stage
from tests.conftest import compose
from trm import TRM

PRESETS = Path(__file__).resolve().parents[1] / "pipeline" / "conf" / "preset"
DATA_FIELDS = {"sudoku": (81, 11), "maze": (900, 6), "arc": (900, 12)}
# Trainable network parameters of the reference (trm_reference.md §2.7), puzzle table excluded.
PAPER_PARAMS = {"sudoku_extreme_mlp": 5_028_866, "sudoku_extreme_att": 6_828_034,
                "maze_hard": 6_822_914, "arc_agi_1": 6_829_058, "arc_agi_2": 6_829_058}


@pytest.mark.parametrize("name", sorted(p.stem for p in PRESETS.glob("*.yaml")))
def test_preset_composes_and_starts_with_its_command(name):
    lines = (PRESETS / f"{name}.yaml").read_text().splitlines()
    assert lines[0] == "# @package _global_"
    assert "python -m pipeline.run" in lines[1] and (name == "none" or name.startswith("demo_")
                                                       or f"preset={name}" in lines[1])
    cfg = compose(f"preset={name}")
    assert cfg.task.name in DATA_FIELDS
    assert cfg.run_name == (None if name == "none" else name)       # its own default folders


@pytest.mark.parametrize("name, params", sorted(PAPER_PARAMS.items()))
def test_paper_preset_builds_the_paper_model(name, params):
    cfg = compose(f"preset={name}")
    seq_len, vocab = DATA_FIELDS[cfg.task.name]
    manifest = {"seq_len": seq_len, "vocab_size": vocab, "num_puzzle_identifiers": 1}
    model = TRM(model_config(cfg.model, manifest), verbose=False)
    network, _ = model.num_params()
    assert network == params
    assert cfg.train.global_batch_size == 768 and cfg.train.ema and cfg.train.steps > 60_000


def test_arc_agi_2_refuses_training2_with_arc1_evaluation(ray_local, tmp_path, shared_data):
    """training2 holds most ARC-AGI-1 evaluation tasks: scoring ARC-1 evaluation after it is leakage."""
    cfg = compose("preset=arc_agi_2", "stage=augment", "task.subsets=[training2,evaluation]",
                  "task.test_subset=evaluation", "task.num_aug=1", "task.task_ids=[00576224]",
                  f"task.source={shared_data / 'arc' / 'arc-agi'}", f"data_dir={tmp_path}")
    with pytest.raises(PipelineError, match="task.allow_overlap=true"):
        run_stage(cfg)
    assert not (tmp_path / "dataset.json").exists()


def test_arc_agi_1_passes_the_leakage_guard_on_the_real_data(ray_local, tmp_path, shared_data):
    cfg = compose("preset=arc_agi_1", "stage=augment", "task.num_aug=0", "ray.dashboard=false",
                  f"task.source={shared_data / 'arc' / 'arc-agi'}", f"data_dir={tmp_path}")
    manifest = run_stage(cfg)
    assert manifest["splits"]["test"]["examples"] == 419 - 0   # every ARC-1 evaluation test input
