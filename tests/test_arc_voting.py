"""ARC voting and scoring: a synthetic predictor with a chosen share of correct answers, pure and on Ray Data.

Inverse transforms (crop at the marker, all 8 symmetries, colour maps, translations) on every grid of
shared/data/arc are checked by tests/test_augment_arc.py; `decode_predictions` is that same path.
"""
import numpy as np
import pytest

from augment import arc
from pipeline.tasks.arc import voting


def _grid_columns(grids: list) -> dict:
    return {"answer_hash": np.array([voting.grid_hash(g) for g in grids], dtype=object),
            "height": np.array([g.shape[0] for g in grids], np.int8), "width": np.array([g.shape[1] for g in grids], np.int8),
            "answer": np.array([g.tobytes() for g in grids], dtype=object)}


def synthetic_predictions(rng, num_tasks: int, num_aug: int, correct: float, decoy: float, inputs_per_task=(1, 2),
                          correct_q: float = 0.0, decoy_q: float = 0.0):
    """Predictions of a synthetic model for `num_tasks` tasks x (1 + num_aug) versions per test input: the true
    grid for a `correct` share of versions, one fixed wrong grid (the decoy) for a `decoy` share, fresh
    random grids otherwise; q_halt logits `correct_q` / `decoy_q` / random. Returns (predictions, test
    counts, truth)."""
    versions = 1 + num_aug
    n_correct, n_decoy = int(round(correct * versions)), int(round(decoy * versions))
    counts, truth, parts = {}, {}, []
    for t in range(num_tasks):
        task_id = f"task{t:04d}"
        counts[task_id] = int(rng.integers(inputs_per_task[0], inputs_per_task[1] + 1))
        for example in range(counts[task_id]):
            shape = tuple(rng.integers(1, 6, 2))
            true, wrong = rng.integers(0, 10, shape, dtype=np.uint8), rng.integers(0, 10, shape, dtype=np.uint8)
            wrong[0, 0] = (true[0, 0] + 1) % 10
            truth[voting.input_key(task_id, example)] = voting.grid_hash(true)
            grids = [true] * n_correct + [wrong] * n_decoy
            grids += [rng.integers(0, 10, (6, 6), dtype=np.uint8) for _ in range(versions - len(grids))]
            q = np.concatenate([np.full(n_correct, correct_q), np.full(n_decoy, decoy_q),
                                rng.normal(-3, 1, versions - n_correct - n_decoy)])
            parts.append({"task_id": np.full(versions, task_id, dtype=object),
                          "example_index": np.full(versions, example, np.int16),
                          "q_halt": q.astype(np.float32), **_grid_columns(grids)})
    predictions = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    order = rng.permutation(len(predictions["q_halt"]))       # arrival order must not matter
    return {k: v[order] for k, v in predictions.items()}, counts, truth


def score_in_memory(predictions: dict, counts: dict, truth: dict, ks=(1, 2)) -> dict:
    """Vote per test input with the pure functions (the reference for the Ray path)."""
    keys = [voting.input_key(t, e) for t, e in zip(predictions["task_id"], predictions["example_index"])]
    tasks, examples, ranks = [], [], []
    for key in sorted(set(keys)):
        rows = np.flatnonzero(np.array(keys) == key)
        votes = voting.vote_group({k: v[rows] for k, v in predictions.items()}, truth, keep=max(ks))
        hit = np.flatnonzero(votes["correct"])
        if hit.size:
            tasks.append(votes["task_id"][0])
            examples.append(votes["example_index"][0])
            ranks.append(votes["rank"][hit[0]])
    return voting.pass_at_k(counts, tasks, examples, ranks, ks)


@pytest.mark.parametrize("correct,decoy,expect", [(0.3, 0.2, 1.0), (0.2, 0.3, 0.0), (0.05, 0.0, 1.0), (0.0, 0.3, 0.0)])
def test_pass_at_1_follows_the_plurality(correct, decoy, expect):
    rng = np.random.default_rng(0)
    predictions, counts, truth = synthetic_predictions(rng, 6, 40, correct, decoy)
    scores = score_in_memory(predictions, counts, truth)
    assert scores["pass@1"] == expect
    # The decoy beats the truth but the truth is second: pass@2 still counts it.
    assert scores["pass@2"] == (1.0 if correct > 0 else 0.0)


@pytest.mark.parametrize("correct_q,decoy_q,expect", [(1.0, -1.0, 1.0), (-1.0, 1.0, 0.0)])
def test_ties_are_broken_by_mean_confidence(correct_q, decoy_q, expect):
    rng = np.random.default_rng(1)
    predictions, counts, truth = synthetic_predictions(rng, 4, 20, 0.25, 0.25, correct_q=correct_q, decoy_q=decoy_q)
    assert score_in_memory(predictions, counts, truth)["pass@1"] == expect


def test_rank_answers_counts_then_confidence_and_skips_empty():
    hashes = np.array(["b", "a", "b", "c", "a", "", "", ""], dtype=object)
    q = np.array([0.0, 2.0, 0.0, 5.0, 2.0, 9.0, 9.0, 9.0])
    rows, counts, confidence = voting.rank_answers(hashes, q)
    assert hashes[rows].tolist() == ["a", "b", "c"]          # a and b tie on count; a is more confident
    assert counts.tolist() == [2, 2, 1]
    assert np.allclose(confidence, voting.sigmoid([2.0, 0.0, 5.0]))
    assert voting.rank_answers(np.array(["", ""], dtype=object), np.zeros(2))[0].size == 0


def test_fractional_credit_per_task():
    counts = {"x": 2, "y": 1, "z": 3}
    # x: one of two inputs right at rank 1; y: right at rank 3; z: nothing.
    scores = voting.pass_at_k(counts, ["x", "y"], [0, 0], [1, 3], ks=(1, 2, 5))
    assert scores == {"pass@1": pytest.approx(0.5 / 3), "pass@2": pytest.approx(0.5 / 3), "pass@5": pytest.approx(1.5 / 3)}
    with pytest.raises(ValueError, match="twice"):
        voting.pass_at_k(counts, ["x", "x"], [0, 0], [1, 2], ks=(1,))


def test_submission_is_complete_with_fallbacks():
    a, b = [[1, 2]], [[3]]
    submission = voting.build_submission({"t1": 2, "t2": 1}, {"t1:0": [a, b, [[9]]], "t2:0": [a]})
    assert submission == {"t1": [{"attempt_1": a, "attempt_2": b}, {"attempt_1": [[0]], "attempt_2": [[0]]}],
                          "t2": [{"attempt_1": a, "attempt_2": a}]}


def test_decode_predictions_crops_inverts_and_hashes():
    rng = np.random.default_rng(2)
    grid = rng.integers(0, 10, (3, 5), dtype=np.uint8)
    maps = arc.random_colour_maps(rng, 8)
    canvases = np.stack([arc.encode_grids(arc.transform_grids(grid, d, maps[d])[None])[0] for d in range(8)])
    canvases = np.concatenate([canvases, np.zeros((1, arc.SEQ_LEN), np.uint8)])     # a prediction with no grid
    decoded = voting.decode_predictions(canvases, np.r_[np.arange(8), 0], np.concatenate([maps, maps[:1]]))
    assert decoded["answer_hash"][:8].tolist() == [voting.grid_hash(grid)] * 8
    assert decoded["answer_hash"][8] == voting.NO_ANSWER
    assert voting.grid_from_cells(decoded["answer"][3], decoded["height"][3], decoded["width"][3]) == grid.tolist()


def test_ray_groupby_vote_matches_in_memory(ray_local, tmp_path):
    import pyarrow as pa
    import ray

    from pipeline.stages.eval_arc import score, vote
    rng = np.random.default_rng(3)
    predictions, counts, truth = synthetic_predictions(rng, 12, 30, 0.2, 0.25, inputs_per_task=(1, 3))
    for i, key in enumerate(list(truth)[:5]):     # some inputs: the truth wins; some: no prediction at all
        task, example = key.split(":")
        rows = (predictions["task_id"] == task) & (predictions["example_index"] == int(example))
        if i < 3:
            predictions["answer_hash"][rows & (predictions["q_halt"] == 0)] = truth[key]
        else:
            predictions["answer_hash"][rows] = voting.NO_ANSWER
    expected = score_in_memory(predictions, counts, truth, ks=(1, 2, 10))
    assert 0 < expected["pass@1"] < expected["pass@2"]
    table = pa.table({k: pa.array(list(v)) if v.dtype == object else pa.array(v) for k, v in predictions.items()})
    votes_dir = str(tmp_path / "votes")
    vote(ray.data.from_arrow(table).repartition(4), truth, keep=10).write_parquet(votes_dir)
    metrics, submission = score(votes_dir, counts, truth, [1, 2, 10])
    assert {k: metrics[k] for k in expected} == pytest.approx(expected)
    assert metrics["inputs_with_answer"] == sum(counts.values()) - 2
    assert set(submission) == set(counts) and all(len(submission[t]) == n for t, n in counts.items())
