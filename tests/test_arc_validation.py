"""Training's ARC metric: pass@k after voting over each validation input's versions, from the ranks' votes."""
import numpy as np
import pytest

from augment import arc
from pipeline.tasks.arc import validation as arc_validation
from pipeline.tasks.arc.voting import NO_ANSWER


def test_scores_vote_per_input_and_credit_tasks_fractionally():
    votes = [("X", 0, "h1", 0.0, "h2"), ("X", 0, "h1", 0.0, "h2"), ("X", 0, "h2", 5.0, "h2"),   # truth ranked 2nd
             ("X", 1, "h3", -1.0, "h3"),                                                      # ranked 1st
             ("Y", 0, NO_ANSWER, 3.0, "h4")]                                                  # no answer
    scores = arc_validation.scores(votes)
    assert scores == {"eval/pass@1": pytest.approx((0.5 + 0) / 2), "eval/pass@2": pytest.approx((1 + 0) / 2)}
    assert arc_validation.scores([]) == {}


def test_a_correct_prediction_in_any_version_decodes_to_the_truth():
    rng = np.random.default_rng(0)
    grid = rng.integers(0, 10, size=(3, 4))
    rows = {"dihedral": np.array([0, 5]), "colour_map": np.stack([np.arange(10), rng.permutation(10)]),
            "task_id": np.array(["t", "t"], dtype=object), "example_index": np.array([0, 0])}
    canvases = np.zeros((2, 100), np.uint8)
    arc.encode_versions([(grid, grid)], rows["dihedral"], rows["colour_map"], None, canvases.copy(), canvases)
    truth = arc_validation.truth(canvases, rows)
    assert truth[0] == truth[1] != NO_ANSWER
    votes = arc_validation.votes(canvases, np.zeros(2), rows, truth)
    assert arc_validation.scores(votes) == {"eval/pass@1": 1.0, "eval/pass@2": 1.0}
