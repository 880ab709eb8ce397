"""stage=solve answers typed puzzles step by step (no answer needed) with the halting head's confidence."""
import csv
import json

import numpy as np
import pytest
import torch

from pipeline.checkpoints.checkpoint import Checkpoint
from pipeline.infer import predictor
from pipeline.errors import PipelineError
from pipeline.run import run_stage
from pipeline.tasks import maze, sudoku
from tests.conftest import compose
from tests.test_reference_checkpoint import _our_checkpoint
from trm import TRMConfig

SUDOKU = TRMConfig(seq_len=36, vocab_size=8, num_puzzle_identifiers=1, hidden_size=32, num_heads=2, L_layers=1,
                   H_cycles=2, L_cycles=1, halt_max_steps=3, puzzle_emb_len=2)
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
    questions, name = read_puzzles(compose("stage=solve", f"solve.file={file}"), 5, "maze")
    assert name == "mazes" and questions == ["".join(drawn), "".join(drawn[::-1])]
    assert list(maze.question_reasons(questions + ["S" + " " * 24], 5)) == ["", "", "question needs exactly one 'G'"]
