"""The task registry: every puzzle type is one module under pipeline/tasks/ with the hooks the stages call."""
import pytest

from pipeline import tasks
from pipeline.errors import PipelineError
from tests.conftest import compose


def test_every_task_module_has_the_hooks_its_stages_call():
    assert tasks.names() == ("arc", "maze", "sudoku")
    for name in tasks.names():
        module = tasks.get(name)
        assert callable(module.build) and module.EVAL_STAGE in ("eval", "eval_arc")
        assert module.PALETTE is not None or callable(module.draw)
        compose(f"task={name}")                      # its config group exists
        if module.EVAL_STAGE == "eval":
            assert callable(module.csv_reasons) and callable(module.encode_csv) and callable(module.tta_transform)
            assert all(callable(module.score_batch) for _ in module.EXTRA_RATES)


def test_an_unknown_task_is_refused_with_the_choices():
    with pytest.raises(PipelineError, match="task='kakuro' is not a puzzle type here; choose one of arc, maze, sudoku"):
        tasks.get("kakuro")
