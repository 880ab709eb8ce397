"""Test-time compute helpers: puzzle versions and their exact inverses, the selectors, scoring, settings."""
import numpy as np
import pytest

from augment import maze, sudoku
from pipeline.errors import PipelineError
from pipeline.infer import test_time
from pipeline.options import Options
from tests.conftest import compose


def _round_trip(task: str, size: int, tta: int, trajectories: int, tokens: np.ndarray, keyed_by: np.ndarray,
                steps: int = 2):
    """The copies of `tokens` (the versions of the puzzles `keyed_by`), then those copies as if predicted at
    every step, mapped back."""
    versions = test_time.make_versions(task, size, tta, 1, test_time.puzzle_hashes(keyed_by))
    copies = test_time.copies_of(versions, tta, trajectories, tokens)
    assert copies.shape == (tta * trajectories * len(tokens), tokens.shape[1])
    back = test_time.map_back(versions, tta, trajectories, np.stack([copies] * steps))
    return copies, back


@pytest.mark.parametrize("n", [4, 6, 9])
def test_every_sudoku_version_is_a_valid_puzzle_and_maps_back_exactly(n):
    questions, solutions, _ = sudoku.generate(np.random.default_rng(0), 12, n)
    B, tta, K = len(questions), 5, 3
    copies, back = _round_trip("sudoku", n, tta, K, sudoku.to_tokens(questions), sudoku.to_tokens(questions))
    solution_copies, solutions_back = _round_trip("sudoku", n, tta, K, sudoku.to_tokens(solutions),
                                                  sudoku.to_tokens(questions))
    q, s = sudoku.from_tokens(copies, n), sudoku.from_tokens(solution_copies, n)
    assert sudoku.is_valid_solution(s).all() and sudoku.givens_consistent(q, s).all()
    assert np.array_equal(q[:B * K], np.tile(questions, (K, 1, 1)))              # version 0: the puzzle itself
    assert not np.array_equal(q[B * K:2 * B * K], q[:B * K])                     # the others are moved
    assert np.array_equal(q[:B], q[B:2 * B])                                     # trajectories share a version
    assert back.shape == (2, tta * K, B, n * n)
    assert (back == sudoku.to_tokens(questions)).all() and (solutions_back == sudoku.to_tokens(solutions)).all()
    # Any predicted tokens, PAD (0) and blank (1) included, come back exactly.
    noise = np.random.default_rng(2).integers(0, n + 2, (B, n * n), dtype=np.uint8)
    versions = test_time.make_versions("sudoku", n, tta, 1, test_time.puzzle_hashes(noise))
    moved = test_time.copies_of(versions, tta, 1, noise)
    assert (test_time.map_back(versions, tta, 1, moved[None]) == noise).all()


def test_every_maze_version_is_a_valid_maze_and_maps_back_exactly():
    questions, answers, _ = maze.generate(np.random.default_rng(0), 60, 9)
    B, size = len(questions), 9
    copies, back = _round_trip("maze", size, 8, 2, questions.reshape(B, -1), questions.reshape(B, -1))
    answer_copies, answers_back = _round_trip("maze", size, 8, 2, answers.reshape(B, -1), questions.reshape(B, -1))
    assert B > 3 and (maze.validate(copies.reshape(-1, size, size), answer_copies.reshape(-1, size, size)) == "").all()
    assert len({copies[v * 2 * B].tobytes() for v in range(8)}) == 8                 # 8 distinct symmetries
    assert (back == questions.reshape(B, -1)).all() and (answers_back == answers.reshape(B, -1)).all()


def _synthetic():
    """3 steps x 4 copies x 2 puzzles of 2-token answers: A = [1, 1], W = [2, 2], V = [3, 3]."""
    A, W, V = [1, 1], [2, 2], [3, 3]
    preds = np.array([[[W, A], [W, A], [V, W], [V, W]],
                      [[A, A], [W, V], [V, W], [V, W]],
                      [[A, V], [A, V], [W, W], [V, W]]], dtype=np.uint8)                     # [S, C, B, L]
    q = np.array([[[-3., -1.], [-4., 2.], [-2., -5.], [-6., -5.]],
                  [[-1., 3.], [1., 1.], [-2., 4.], [-3., -5.]],
                  [[5., -2.], [-1., -3.], [0.5, -1.], [2., 0.]]], dtype=np.float32)             # [S, C, B]
    return preds, q


def test_q_halt_selector_takes_the_highest_logit_over_steps_and_copies():
    preds, q = _synthetic()
    choice = test_time.select("q_halt", preds, q, np.full((4, 2), 3))
    assert choice.step.tolist() == [3, 2] and choice.copy.tolist() == [0, 2]
    assert choice.preds.tolist() == [[1, 1], [2, 2]] and choice.q_halt.tolist() == [5., 4.]


def test_first_halt_selector_takes_the_earliest_halting_copy():
    preds, q = _synthetic()
    choice = test_time.select("first_halt", preds, q, np.full((4, 2), 3))
    # puzzle 0: nobody halts at step 1, copy 1 alone at step 2; puzzle 1: copy 1 at step 1
    assert choice.step.tolist() == [2, 1] and choice.copy.tolist() == [1, 1]
    assert choice.preds.tolist() == [[2, 2], [1, 1]]
    never = test_time.select("first_halt", preds, np.full_like(q, -1.0), np.full((4, 2), 3))
    assert never.step.tolist() == [3, 3] and never.copy.tolist() == [0, 0]     # no halt: last step, best q


def test_vote_selector_takes_the_most_frequent_answer_ties_by_mean_q():
    preds, q = _synthetic()
    last = np.full((4, 2), 3)
    choice = test_time.select("vote", preds, q, last)
    # puzzle 0 at the last step: A twice (q 5, -1), W once, V once -> A, mean q 2
    # puzzle 1: V twice (q -2, -3), W twice (q -1, 0) -> tie on votes, W has the higher mean q
    assert choice.preds.tolist() == [[1, 1], [2, 2]] and choice.q_halt.tolist() == [2., -0.5]
    assert choice.copy.tolist() == [0, 2] and choice.step.tolist() == [3, 3]
    # Each copy votes with its own answer step (eval.halt_on_q): copies 1-3 answer at step 2 here.
    own = test_time.select("vote", preds, q, np.array([[3, 3], [2, 2], [2, 2], [2, 2]]))
    assert own.preds[0].tolist() == [3, 3] and own.copy[0] == 2                # V twice (copies 2, 3)
    single = test_time.select("vote", preds[:, :1], q[:, :1], last[:1])          # one copy: its answer
    assert np.array_equal(single.preds, preds[2, 0]) and np.array_equal(single.q_halt, q[2, 0])


def test_score_ignores_unlabelled_cells_and_rows():
    labels = np.array([[2, 3, 0], [0, 0, 0], [4, 4, 4]], dtype=np.uint8)
    preds = np.array([[2, 3, 1], [1, 1, 1], [4, 5, 4]], dtype=np.uint8)
    exact, accuracy = test_time.score(preds, labels)
    assert exact.tolist() == [True, False, False]
    assert accuracy.dtype == np.float32 and accuracy.tolist() == pytest.approx([1.0, 0.0, 2 / 3])


def _eval_options(**overrides):
    return Options.of(compose(*(f"eval.{k}={v}" for k, v in overrides.items()))).eval


def test_settings_from_options_and_errors_naming_the_option():
    s = test_time.settings_from_options(_eval_options(trajectories=4, tta=2, select="[q_halt,vote]"), 7, "sudoku")
    assert s.copies == 8 and s.select == ("q_halt", "vote") and s.seed == 7
    assert test_time.settings_from_options(_eval_options(seed=3), 7, "maze").seed == 3
    assert s.describe("vote", 4)["max_steps"] == 4
    for bad, match in ((dict(select="best"), "eval.select"), (dict(trajectories=0), "eval.trajectories"),
                       (dict(noise=-1.0), "eval.noise"), (dict(max_steps=0), "eval.max_steps"),
                       (dict(tta=9), "eval.tta=9: a maze puzzle has 8 versions at most")):
        with pytest.raises(PipelineError, match=match):
            test_time.settings_from_options(_eval_options(**bad), 0, "maze")


def test_a_puzzles_versions_and_noise_keys_depend_on_the_seed_and_the_puzzle_only():
    questions, _, _ = sudoku.generate(np.random.default_rng(0), 5, 4)
    tokens, tta, copies = sudoku.to_tokens(questions), 4, 3
    whole = test_time.copies_of(test_time.make_versions("sudoku", 4, tta, 0, test_time.puzzle_hashes(tokens)),
                                tta, 1, tokens).reshape(tta, 5, -1)
    part = test_time.copies_of(test_time.make_versions("sudoku", 4, tta, 0, test_time.puzzle_hashes(tokens[[3, 1]])),
                               tta, 1, tokens[[3, 1]]).reshape(tta, 2, -1)
    assert np.array_equal(whole[:, [3, 1]], part)        # the same versions in another batch, at another place
    other = test_time.copies_of(test_time.make_versions("sudoku", 4, tta, 1, test_time.puzzle_hashes(tokens)),
                                tta, 1, tokens).reshape(tta, 5, -1)
    assert not np.array_equal(whole[1:], other[1:])
    keys = test_time.noise_keys(0, test_time.puzzle_hashes(tokens), copies).reshape(copies, 5)
    assert np.array_equal(keys[:, [3, 1]], test_time.noise_keys(0, test_time.puzzle_hashes(tokens[[3, 1]]), copies)
                          .reshape(copies, 2))
    assert len(np.unique(keys)) == keys.size and not np.array_equal(
        keys, test_time.noise_keys(1, test_time.puzzle_hashes(tokens), copies).reshape(copies, 5))


@pytest.mark.parametrize("name", test_time.SELECTORS)
def test_an_empty_batch_gives_no_answers(name):
    versions = test_time.make_versions("sudoku", 4, 2, 0, [])
    copies = test_time.copies_of(versions, 2, 3, np.zeros((0, 16), np.uint8))
    step_preds = test_time.map_back(versions, 2, 3, np.stack([copies] * 2))
    choice = test_time.select(name, step_preds, np.zeros((2, 6, 0), np.float32), np.full((6, 0), 2))
    assert copies.shape == (0, 16) and step_preds.shape == (2, 6, 0, 16) and choice.preds.shape == (0, 16)
