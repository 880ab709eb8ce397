"""Puzzle CSV rows: a refusal names the first bad row's file and line, its reason, and how many more are bad."""
import numpy as np
import pytest

from pipeline.data import sources
from pipeline.errors import PipelineError


def rows(count: int) -> sources.PuzzleRows:
    return sources.PuzzleRows("puzzles.csv", ["q"] * count, ["a"] * count, np.full(count, np.nan),
                              np.arange(count, dtype=np.int64) + 2)


def test_the_first_bad_row_is_named_with_the_count_of_the_others():
    reasons = np.array(["", "too short", "", "bad digit"], dtype=object)
    with pytest.raises(PipelineError) as err:
        sources.raise_first_bad(rows(4), reasons, option="eval.source: ", note=" (size 9)")
    assert str(err.value) == "eval.source: puzzles.csv, line 3: too short (size 9) (and 1 more bad rows)"
    with pytest.raises(PipelineError) as err:
        sources.raise_first_bad(rows(4), np.where(np.arange(4) == 3, "several solutions", ""), kind="such",
                                hint="; allow them")
    assert str(err.value) == "puzzles.csv, line 5: several solutions; allow them"


def test_rows_without_a_reason_pass():
    sources.raise_first_bad(rows(3), np.array(["", "", ""], dtype=object))
    sources.raise_first_bad(rows(0), np.zeros(0, dtype=object))
