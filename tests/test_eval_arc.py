"""stage=eval_arc end to end on four real ARC tasks: a checkpoint trained for two steps through stage=train,
the submission's keys, votes and pass@K, re-scoring saved predictions (an oracle scores 1), mismatches,
each evaluation kept apart in run_dir/eval_arc/<name>/ with the results table across them."""
import json
import shutil

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline.data import dataset_format as fmt
from pipeline.errors import PipelineError
from pipeline.run import run_stage
from pipeline.stages.eval_arc import _decode
from tests import tiny
from tests.conftest import compose

TRAINING, EVALUATION = ["0d3d703e", "25ff71a9"], ["6ea4a07e", "e633a9e5"]
NUM_AUG = 3
FIRST = f"aug{NUM_AUG - 1}"    # the fixture's evaluation: eval_arc.num_aug differs from the plain pass
TINY_MODEL = tiny.model_overrides(H_cycles=1, halt_max_steps=2)


@pytest.fixture(scope="module")
def arc_run(ray_local, shared_data, tmp_path_factory):
    root = tmp_path_factory.mktemp("eval_arc")
    paths = [f"data_dir={root / 'data'}", f"run_dir={root / 'run'}", "task=arc", "preset=none",
             f"task.source={shared_data / 'arc' / 'arc-agi'}", "task.subsets=[training,evaluation]",
             f"task.task_ids=[{','.join(TRAINING + EVALUATION)}]", f"task.num_aug={NUM_AUG}"]
    run_stage(compose("stage=augment", *paths, "task.num_val=1"))
    run_stage(compose("stage=train", *paths, *TINY_MODEL, "train.num_workers=1", "train.global_batch_size=8",
                      "train.steps=2", "train.eval_every=2"))
    metrics = run_stage(compose("stage=eval_arc", *paths, "eval.batch_size=5", f"eval_arc.num_aug={NUM_AUG - 1}",
                                "eval.render=1"))
    return root, paths, metrics


def test_training_validates_with_the_voted_arc_metric(arc_run):
    """The periodic evaluation of an ARC run scores pass@1/2 after voting over the validation task's versions
    (task.num_val=1), and best_ is chosen by pass@2."""
    from pipeline.checkpoints import checkpoint as ckpt
    from pipeline.train.metrics_log import read_metrics
    root, _, _ = arc_run
    evaluated = [r for r in read_metrics(str(root / "run")) if "eval/exact_accuracy" in r]
    assert [r["step"] for r in evaluated] == [2]
    assert all(0 <= evaluated[0][f"eval/pass@{k}"] <= 1 for k in (1, 2))
    assert ckpt.best_checkpoint(str(root / "run")) is not None


def test_submission_covers_exactly_the_test_tasks_and_inputs(arc_run, shared_data):
    root, _, metrics = arc_run
    solutions = json.loads((shared_data / "arc" / "arc-agi_evaluation_solutions.json").read_text())
    submission = json.loads((root / "run" / "eval_arc" / FIRST / "submission.json").read_text())
    assert sorted(submission) == sorted(EVALUATION)
    for task_id, entries in submission.items():
        assert len(entries) == len(solutions[task_id])
        for entry in entries:
            assert sorted(entry) == ["attempt_1", "attempt_2"]
            assert all(np.asarray(g).ndim == 2 and np.asarray(g).max() <= 9 for g in entry.values())
    saved = json.loads((root / "run" / "eval_arc" / FIRST / "metrics.json").read_text())
    assert saved == json.loads(json.dumps(metrics))
    assert {f"pass@{k}" for k in (1, 2, 5, 10, 100, 1000)} <= set(metrics)
    # eval_arc.num_aug: the identity and the first NUM_AUG - 1 augmentations of the NUM_AUG built.
    assert pq.read_table(str(root / "data" / "test")).num_rows == sum(len(solutions[t]) for t in EVALUATION) * (1 + NUM_AUG)
    rows = pq.read_table(str(root / "run" / "eval_arc" / FIRST / "predictions")).to_pydict()
    assert sorted(set(rows["aug_index"])) == list(range(NUM_AUG)) and metrics["num_aug"] == NUM_AUG - 1
    assert metrics["predictions"] == len(rows["aug_index"]) == sum(len(solutions[t]) for t in EVALUATION) * NUM_AUG
    assert metrics["tasks"] == 2 and metrics["checkpoint"].endswith("checkpoint_00000002")
    picture = root / "run" / "eval_arc" / FIRST / "render" / "puzzle_000.png"
    assert metrics["rendered"] == [str(picture)] and picture.read_bytes()[:4] == b"\x89PNG"   # ARC pictures too
    votes = pq.read_table(str(root / "run" / "eval_arc" / FIRST / "votes")).to_pydict()
    assert {"task_id", "example_index", "rank", "answer_hash", "count", "mean_confidence", "correct"} <= set(votes)
    assert set(votes["task_id"]) <= set(EVALUATION)
    # Each test input's counts add up to its valid predictions (at most one per version).
    per_input = {}
    for t, e, c in zip(votes["task_id"], votes["example_index"], votes["count"]):
        per_input[(t, e)] = per_input.get((t, e), 0) + c
    assert all(total <= NUM_AUG for total in per_input.values())
    assert sum(per_input.values()) == metrics["predictions"] - metrics["invalid_predictions"]


def test_rescoring_oracle_predictions_gives_full_marks(arc_run, tmp_path):
    """Predictions equal to the labels of every version, decoded as eval_arc does, must vote the truth."""
    root, paths, _ = arc_run
    batch = fmt.read_ray(str(root / "data" / "test"), None).take_batch(100_000, batch_format="numpy")
    batch["preds"] = batch["labels"]
    batch["q_halt"] = np.zeros(len(batch["labels"]), np.float32)
    oracle = _decode(batch)
    folder = tmp_path / "oracle"
    folder.mkdir()
    pq.write_table(pa.table({k: pa.array(list(v)) if v.dtype == object else pa.array(v) for k, v in oracle.items()}),
                   str(folder / "part.parquet"))
    metrics = run_stage(compose("stage=eval_arc", *paths, f"eval_arc.predictions={folder}"))
    assert metrics["pass@1"] == 1.0 and metrics["invalid_predictions"] == 0
    assert metrics["predictions_from"] == str(folder) and "checkpoint" not in metrics
    assert metrics["name"] == "rescored-" + tmp_path.name     # named by the folder holding the predictions
    submission = json.loads((root / "run" / "eval_arc" / metrics["name"] / "submission.json").read_text())
    solutions = json.loads((root / "data" / "test_puzzles.json").read_text())
    for task_id, entries in submission.items():
        assert [e["attempt_1"] for e in entries] == [p["output"] for p in solutions[task_id]["test"]]


def test_checkpoint_of_other_data_is_refused(arc_run, tmp_path):
    root, paths, _ = arc_run
    copy = tmp_path / "checkpoint"
    shutil.copytree(root / "run" / "checkpoint_00000002", copy)
    manifest = json.loads((copy / "manifest.json").read_text())
    (copy / "manifest.json").write_text(json.dumps({**manifest, "versions": manifest["versions"] + 1}))
    with pytest.raises(PipelineError, match="trained on data with versions="):
        run_stage(compose("stage=eval_arc", *paths, f"checkpoint={copy}"))
    with pytest.raises(PipelineError, match="no complete checkpoint"):
        run_stage(compose("stage=eval_arc", *paths, f"run_dir={tmp_path / 'empty'}"))


def test_fewer_supervision_steps_answer_every_version_kept_apart(arc_run, capsys):
    """eval.max_steps=1 (of N_sup 2) predicts every version after one step and records it in its own folder,
    beside the first evaluation, which is left as it was; 0 is refused before anything is touched. The
    results table holds both rows, and the stage prints it."""
    root, paths, first = arc_run
    with pytest.raises(PipelineError, match="eval.max_steps=0"):
        run_stage(compose("stage=eval_arc", *paths, "eval.max_steps=0"))
    capsys.readouterr()
    metrics = run_stage(compose("stage=eval_arc", *paths, "eval.max_steps=1", "eval.batch_size=5"))
    assert metrics["max_steps"] == 1 and metrics["name"] == "steps1"
    assert metrics["predictions"] == pq.read_table(str(root / "data" / "test")).num_rows
    kept = json.loads((root / "run" / "eval_arc" / FIRST / "metrics.json").read_text())
    assert kept == json.loads(json.dumps(first))
    assert (root / "run" / "eval_arc" / "steps1" / "submission.json").exists()
    table = json.loads((root / "run" / "eval_arc" / "results.json").read_text())
    rows = {r["name"]: r for r in table}
    assert {FIRST, "steps1"} <= set(rows)
    assert rows["steps1"]["passes"]["pass@2"] == metrics["pass@2"] and rows[FIRST]["num_aug"] == NUM_AUG - 1
    printed = capsys.readouterr().out
    assert "results table" in printed and all(name in printed for name in (FIRST, "steps1"))


def test_pass_at_k_shown_in_numeric_order_up_to_the_versions_voting():
    from pipeline.stages.eval_arc import shown_ks
    metrics = {f"pass@{k}": 0.5 for k in sorted(["1", "10", "100", "1000", "2", "5"])}   # string order, as JSON
    metrics.update(predictions=8 * 3, test_inputs=3)                                     # 8 versions vote
    assert shown_ks(metrics) == ([1, 2, 5], [10, 100, 1000], 8)
    metrics.update(predictions=4 * 3)
    assert shown_ks(metrics) == ([1, 2], [5, 10, 100, 1000], 4)
