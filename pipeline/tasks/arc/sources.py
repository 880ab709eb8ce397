"""Reading ARC tasks from the three layouts they are published in, validated, with their origin.

- Kaggle "combined": `task.source` is a prefix; subset s is `<prefix>_<s>_challenges.json` with the test
  outputs in `<prefix>_<s>_solutions.json` (optional: without it the test outputs are unknown).
- ARC-AGI repository: `task.source` is a folder holding `<subset>/<task_id>.json`.
- `hf:<dataset id>`: a `datasets` dataset with one split per subset and columns `id` (or `task_id`),
  `train` and `test` (lists of {input, output}).
Local paths and `s3://` URLs both work (fsspec).
"""
import logging
import os

from augment.arc import ArcTaskError, as_grid, parse_task
from pipeline import storage
from pipeline.errors import PipelineError

log = logging.getLogger(__name__)

ID_COLUMNS = ("id", "task_id")


def load_subsets(source: str, subsets: list, keep=None) -> dict:
    """{subset: {task_id: (ArcTask, origin)}} for every subset, in file order; `keep` (a set of task ids)
    limits parsing and validation to those tasks."""
    if source.startswith("hf:"):
        return _load_hf(source[3:], subsets, keep)
    fs, path = storage.filesystem(source)
    fs.invalidate_cache()
    if fs.isdir(path):
        return {s: _load_task_dir(storage.join(source, s), keep) for s in subsets}
    return {s: _load_kaggle(source, s, keep) for s in subsets}


def _read_json(path: str):
    try:
        return storage.read_json(path)
    except ValueError as err:        # JSONDecodeError, or UnicodeDecodeError: not UTF-8 text
        raise PipelineError(f"{path}: not valid JSON ({type(err).__name__}: {err})") from None


def _parse(task_id: str, raw, origin: str, test_outputs=None) -> tuple:
    try:
        return parse_task(task_id, raw, test_outputs), origin
    except ArcTaskError as err:
        raise PipelineError(f"{origin}: {err}") from None


def _load_kaggle(prefix: str, subset: str, keep) -> dict:
    challenges_path = f"{prefix}_{subset}_challenges.json"
    solutions_path = f"{prefix}_{subset}_solutions.json"
    if not storage.exists(challenges_path):
        raise PipelineError(f"task.source={prefix}: {challenges_path} not found (expected a Kaggle prefix "
                            f"<prefix>_<subset>_challenges.json, a folder <dir>/<subset>/<task>.json, or hf:<id>)")
    challenges = _read_json(challenges_path)
    if not isinstance(challenges, dict):
        raise PipelineError(f"{challenges_path}: expected an object {{task_id: task}}")
    solutions = _read_json(solutions_path) if storage.exists(solutions_path) else None
    if solutions is None:
        log.warning("%s not found: the test outputs of subset %r are unknown", solutions_path, subset)
    elif not isinstance(solutions, dict):
        raise PipelineError(f"{solutions_path}: expected an object {{task_id: [output grid, ...]}}")
    tasks = {}
    for task_id, raw in challenges.items():
        if keep is not None and task_id not in keep:
            continue
        outputs = None
        if solutions is not None:
            if task_id not in solutions:
                raise PipelineError(f"{solutions_path}: task {task_id}: no solutions listed")
            outputs = solutions[task_id]
            if not isinstance(outputs, list):
                raise PipelineError(f"{solutions_path}: task {task_id}: expected a list of output grids")
            _check_solutions(outputs, raw, task_id, solutions_path, challenges_path)
        tasks[task_id] = _parse(task_id, raw, challenges_path, outputs)
    return tasks


def _check_solutions(outputs: list, raw, task_id: str, solutions_path: str, challenges_path: str) -> None:
    """The solutions file's grids of one task, checked here so that an error names that file."""
    for i, grid in enumerate(outputs):
        try:
            as_grid(grid)
        except ValueError as err:
            raise PipelineError(f"{solutions_path}: task {task_id}, test output {i}: {err}") from None
    inputs = raw.get("test") if isinstance(raw, dict) else None
    if isinstance(inputs, list) and len(inputs) != len(outputs):
        raise PipelineError(f"{solutions_path}: task {task_id}: {len(outputs)} solution grids for the {len(inputs)} "
                            f"test inputs of {challenges_path}")


def _load_task_dir(folder: str, keep) -> dict:
    files = storage.list_files(folder, ".json")
    if not files:
        raise PipelineError(f"task.source: no <task_id>.json files in {folder}")
    tasks = {}
    for path in files:
        task_id = os.path.splitext(os.path.basename(path))[0]
        if keep is None or task_id in keep:
            tasks[task_id] = _parse(task_id, _read_json(path), path)
    return tasks


def _load_hf(dataset_id: str, subsets: list, keep) -> dict:
    import datasets
    try:
        splits = datasets.load_dataset(dataset_id)
    except Exception as err:  # the library raises many types; the user needs the id and the reason
        raise PipelineError(f"task.source=hf:{dataset_id}: could not load ({type(err).__name__}: {err})") from None
    out = {}
    for subset in subsets:
        if subset not in splits:
            raise PipelineError(f"task.source=hf:{dataset_id}: no split {subset!r} (task.subsets); "
                                f"it has {sorted(splits)}")
        split = splits[subset]
        id_column = next((c for c in ID_COLUMNS if c in split.column_names), None)
        if id_column is None or not {"train", "test"} <= set(split.column_names):
            raise PipelineError(f"hf:{dataset_id}[{subset}]: needs columns id (or task_id), train, test; "
                                f"found {split.column_names}")
        tasks = {}
        for row, record in enumerate(split):
            task_id = str(record[id_column])
            if keep is None or task_id in keep:
                tasks[task_id] = _parse(task_id, {"train": record["train"], "test": record["test"]},
                                        f"hf:{dataset_id}[{subset}] row {row}")
        out[subset] = tasks
    return out
