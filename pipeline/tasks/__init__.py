"""The puzzle types, one module each (`pipeline/tasks/<name>.py`, configured by `pipeline/conf/task/<name>.yaml`),
looked up by name by every stage: adding a puzzle type is that module, its config and its tests.

A task module defines
- `TaskOptions`: its `task:` section as a frozen dataclass (`pipeline.options`: typed fields, `check(section)` for
  the rules between them), built and checked with the rest of the config;
- `build(cfg, data_dir) -> dict`: stage=augment. Writes the splits through `dataset_format.write_split` and
  returns the manifest's task fields (`seq_len`, `vocab_size`, `num_puzzle_identifiers`, ...).
- `EVAL_STAGE`: the stage that scores its checkpoints (`eval`: exact answers, `eval_arc`: voted pass@k),
  which `stage=all` runs.
- `PALETTE`: a colour per token for the PNGs, or None with `draw(ax, grid, target, givens)` drawing a panel.
and, when `EVAL_STAGE == "eval"`:
- `csv_reasons(rows, size) -> array of str` and `encode_csv(rows, size) -> (inputs, labels)`: `eval.source=`
  puzzles (a `sources` table) checked (one reason per bad row, "" when fine), then tokenised;
- `MAX_TTA` (None: no limit) and `tta_transform(size, tta, rngs) -> apply(v, grids, inverse)`: the
  test-time versions of a batch (`rngs`: one generator per puzzle) and their exact inverses;
- `EXTRA_RATES` ({column: metric name}) and `score_batch(batch, size) -> batch`: boolean columns of the
  predictions the stage reports as rates (maze: a valid shortest path); `{}` and no function when none.
"""
import functools
import importlib
import pkgutil

from pipeline.errors import PipelineError


@functools.cache
def names() -> tuple[str, ...]:
    """The task modules' names (listed once: `get` runs per inference batch and per picture)."""
    return tuple(sorted(module.name for module in pkgutil.iter_modules(__path__)))


def get(name: str):
    """The task module called `name`."""
    if name not in names():
        raise PipelineError(f"task={name!r} is not a puzzle type here; choose one of {', '.join(names())} "
                            f"(pipeline/tasks/)")
    return importlib.import_module(f"{__name__}.{name}")
