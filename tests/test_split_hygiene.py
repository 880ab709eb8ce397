"""Split hygiene on keys alone: validation and test puzzles equivalent to a training one are dropped."""
import numpy as np

from pipeline.data import dataset_format as fmt
from pipeline.data import split_hygiene


def test_row_keys_compare_whole_rows():
    keys = np.array([[1, 2, 3], [4, 5, 6], [1, 2, 3], [1, 2, 4]], dtype=np.uint8)
    assert split_hygiene.seen_in(keys, keys[:2]).tolist() == [True, True, True, False]
    assert split_hygiene.first_of_kind(keys).tolist() == [True, True, False, True]
    assert split_hygiene.seen_in(keys, np.zeros(0)).tolist() == [False] * 4     # an empty split's column
    assert split_hygiene.seen_in(np.zeros(0), keys).tolist() == []


def test_new_keys_match_a_running_set():
    """`first_of_kind & ~seen_in` over successive batches keeps what a Python set of keys seen so far keeps."""
    rng = np.random.default_rng(0)
    seen, seen_set = np.array([3, 9], dtype=np.uint64), {3, 9}
    for _ in range(5):
        keys = rng.integers(0, 40, 25).astype(np.uint64)
        fresh = split_hygiene.first_of_kind(keys) & ~split_hygiene.seen_in(keys, seen)
        expected = []
        for k in keys.tolist():
            expected.append(k not in seen_set)
            seen_set.add(k)
        assert fresh.tolist() == expected
        seen = np.union1d(seen, keys)


def test_held_out_and_leaked_puzzles():
    train_keys = np.array([10, 11, 12, 13, 14, 15, 10, 16], dtype=np.uint64)     # row 6 repeats row 0's key
    test_keys = np.array([20, 12, 21, 15], dtype=np.uint64)
    assert fmt.held_out_groups(8, 3, seed=4).tolist() == [5, 6, 7]              # keys 15, 10, 16 held out
    keep, dropped = split_hygiene.hold_out_and_drop(train_keys, np.arange(8), test_keys, 3, 4, "puzzle")
    assert keep["train"].tolist() == [True] * 5 + [False] * 3
    assert keep["val"].tolist() == [False] * 5 + [True, False, True]           # 10 is a training key
    assert keep["test"].tolist() == [True, False, True, True]                  # 12 too; 15 was held out
    assert dropped == {"val": 1, "test": 1}
