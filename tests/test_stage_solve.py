"""stage=solve answers typed puzzles step by step (no answer needed) with the halting head's confidence."""
import csv
import json

import numpy as np
import pytest
import torch

from augment import arc
from pipeline.checkpoints.checkpoint import Checkpoint
from pipeline.errors import PipelineError
from pipeline.infer import predictor
from pipeline.options import Options
from pipeline.run import run_stage
from pipeline.tasks import maze, sudoku
from tests import tiny
from tests.conftest import compose
from tests.test_eval_arc import EVALUATION, FIRST, NUM_AUG, arc_run  # noqa: F401, F811 (a fixture)
from tests.test_reference_checkpoint import _our_checkpoint

SUDOKU = tiny.pipeline_model(**tiny.SUDOKU_6X6)
SUDOKU_MANIFEST = {"task": "sudoku", "seq_len": 36, "vocab_size": 8, "num_puzzle_identifiers": 1, "size": 6, "box": [2, 3]}
PUZZLE = "1.3..6" "......" "..1..." "...5.." "......" "6..2.1"    # 6x6, '.' for blanks


@pytest.fixture(scope="module")
def sudoku_checkpoint(tmp_path_factory):
    root = tmp_path_factory.mktemp("solve")
    _our_checkpoint(str(root / "run" / "checkpoint_00000042"), SUDOKU, SUDOKU_MANIFEST, step=42)
    torch.save({}, root / "run" / "checkpoint_00000042" / "rank_0.pt")   # complete as training leaves it
    return root


def test_solve_a_typed_puzzle_prints_and_writes_every_step(sudoku_checkpoint, capsys):
    run_dir = sudoku_checkpoint / "run"
    result = run_stage(compose("stage=solve", "task=sudoku", f"run_dir={run_dir}", f"solve.puzzle={PUZZLE}"))
    assert result["checkpoint"].endswith("checkpoint_00000042")
    # The same puzzle through the model step by step, independently of the stage.
    model = predictor.load_model(Checkpoint.read(result["checkpoint"]), True, "cpu")
    tokens = sudoku.encode_questions([PUZZLE], 6)
    expected, _ = predictor.step_predictions(model, {"inputs": tokens, "labels": np.zeros_like(tokens),
                                                     "puzzle_identifier": np.zeros(1, np.int32)})
    assert result["answers"] == sudoku.format_answers(expected[-1], 6) and result["answer_step"] == [3]
    assert len(result["confidence"][0]) == 3 and all(0 < c < 1 for c in result["confidence"][0])
    out = capsys.readouterr().out
    assert "puzzle 1: answer of step 3" in out and "step 1: " in out and f"answer: {result['answers'][0]}" in out
    steps = json.loads((run_dir / "solve" / "puzzle" / "steps.json").read_text())
    assert [s["answer"] for s in steps["puzzles"][0]["steps"]] == [sudoku.format_answers(e, 6)[0] for e in expected]
    with open(run_dir / "solve" / "puzzle" / "answers.csv") as f:
        assert [(r["question"], r["answer"]) for r in csv.DictReader(f)] == [(PUZZLE, result["answers"][0])]


def test_solve_a_file_without_answers_and_halt_on_q(sudoku_checkpoint, tmp_path):
    file = tmp_path / "mine.csv"
    file.write_text(f"source,question,answer,rating\nme,{PUZZLE},,\nme,{PUZZLE[::-1]},,\n")
    result = run_stage(compose("stage=solve", "task=sudoku", f"run_dir={sudoku_checkpoint / 'run'}",
                               f"solve.file={file}", "eval.halt_on_q=true"))
    q_positive = np.asarray(result["confidence"]) > 0.5
    first = np.where(q_positive.any(1), q_positive.argmax(1) + 1, 3)
    assert result["answer_step"] == first.tolist() and len(result["answers"]) == 2
    assert (sudoku_checkpoint / "run" / "solve" / "mine" / "answers.csv").exists()


@pytest.mark.parametrize("args, message", [
    ([f"solve.puzzle={PUZZLE[:-1]}"], "solve.puzzle: question has 35 characters, expected 36"),
    ([], "stage=solve needs one of solve.puzzle"),
    (["solve.file=nowhere.csv"], "solve.file=nowhere.csv: file not found"),
])
def test_solve_refuses_bad_input_with_a_reason(sudoku_checkpoint, args, message):
    with pytest.raises(PipelineError, match=message):
        run_stage(compose("stage=solve", "task=sudoku", f"run_dir={sudoku_checkpoint / 'run'}", *args))


def test_maze_drawings_are_read_row_by_row(tmp_path):
    drawn = ["S #  ", "  # G", "     ", " ### ", "     "]
    file = tmp_path / "mazes.txt"
    file.write_text("\n".join(drawn) + "\n\n" + "\n".join(drawn[::-1]) + "\n")
    from pipeline.stages.solve import read_puzzles
    questions, name = read_puzzles(Options.of(compose("stage=solve", f"solve.file={file}")).solve, 5, "maze")
    assert name == "mazes" and questions == ["".join(drawn), "".join(drawn[::-1])]
    assert list(maze.question_reasons(questions + ["S" + " " * 24], 5)) == ["", "", "question needs exactly one 'G'"]


ARC_CANVAS, ARC_TASK = 10, "e633a9e5"      # an evaluation task: 3x3 inputs, 5x5 outputs, one test input
ARC = tiny.pipeline_model(seq_len=ARC_CANVAS ** 2, vocab_size=arc.VOCAB_SIZE, num_puzzle_identifiers=5, H_cycles=1,
                          halt_max_steps=2)
ARC_MANIFEST = {"task": "arc", "seq_len": ARC_CANVAS ** 2, "vocab_size": arc.VOCAB_SIZE, "num_puzzle_identifiers": 5,
                "canvas": ARC_CANVAS, "num_aug": 3, "fingerprint": {"task.name": "arc"}}


@pytest.fixture(scope="module")
def arc_checkpoint(tmp_path_factory, shared_data):
    """A tiny ARC checkpoint (as training leaves it) and a real ARC task file without its test output."""
    root = tmp_path_factory.mktemp("solve_arc")
    _our_checkpoint(str(root / "run" / "checkpoint_00000007"), ARC, ARC_MANIFEST, step=7)
    torch.save({}, root / "run" / "checkpoint_00000007" / "rank_0.pt")
    task = json.loads((shared_data / "arc" / "arc-agi_evaluation_challenges.json").read_text())[ARC_TASK]
    assert all("output" not in pair for pair in task["test"])
    (root / f"{ARC_TASK}.json").write_text(json.dumps(task))
    return root, task


def test_solve_an_arc_task_gives_two_voted_attempts(arc_checkpoint, capsys):
    root, task = arc_checkpoint
    run_dir = root / "run"
    result = run_stage(compose("stage=solve", "task=arc", "checkpoint=latest", f"run_dir={run_dir}", f"data_dir={root / 'no_data'}",
                               f"solve.file={root / f'{ARC_TASK}.json'}"))
    submission = json.loads((run_dir / "solve" / ARC_TASK / "submission.json").read_text())
    assert submission == json.loads(json.dumps(result["submission"])) and list(submission) == [ARC_TASK]
    assert len(submission[ARC_TASK]) == len(task["test"])
    attempts = submission[ARC_TASK][0]
    assert sorted(attempts) == ["attempt_1", "attempt_2"]
    assert all(np.asarray(g).ndim == 2 and 0 <= np.asarray(g).min() and np.asarray(g).max() <= 9 for g in attempts.values())
    # Voted over the versions the data stage would draw for this task (the identity and up to num_aug=3 more).
    from augment.arc import parse_task
    from pipeline.tasks.arc import test_rows
    versions = int(test_rows(parse_task(ARC_TASK, task), None, 3, 0, ARC_CANVAS)["aug_index"].max()) + 1
    votes = json.loads((run_dir / "solve" / ARC_TASK / "votes.json").read_text())["inputs"][f"{ARC_TASK}:0"]
    assert [v["grid"] for v in votes] == [attempts["attempt_1"], attempts["attempt_2"]][:len(votes)]
    assert all(v["of"] == versions for v in votes) and sum(v["versions"] for v in votes) <= versions
    assert [v["versions"] for v in votes] == sorted((v["versions"] for v in votes), reverse=True)
    out = capsys.readouterr().out
    assert f"task {ARC_TASK}: new to this model" in out and "stage=adapt" in out and result["trained"] == []
    assert "test input 1:" in out and "attempt 1: " in out and str(run_dir / "solve" / ARC_TASK / "submission.json") in out


def test_solve_refuses_a_malformed_arc_task_naming_the_file(arc_checkpoint):
    root, task = arc_checkpoint
    broken = root / "broken.json"
    broken.write_text(json.dumps({"train": [{"input": [[1, 2], [3]], "output": [[1]]}], "test": task["test"]}))
    with pytest.raises(PipelineError, match=rf"{broken}: task broken, train pair 0: input grid is not rectangular") as err:
        run_stage(compose("stage=solve", "task=arc", "checkpoint=latest", f"run_dir={root / 'run'}", f"solve.file={broken}"))
    assert "\n" not in str(err.value)
    (root / "not_json.json").write_text("{\"train\": [")
    with pytest.raises(PipelineError, match=rf"{root / 'not_json.json'}: not valid JSON"):
        run_stage(compose("stage=solve", "task=arc", "checkpoint=latest", f"run_dir={root / 'run'}", f"solve.file={root / 'not_json.json'}"))


def test_solve_a_task_the_checkpoint_trained_gives_eval_arcs_attempts(arc_run, capsys):
    """With the checkpoint's own dataset in data_dir, a task it trained is answered with its trained rows,
    under the same versions, voted the same way: the attempts eval_arc wrote for it."""
    root, paths, _ = arc_run
    task_id = EVALUATION[0]
    task = json.loads((root / "data" / "test_puzzles.json").read_text())[task_id]
    file = root / f"{task_id}.json"
    file.write_text(json.dumps({"train": task["train"], "test": [{"input": p["input"]} for p in task["test"]]}))
    result = run_stage(compose("stage=solve", *paths, "checkpoint=latest", f"solve.file={file}",
                               f"eval_arc.num_aug={NUM_AUG - 1}"))
    assert result["trained"] == [task_id] and f"task {task_id}: trained on it" in capsys.readouterr().out
    evaluated = json.loads((root / "run" / "eval_arc" / FIRST / "submission.json").read_text())
    assert result["submission"][task_id] == evaluated[task_id]


def test_arc_tasks_read_from_a_folder_or_a_challenges_file_answer_alike(arc_checkpoint, tmp_path):
    root, task = arc_checkpoint
    (tmp_path / "folder").mkdir()
    (tmp_path / "folder" / f"{ARC_TASK}.json").write_text(json.dumps(task))
    (tmp_path / "challenges.json").write_text(json.dumps({ARC_TASK: task}))
    (tmp_path / "empty").mkdir()
    common = ("stage=solve", "task=arc", "checkpoint=latest", f"run_dir={root / 'run'}", f"data_dir={root / 'no_data'}")
    single = run_stage(compose(*common, f"solve.file={root / f'{ARC_TASK}.json'}"))["submission"]
    assert run_stage(compose(*common, f"solve.file={tmp_path / 'folder'}"))["submission"] == single
    assert run_stage(compose(*common, f"solve.file={tmp_path / 'challenges.json'}"))["submission"] == single
    with pytest.raises(PipelineError, match=r"solve.file=.*empty: no <task_id>.json files"):
        run_stage(compose(*common, f"solve.file={tmp_path / 'empty'}"))
