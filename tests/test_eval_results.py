"""pipeline.results.evaluations: the folder names of eval_arc evaluations (settings that differ from the plain pass)
and the ARC rows of the results table."""
from pipeline.results import evaluations as eval_results
from tests.conftest import compose


def arc_name(*overrides: str) -> str:
    return eval_results.evaluation_name(compose("task=arc", "preset=none", *overrides), eval_results.ARC_DIR)


def test_arc_evaluations_are_named_by_what_differs_from_the_plain_pass():
    assert arc_name() == "plain"
    assert arc_name("eval_arc.num_aug=100") == "aug100"
    assert arc_name("checkpoint=best", "eval.max_steps=8", "eval_arc.num_aug=0") == "best-steps8-aug0"
    assert arc_name("eval.ema=false", "eval.halt_on_q=true") == "raw-halt_on_q"
    # stage=eval's test-time compute does not reach eval_arc: it does not rename its folder
    assert arc_name("eval.tta=8", "eval.trajectories=4", "eval.noise=0.1") == "plain"
    # a re-scoring is named by the evaluation it re-scores, so it never replaces that one's folder
    assert arc_name("eval_arc.predictions=/runs/r/eval_arc/aug100/predictions/") == "rescored-aug100"
    cfg = compose("task=arc", "preset=none", "run_dir=/runs/r", "eval_arc.num_aug=8")
    assert eval_results.output_dir(cfg, eval_results.ARC_DIR) == "/runs/r/eval_arc/aug8"
    assert eval_results.results_path("/runs/r", eval_results.ARC_DIR) == "/runs/r/eval_arc/results.json"


def test_arc_rows_are_recorded_replaced_and_tabled(tmp_path):
    run_dir = str(tmp_path)
    metrics = {"checkpoint": "/c/checkpoint_00000010", "checkpoint_step": 10, "num_aug": 3, "tasks": 2,
               "test_inputs": 4, "predictions": 16, "pass@1": 0.25, "pass@2": 0.5, "pass@5": 0.5}
    eval_results.record(run_dir, "aug3", metrics, eval_results.ARC_DIR)
    eval_results.record(run_dir, "plain", {**metrics, "predictions": 4}, eval_results.ARC_DIR)
    rows = eval_results.record(run_dir, "aug3", {**metrics, "pass@2": 0.75}, eval_results.ARC_DIR)   # replaced
    assert [r["name"] for r in rows] == ["plain", "aug3"]
    assert rows == eval_results.read_results(run_dir, eval_results.ARC_DIR) != eval_results.read_results(run_dir)
    header, plain, aug = eval_results.table_lines(rows, eval_results.ARC_DIR)
    assert header.split() == ["evaluation", "step", "inputs", "versions", "pass@1", "pass@2"]
    assert plain.split() == ["plain", "10", "4", "1", "25.0%", "50.0%"]
    assert aug.split() == ["aug3", "10", "4", "4", "25.0%", "75.0%"]
