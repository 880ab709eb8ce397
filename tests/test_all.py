"""`stage=all` end to end on a tiny config, then again: the second run skips every finished stage."""
import json
import os

from pipeline.run import run_stage
from tests.conftest import compose

TINY = ("stage=all", "task.num_train=40", "task.num_test=16", "task.num_aug=1", "model.hidden_size=16",
        "model.num_heads=1", "model.halt_max_steps=2", "train.steps=4", "train.global_batch_size=8",
        "train.checkpoint_every=2", "train.eval_every=2", "train.eval_examples=16", "eval.render=1")


def test_all_runs_every_stage_then_skips_them(ray_local, tmp_path, capsys):
    paths = (f"data_dir={tmp_path / 'data'}", f"run_dir={tmp_path / 'run'}")
    first = run_stage(compose(*TINY, *paths))
    assert all(seconds is not None for seconds in first["timings"].values())
    metrics = json.loads((tmp_path / "run" / "eval" / "metrics.json").read_text())
    assert len(metrics["exact_accuracy_per_step"]) == 2
    assert (tmp_path / "run" / "curves.png").exists() and list((tmp_path / "run" / "eval").rglob("*.png"))
    summary = capsys.readouterr().out
    assert "after each supervision step: 1:" in summary and "4 steps" in summary
    assert f"puzzle PNGs (answer after each step): {tmp_path / 'run' / 'eval' / 'render'}" in summary

    # Credentials live in the environment only: no manifest, config, checkpoint or log holds them.
    secrets = [os.environ["AWS_ACCESS_KEY_ID"].encode(), os.environ["AWS_SECRET_ACCESS_KEY"].encode()]
    for file in (p for p in tmp_path.rglob("*") if p.is_file()):
        content = file.read_bytes()
        assert not any(secret in content for secret in secrets), file

    second = run_stage(compose(*TINY, *paths))
    assert second["timings"] == {"augment": None, "train": None, "eval": None}
    assert "skipped (already complete)" in capsys.readouterr().out
