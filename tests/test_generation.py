"""pipeline.data.generation.collect_kept: tries until enough rows are kept, in order, or a clear error."""
import numpy as np
import pytest

from pipeline.data.generation import collect_kept


def test_keeps_the_first_rows_in_try_order():
    tries = iter([(np.array([1, 2]), np.array([10, 20])), (np.array([], int), np.array([], int)),
                  (np.array([3, 4, 5]), np.array([30, 40, 50]))])
    values, doubled = collect_kept(4, lambda: next(tries), "test chunk")
    assert values.tolist() == [1, 2, 3, 4] and doubled.tolist() == [10, 20, 30, 40]


def test_running_out_of_tries_names_the_chunk():
    with pytest.raises(RuntimeError, match=r"sudoku chunk 3 of train: rated >= 80: only 2 of 5 kept after 2 tries"):
        collect_kept(5, lambda: (np.array([7]),), "sudoku chunk 3 of train: rated >= 80", max_tries=2)
