"""ARC test-time voting and scoring as pure functions over arrays (no Ray, no torch).

A *prediction* is one model answer for one test input under one version of its task, already cropped at
its end-of-grid marker and mapped back to the original task: (task_id, example_index, answer_hash,
height, width, answer cells, q_halt). Votes are per (task, test input): distinct answers ranked by how
many versions gave them, ties by the mean of sigmoid(q_halt) (the reference's order), then by hash so the
order never depends on arrival. A test input counts as solved at K when its true output is among the top
K answers; a task scores the fraction of its test inputs solved (fractional credit, as the TRM
evaluator), and pass@K is the mean over every task of the test subset (a task without predictions
scores 0).
"""
import hashlib

import numpy as np

from augment import arc

NO_ANSWER = ""               # answer_hash of a prediction with no grid (no colour at the top-left cell)
FALLBACK_GRID = [[0]]        # submission attempt for a test input without any valid prediction
ATTEMPTS = 2                 # the ARC Prize format: attempt_1 and attempt_2


def grid_hash(grid: np.ndarray) -> str:
    """Content hash of a colour grid (shape and cells), as hex."""
    h = hashlib.sha256(np.asarray(grid.shape, dtype=np.int64).tobytes())
    h.update(np.ascontiguousarray(grid, dtype=np.uint8).tobytes())
    return h.hexdigest()[:32]


def input_key(task_id: str, example_index: int) -> str:
    return f"{task_id}:{int(example_index)}"


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.asarray(x, dtype=np.float64)))


def decode_predictions(preds: np.ndarray, dihedral: np.ndarray, colour_maps: np.ndarray,
                       offsets: np.ndarray | None = None) -> dict:
    """Predicted canvases [n, N * N] of versions -> answers of the original tasks: crop at the marker, undo
    the transform (`augment.arc.to_original`), hash. Returns answer_hash (NO_ANSWER for an empty crop),
    height, width (int8) and answer (bytes of the h*w cells)."""
    grids = arc.to_original(preds, dihedral, colour_maps, offsets)
    valid = np.array([g.size > 0 for g in grids], dtype=bool)
    return {
        "answer_hash": np.array([grid_hash(g) if ok else NO_ANSWER for g, ok in zip(grids, valid)], dtype=object),
        "height": np.array([g.shape[0] for g in grids], dtype=np.int8),
        "width": np.array([g.shape[1] for g in grids], dtype=np.int8),
        "answer": np.array([g.tobytes() for g in grids], dtype=object),
    }


def rank_answers(answer_hashes: np.ndarray, q_halt: np.ndarray) -> tuple:
    """Distinct valid answers of one test input, best first.

    Returns (rows, counts, mean_confidence), one entry per distinct answer in rank order: the first row
    holding it, how many rows hold it, their mean sigmoid(q_halt). Empty predictions (NO_ANSWER) do not
    vote.
    """
    hashes = np.asarray(answer_hashes, dtype=object)
    valid = hashes != NO_ANSWER
    rows = np.flatnonzero(valid)
    if rows.size == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64), np.zeros(0)
    unique, first, inverse, counts = np.unique(hashes[rows].astype(str), return_index=True, return_inverse=True,
                                               return_counts=True)
    confidence = np.bincount(inverse, weights=sigmoid(np.asarray(q_halt)[rows]), minlength=len(unique)) / counts
    order = np.lexsort((unique, -confidence, -counts))   # last key is primary: count, then confidence, then hash
    return rows[first[order]], counts[order], confidence[order]


def vote_group(group: dict, truth: dict, keep: int) -> dict:
    """One test input's predictions (a dict of arrays, as Ray's `map_groups` hands them) -> its ranked
    distinct answers, at most `keep`: task_id, example_index, rank (1 = best), answer_hash, count,
    mean_confidence, correct (against `truth`: {input_key: hash}; False where unknown), predictions (valid
    ones for this input), height, width and answer (cells only for the top ATTEMPTS, empty bytes below)."""
    first, counts, confidence = rank_answers(group["answer_hash"], group["q_halt"])
    valid = int(counts.sum())
    first, counts, confidence = first[:keep], counts[:keep], confidence[:keep]
    n = len(first)
    task_id, example = str(group["task_id"][0]), int(group["example_index"][0])
    hashes = np.asarray(group["answer_hash"], dtype=object)[first]
    rank = np.arange(1, n + 1, dtype=np.int32)
    answers = np.asarray(group["answer"], dtype=object)[first]
    return {
        "task_id": np.full(n, task_id, dtype=object),
        "example_index": np.full(n, example, dtype=np.int16),
        "rank": rank,
        "answer_hash": hashes,
        "count": counts.astype(np.int32),
        "mean_confidence": confidence.astype(np.float32),
        "correct": hashes == truth.get(input_key(task_id, example), None),
        "predictions": np.full(n, valid, dtype=np.int32),
        "height": np.asarray(group["height"], dtype=np.int8)[first],
        "width": np.asarray(group["width"], dtype=np.int8)[first],
        "answer": np.array([a if r <= ATTEMPTS else b"" for a, r in zip(answers, rank)], dtype=object),
    }


def pass_at_k(test_counts: dict, correct_task_ids, correct_example_index, correct_rank, ks) -> dict:
    """{"pass@K": score} with fractional credit per task.

    test_counts: {task_id: number of test inputs} for every task of the test subset; correct_*: one entry
    per test input whose true output was among the ranked answers, with its rank (1-based).
    """
    if not test_counts:
        raise ValueError("no test tasks to score")
    tasks = list(test_counts)
    index = {t: i for i, t in enumerate(tasks)}
    per_task = np.asarray([test_counts[t] for t in tasks], dtype=np.float64)
    task_of = np.asarray([index[str(t)] for t in correct_task_ids], dtype=np.int64)
    rank = np.asarray(correct_rank, dtype=np.int64)
    if len(set(zip(task_of.tolist(), np.asarray(correct_example_index).tolist()))) != len(task_of):
        raise ValueError("a test input is listed twice among the correct answers")
    return {f"pass@{k}": float(np.mean(np.bincount(task_of[rank <= k], minlength=len(tasks)) / per_task))
            for k in ks}


def build_submission(test_counts: dict, attempts: dict) -> dict:
    """The ARC Prize `submission.json`: {task_id: [{"attempt_1": grid, "attempt_2": grid}, ...]} with one
    entry per test input of every task, in order.

    attempts: {input_key: [grid, ...]} best first (grids as nested lists). A single distinct answer is
    repeated as attempt_2; a test input without any answer gets FALLBACK_GRID twice, so the file is
    always complete.
    """
    submission = {}
    for task_id, count in test_counts.items():
        entries = []
        for example in range(int(count)):
            grids = list(attempts.get(input_key(task_id, example), []))[:ATTEMPTS] or [FALLBACK_GRID]
            grids += [grids[-1]] * (ATTEMPTS - len(grids))
            entries.append({f"attempt_{i + 1}": g for i, g in enumerate(grids)})
        submission[task_id] = entries
    return submission


def grid_from_cells(cells: bytes, height: int, width: int) -> list:
    """Answer bytes as stored in the votes/predictions -> a nested list grid."""
    return np.frombuffer(cells, dtype=np.uint8).reshape(int(height), int(width)).tolist()
