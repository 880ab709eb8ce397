"""The ARC metric of training's periodic evaluation: pass@k after voting over the versions of each validation
test input, scored as `stage=eval_arc` scores the test split (`pipeline.tasks.arc.voting`), not exact accuracy of
single rows. Pure numpy: the train loop gathers each rank's votes and calls `scores`.
"""
import numpy as np

from pipeline.tasks.arc import voting as arc_voting

COLUMNS = ["task_id", "example_index", "dihedral", "colour_map"]   # what a validation row needs besides tokens
KS = (1, 2)


def truth(labels: np.ndarray, rows: dict) -> np.ndarray:
    """The hash of each row's true output in its task's frame (validation rows sit at offset (0, 0))."""
    return arc_voting.decode_predictions(labels, rows["dihedral"], rows["colour_map"])["answer_hash"]


def votes(preds: np.ndarray, q_halt: np.ndarray, rows: dict, truth_hashes: np.ndarray) -> list:
    """One (task_id, example_index, answer_hash, q_halt, true hash) per evaluated row."""
    answers = arc_voting.decode_predictions(preds, rows["dihedral"], rows["colour_map"])["answer_hash"]
    return list(zip(map(str, rows["task_id"]), map(int, rows["example_index"]), answers, map(float, q_halt),
                    truth_hashes))


def scores(all_votes: list) -> dict:
    """{"eval/pass@K": ...} over every validation task, from the votes of all ranks."""
    by_input: dict = {}
    for task_id, example, answer, q, true in all_votes:
        by_input.setdefault((task_id, example), ([], [], true))[0].append(answer)
        by_input[(task_id, example)][1].append(q)
    test_counts: dict = {}
    solved_tasks, solved_examples, solved_ranks = [], [], []
    for (task_id, example), (answers, qs, true) in sorted(by_input.items()):
        test_counts[task_id] = test_counts.get(task_id, 0) + 1
        first, _, _ = arc_voting.rank_answers(np.array(answers, dtype=object), np.array(qs))
        ranked = np.array(answers, dtype=object)[first]
        hit = np.flatnonzero(ranked == true)
        if hit.size:
            solved_tasks.append(task_id)
            solved_examples.append(example)
            solved_ranks.append(int(hit[0]) + 1)
    if not test_counts:
        return {}
    passed = arc_voting.pass_at_k(test_counts, solved_tasks, solved_examples, solved_ranks, KS)
    return {f"eval/{name}": value for name, value in passed.items()}
