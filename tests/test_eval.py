"""stage=eval on a tiny Sudoku checkpoint trained through stage=train: metrics per step, predictions, PNGs,
a CSV source, and clear errors for a missing or mismatched checkpoint."""
import json
import os

import numpy as np
import pyarrow.parquet as pq
import pytest

from augment import maze, sudoku
from pipeline import storage
from pipeline.data import dataset_format as fmt
from pipeline.data.examples import to_examples
from pipeline.errors import PipelineError
from pipeline.infer import predictor as inference
from pipeline.infer import test_time
from pipeline.run import run_stage
from pipeline.tasks.maze import score_batch as valid_paths
from tests import tiny
from tests.conftest import compose
from trm import evaluate_batch

N_SUP = 3
TINY_MODEL = tiny.model_overrides(halt_max_steps=N_SUP)


def write_sudoku_dataset(data_dir: str, num_train: int = 64, num_test: int = 24) -> None:
    """Generated 6x6 puzzles written through the dataset contract (as the data stage lays them out)."""
    import pyarrow as pa
    import ray
    from ray.data.extensions import ArrowTensorArray

    from pipeline.data import dataset_format as fmt
    questions, solutions, _ = sudoku.generate(np.random.default_rng(0), num_train + num_test, 6)
    for split, part in (("train", slice(0, num_train)), ("test", slice(num_train, None))):
        n = len(questions[part])
        table = pa.table({"inputs": ArrowTensorArray.from_numpy(sudoku.to_tokens(questions[part])),
                          "labels": ArrowTensorArray.from_numpy(sudoku.to_tokens(solutions[part])),
                          "puzzle_identifier": pa.array(np.zeros(n, np.int32)),
                          "group_id": pa.array(np.arange(n, dtype=np.int64)), "aug_index": pa.array(np.zeros(n, np.int32))})
        fmt.write_split(ray.data.from_arrow(table), data_dir, split, groups_per_file=max(n, 1))
    fmt.publish_manifest(compose("task=sudoku"), data_dir, {"seq_len": 36, "vocab_size": 8, "num_puzzle_identifiers": 1,
                                                            "size": 6})


def _table(directory) -> dict:
    table = pq.read_table(str(directory))
    return {name: fmt.column_numpy(table.column(name)) for name in table.column_names}


@pytest.fixture(scope="module")
def evaluated(sudoku_run):
    _, paths = sudoku_run
    return run_stage(compose("stage=eval", *paths, "eval.render=2", "eval.batch_size=10"))


def test_eval_writes_metrics_per_step_predictions_and_pngs(sudoku_run, evaluated, capsys):
    root, paths = sudoku_run
    metrics = evaluated
    saved = json.loads((root / "run" / "eval" / "plain" / "metrics.json").read_text())
    assert saved == json.loads(json.dumps(metrics))
    assert metrics["checkpoint"].endswith("checkpoint_00000004") and metrics["checkpoint_step"] == 4
    assert len(metrics["exact_accuracy_per_step"]) == len(metrics["token_accuracy_per_step"]) == N_SUP
    assert metrics["exact_accuracy"] == metrics["exact_accuracy_per_step"][-1]     # answers at the last step
    rows = _table(root / "run" / "eval" / "plain" / "predictions")
    assert metrics["count"] == len(rows["preds"]) > 10                             # spans several batches
    preds, labels = np.array(rows["preds"]), np.array(rows["labels"])
    # The metrics are recomputed here from the written predictions, independently of the stage.
    assert metrics["exact_accuracy"] == pytest.approx((preds == labels).all(1).mean())
    assert metrics["token_accuracy"] == pytest.approx((preds == labels).mean())
    assert metrics["token_accuracy"] > 0                                            # the givens, at least
    assert 1 <= metrics["mean_halting_step"] <= N_SUP
    pngs = sorted(os.listdir(root / "run" / "eval" / "plain" / "render"))
    assert pngs == ["puzzle_000.png", "puzzle_001.png"]
    assert (root / "run" / "eval" / "plain" / "render" / pngs[0]).read_bytes()[:4] == b"\x89PNG"

    # Other settings: their own folder, the plain evaluation kept; both in the results table.
    limited = run_stage(compose("stage=eval", *paths, "eval.limit=5", "eval.render=0"))
    assert limited["name"] == "limit5" and not (root / "run" / "eval" / "limit5" / "render").exists()
    assert len(_table(root / "run" / "eval" / "limit5" / "predictions")["preds"]) == 5
    assert len(_table(root / "run" / "eval" / "plain" / "predictions")["preds"]) == metrics["count"]
    assert os.listdir(root / "run" / "eval" / "plain" / "render") == pngs
    table = json.loads((root / "run" / "eval" / "results.json").read_text())
    assert [(r["name"], r["count"], r["settings"][0]["exact_accuracy"]) for r in table] == [
        ("plain", metrics["count"], metrics["exact_accuracy"]), ("limit5", 5, limited["exact_accuracy"])]
    out = capsys.readouterr().out
    assert "exact accuracy" in out and len([line for line in out.splitlines() if line.strip()[:1].isdigit()]) >= N_SUP
    assert "limit5" in out.split("results table")[-1] and "plain" in out.split("results table")[-1]


def test_csv_source_is_encoded_like_the_data_stage(sudoku_run, evaluated, tmp_path):
    root, paths = sudoku_run
    reference = evaluated
    rows = _table(root / "data" / "test")
    questions = sudoku.from_tokens(np.array(rows["inputs"]), 6)
    answers = sudoku.from_tokens(np.array(rows["labels"]), 6)
    csv = tmp_path / "puzzles.csv"
    csv.write_text("source,question,answer,rating\n" + "".join(
        f"x,{q},{a},0\n" for q, a in zip(sudoku.format_grids(questions), sudoku.format_grids(answers))))
    metrics = run_stage(compose("stage=eval", *paths, f"eval.source={csv}", "eval.halt_on_q=true"))
    assert metrics["count"] == reference["count"] and metrics["source"] == str(csv)
    # The same puzzles through the same model: the per-step scores cannot differ.
    assert metrics["exact_accuracy_per_step"] == pytest.approx(reference["exact_accuracy_per_step"])
    assert metrics["token_accuracy_per_step"] == pytest.approx(reference["token_accuracy_per_step"])
    assert metrics["halt_on_q"] and metrics["mean_answer_step"] <= N_SUP

    # Rows without an answer are answered, not scored: the same predictions, only the answered rows counted.
    blank = [i % 3 == 0 for i in range(len(questions))]
    csv.write_text("source,question,answer,rating\n" + "".join(
        f"x,{q},{'' if b else a},\n" for q, a, b in zip(sudoku.format_grids(questions), sudoku.format_grids(answers),
                                                       blank)))
    partly = run_stage(compose("stage=eval", *paths, f"eval.source={csv}", "eval.halt_on_q=true"))
    assert partly["unanswered"] == sum(blank) and partly["count"] == len(blank) - sum(blank)
    written = _table(root / "run" / "eval" / partly["name"] / "predictions")
    assert np.array_equal(np.array(written["preds"]),
                          np.array(_table(root / "run" / "eval" / metrics["name"] / "predictions")["preds"]))
    kept = ~np.array(blank)
    assert partly["exact_accuracy"] == pytest.approx((np.array(written["preds"]) == np.array(written["labels"]))
                                                     .all(1)[kept].mean())
    csv.write_text("source,question,answer,rating\n" + "".join(f"x,{q},,\n" for q in sudoku.format_grids(questions)))
    unscored = run_stage(compose("stage=eval", *paths, f"eval.source={csv}"))
    assert unscored["count"] == 0 and unscored["exact_accuracy"] is None and unscored["puzzles"] == len(blank)

    csv.write_text("source,question,answer,rating\nx,12,12,0\n")
    with pytest.raises(PipelineError, match=r"puzzles.csv, line 2: question has 2 characters, expected 36"):
        run_stage(compose("stage=eval", *paths, f"eval.source={csv}"))


@pytest.mark.parametrize("halt_on_q", [False, True])
def test_plain_test_time_settings_reproduce_the_single_pass_bit_for_bit(sudoku_run, halt_on_q):
    root, _ = sudoku_run
    path = inference.resolve_checkpoint(None, str(root / "run"))
    rows = _table(root / "data" / "test")
    batch = {k: np.array(rows[k]) for k in ("inputs", "labels", "puzzle_identifier")}
    plain = evaluate_batch(inference.load_model(path, True, "cpu"), to_examples(batch), halt_on_q=halt_on_q)
    q_steps = plain.per_step["q_halt"].T.numpy()
    expected = dict(preds=plain.preds.numpy().astype(np.uint8), q_halt=plain.q_halt.numpy(),
                    answer_step=plain.answer_step.numpy().astype(np.int16), exact=plain.exact.numpy(),
                    token_accuracy=plain.token_accuracy.numpy(),
                    halt_step=np.where((q_steps > 0).any(1), (q_steps > 0).argmax(1) + 1, N_SUP).astype(np.int16))
    explicit = test_time.Settings(max_steps=N_SUP, trajectories=1, noise=0.0, tta=1, select=("vote", "q_halt"))
    cases = [(None, halt_on_q), (explicit, halt_on_q)]
    if halt_on_q:   # one copy: first_halt is the plain pass's halt_on_q answer
        cases.append((test_time.Settings(select=("first_halt",)), False))
    for settings, predictor_halt_on_q in cases:
        predictor = inference.Predictor(path, True, predictor_halt_on_q, "cpu", 1, passthrough=[], settings=settings,
                                        task="sudoku", size=6)
        out = predictor(batch)
        for key, value in expected.items():
            assert out[key].dtype == value.dtype and np.array_equal(out[key], value), (settings, key)
        if predictor_halt_on_q == halt_on_q:
            assert np.array_equal(out["step_exact_sum"][0], plain.per_step["exact_accuracy"].double().numpy())


def test_compiled_inference_answers_as_eager(sudoku_run, monkeypatch, tmp_path):
    """stage=eval and eval_arc's Predictor with eval.compile=true: the eager answers, the last batch padded to
    the batch size (24 rows in batches of 16: one compiled shape)."""
    root, _ = sudoku_run
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path / "inductor"))   # the Predictor points it at its own
    path = inference.resolve_checkpoint(None, str(root / "run"))
    rows = _table(root / "data" / "test")
    batch = {k: np.array(rows[k]) for k in ("inputs", "labels", "puzzle_identifier")}
    outputs = [inference.Predictor(path, True, False, "cpu", 1, passthrough=[], task="sudoku", size=6,
                                   compile=compile, batch_size=16)
               for compile in ("false", "true")]
    assert not outputs[0].step.compiled and outputs[1].step.compiled
    eager, compiled = ({**predictor({k: v[:16] for k, v in batch.items()}),
                        "rest": predictor({k: v[16:] for k, v in batch.items()})} for predictor in outputs)
    for out_e, out_c in ((eager, compiled), (eager["rest"], compiled["rest"])):
        for key in ("preds", "answer_step", "exact", "halt_step", "step_exact_sum"):
            assert np.array_equal(out_e[key], out_c[key]), key
        np.testing.assert_allclose(out_c["q_halt"], out_e["q_halt"], rtol=1e-5, atol=1e-5)
    assert len(compiled["rest"]["preds"]) == 8


def test_test_time_settings_score_every_selector_from_one_run(sudoku_run, capsys):
    root, paths = sudoku_run
    options = ["eval.max_steps=5", "eval.trajectories=3", "eval.noise=0.3", "eval.tta=2", "eval.batch_size=7",
               "eval.select=[q_halt,vote,first_halt]"]
    metrics = run_stage(compose("stage=eval", *paths, *options))
    settings = metrics["settings"]
    assert [s["select"] for s in settings] == ["q_halt", "vote", "first_halt"]
    assert all((s["max_steps"], s["trajectories"], s["noise"], s["tta"], s["seed"]) == (5, 3, 0.3, 2, 0) for s in settings)
    assert len(metrics["exact_accuracy_per_step"]) == 5 and settings[0]["exact_accuracy"] == metrics["exact_accuracy"]
    assert all(s["exact_accuracy"] <= s["oracle_rate"] == metrics["oracle_rate"] for s in settings)
    assert metrics["seconds_per_puzzle"] > 0 and metrics["wall_seconds"] > 0
    assert metrics["name"] == "steps5-k3-noise0.3-tta2-select-q_halt+vote+first_halt"   # kept apart from plain
    rows = _table(root / "run" / "eval" / metrics["name"] / "predictions")
    preds, labels = np.array(rows["preds"]), np.array(rows["labels"])
    assert metrics["exact_accuracy"] == pytest.approx((preds == labels).all(1).mean())
    assert metrics["oracle_rate"] == pytest.approx(np.mean(rows["oracle"]))
    assert set(rows["answer_copy"]) <= set(range(6)) and 1 <= min(rows["answer_step"]) <= max(rows["answer_step"]) <= 5
    assert "oracle" in capsys.readouterr().out
    again = run_stage(compose("stage=eval", *paths, *options))   # the same seed: the same noise and transforms
    assert np.array_equal(np.array(_table(root / "run" / "eval" / metrics["name"] / "predictions")["preds"]), preds)
    assert again["settings"][1]["exact_accuracy"] == settings[1]["exact_accuracy"]


def test_missing_checkpoint_is_a_clear_error(sudoku_run, tmp_path):
    _, paths = sudoku_run
    with pytest.raises(PipelineError, match="no complete checkpoint in run_dir=.*stage=train"):
        run_stage(compose("stage=eval", paths[0], f"run_dir={tmp_path / 'empty'}"))
    with pytest.raises(PipelineError, match="checkpoint=.*nowhere: not a complete checkpoint folder"):
        run_stage(compose("stage=eval", *paths, f"checkpoint={tmp_path / 'nowhere'}"))


def test_mismatched_checkpoint_is_a_clear_error(sudoku_run, tmp_path):
    root, paths = sudoku_run
    manifest = json.loads((root / "data" / "dataset.json").read_text())
    other = tmp_path / "data"
    storage.write_json_atomic(str(other / "dataset.json"), {**manifest, "seq_len": 81, "vocab_size": 11})
    with pytest.raises(PipelineError, match=r"trained on data with seq_len=36, but data_dir=.* has seq_len=81"):
        run_stage(compose("stage=eval", f"data_dir={other}", paths[1], "checkpoint=latest"))


def test_maze_predictions_are_checked_as_shortest_paths():
    questions, answers, _ = maze.generate(np.random.default_rng(0), 200, 10)
    n = len(questions)
    batch = {"inputs": questions.reshape(n, -1), "preds": np.concatenate([answers[: n // 2], questions[n // 2:]]).reshape(n, -1)}
    valid = valid_paths(batch, size=10)["valid_path"]
    assert n > 4 and valid[: n // 2].all() and not valid[n // 2:].any()


def test_png_title_says_when_the_puzzle_was_solved():
    from pipeline.stages.eval import solved_title
    labels = np.array([0, 3, 4])
    right, wrong = [9, 3, 4], [9, 3, 3]
    assert solved_title(np.array([wrong, right, right]), labels) == "solved at step 2 of 3"
    assert solved_title(np.array([right, right, wrong]), labels) == "right at step 1, wrong again at step 3"
    assert solved_title(np.array([wrong, wrong]), labels) == "not solved in 2 steps"


def test_cpu_actors_leave_the_reads_a_cpu(ray_local):
    """Actors holding every CPU would wait forever for the reads that feed them (the session's Ray has 4)."""
    from omegaconf import OmegaConf
    wanted = OmegaConf.create({"num_actors": 4, "cpus_per_actor": 1})
    assert inference.actor_resources(wanted)["actors"] == 3
    assert inference.actor_resources(OmegaConf.create({"num_actors": None, "cpus_per_actor": 2}))["actors"] == 1
