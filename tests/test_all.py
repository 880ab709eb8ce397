"""`stage=all` end to end on a tiny config, then again: the second run skips every finished stage, a
changed input reruns the stages it affects, and another dataset config is refused by name."""
import json
import os

import pytest

from pipeline.errors import PipelineError
from pipeline.run import run_stage
from tests.conftest import compose

TINY = ("stage=all", "task.num_train=40", "task.num_val=16", "task.num_test=16", "task.num_aug=1", "model.hidden_size=16",
        "model.num_heads=1", "model.halt_max_steps=2", "train.steps=4", "train.global_batch_size=8",
        "train.checkpoint_every=2", "train.eval_every=2", "train.eval_examples=16", "eval.render=1")


def test_all_runs_every_stage_then_skips_them(ray_local, tmp_path, capsys):
    paths = (f"data_dir={tmp_path / 'data'}", f"run_dir={tmp_path / 'run'}")
    first = run_stage(compose(*TINY, *paths))
    assert all(seconds is not None for seconds in first["timings"].values())
    metrics = json.loads((tmp_path / "run" / "eval" / "plain" / "metrics.json").read_text())
    assert len(metrics["exact_accuracy_per_step"]) == 2
    assert (tmp_path / "run" / "curves.png").exists() and list((tmp_path / "run" / "eval").rglob("*.png"))
    summary = capsys.readouterr().out
    assert "after each supervision step: 1:" in summary and "4 steps" in summary
    assert f"puzzle PNGs (answer after each step): {tmp_path / 'run' / 'eval' / 'plain' / 'render'}" in summary
    assert f"report    open in a browser: {tmp_path / 'run' / 'report.html'}" in summary

    # Credentials live in the environment only: no manifest, config, checkpoint or log holds them.
    secrets = [os.environ["AWS_ACCESS_KEY_ID"].encode(), os.environ["AWS_SECRET_ACCESS_KEY"].encode()]
    for file in (p for p in tmp_path.rglob("*") if p.is_file()):
        content = file.read_bytes()
        assert not any(secret in content for secret in secrets), file

    second = run_stage(compose(*TINY, *paths))
    assert second["timings"] == {"augment": None, "train": None, "eval": None}
    assert "skipped (already complete)" in capsys.readouterr().out

    # More steps: training goes on from step 4 and the new final checkpoint is evaluated; data kept.
    third = run_stage(compose(*TINY, *paths, "train.steps=6"))
    assert third["timings"]["augment"] is None and None not in (third["timings"]["train"], third["timings"]["eval"])
    assert json.loads((tmp_path / "run" / "eval" / "plain" / "metrics.json").read_text())["checkpoint_step"] == 6
    # Another evaluation option: only the evaluation reruns.
    fourth = run_stage(compose(*TINY, *paths, "train.steps=6", "eval.render=0"))
    assert fourth["timings"]["train"] is None and fourth["timings"]["eval"] is not None
    # Another dataset config: refused with the option named, nothing rebuilt or retrained.
    with pytest.raises(PipelineError, match=r"task\.num_train: 40 there, 30 here"):
        run_stage(compose(*TINY, *paths, "task.num_train=30"))


def test_stage_lines_and_the_evaluation_stage_estimate(tmp_path):
    """One line per stage as it starts and ends; the evaluation stage's time left is its examples (test split
    x test-time versions x supervision steps over N_sup) at the last periodic evaluation's seconds per example."""
    from pipeline.stages.all import evaluation_estimate, evaluation_examples, stage_line
    (tmp_path / "dataset.json").write_text(json.dumps({"splits": {"test": {"examples": 500}}}))
    cfg = compose("stage=all", f"data_dir={tmp_path}", "model.halt_max_steps=4", "eval.tta=2", "eval.max_steps=8")
    assert evaluation_examples(cfg, "eval") == 500 * 2 * 2
    assert evaluation_examples(compose("stage=all", f"data_dir={tmp_path}", "eval.source=mine.csv"), "eval") is None
    (tmp_path / "dataset.json").write_text(json.dumps({"splits": {"test": {"examples": 800}}, "num_aug": 7}))
    arc = compose("stage=all", "task=arc", f"data_dir={tmp_path}", "model.halt_max_steps=4", "eval_arc.num_aug=1")
    assert evaluation_examples(arc, "eval_arc") == 800 * 2 / 8           # versions 0 and 1 of the 8 built
    records = [{"step": 100, "train/evaluation_s": 50.0, "eval/compile_s": 20.0, "eval/count": 300.0},
               {"step": 101}, {"step": 200, "train/evaluation_s": 60.0, "eval/count": 300.0}, {"step": 201}]
    assert evaluation_estimate(records, 2000) == 400.0 + 20.0      # the last evaluation: 0.2 s per example; compiling
    assert evaluation_estimate(records[1:2], 2000) is None          # no timed evaluation: no guess
    assert stage_line(3, 3, "eval", "started", 312, 400.0) == ("[all 3/3] eval started; run 5 min 12 s so far, "
                                                                 "about 6 min 40 s left (plus start-up)")
    assert stage_line(1, 3, "augment", "done in 12 s", 12.4) == "[all 1/3] augment done in 12 s; run 12 s so far"
