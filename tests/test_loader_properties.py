"""Every loader a user feeds, on generated inputs (hypothesis): valid files and their mutations (bytes edited,
JSON/YAML values replaced or dropped, tensors reshaped or retyped, files truncated) are either accepted or
refused with a `PipelineError` naming the file; never another exception. The loaders only read: nothing is
written, so nothing can be left half-written.

Each test checks that hypothesis tried EXAMPLES inputs per loader.
"""
import copy
import json
import os
import tempfile
from pathlib import Path
from unittest import mock

import numpy as np
import pytest
import torch
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from augment import maze
from pipeline.checkpoints import arc_identifiers
from pipeline.checkpoints import reference as ref
from pipeline.data import sources
from pipeline.errors import PipelineError
from pipeline.stages import eval as eval_stage
from pipeline.tasks import maze as maze_task
from pipeline.tasks import sudoku as sudoku_task
from pipeline.tasks.arc import sources as arc_sources
from tests.test_reference_checkpoint import documented_config, documented_state

# inputs per loader (hypothesis stops earlier only when it has tried every input it can make); CI's share of the
# suite's time. TRM_LOADER_EXAMPLES=1000 for a longer search.
EXAMPLES = int(os.environ.get("TRM_LOADER_EXAMPLES", 60))
SETTINGS = settings(max_examples=EXAMPLES, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
TRIED = {}                   # loader -> inputs tried, checked against EXAMPLES at the end of each test


def tried(loader: str) -> None:
    TRIED[loader] = TRIED.get(loader, 0) + 1

# ---------------------------------------------------------------------------------------------------
# Mutations shared by every format

ALPHABET = list(b".,0123456789\"\n\r #SGo{}[]:-_tx\x00\xff\xc3")
edit = st.tuples(st.sampled_from(["insert", "delete", "replace", "truncate"]), st.floats(0, 1),
                 st.one_of(st.sampled_from(ALPHABET).map(lambda b: bytes([b])), st.binary(min_size=1, max_size=4)))


def apply_edits(data: bytes, edits) -> bytes:
    for kind, where, chunk in edits:
        at = int(where * len(data))
        if kind == "insert":
            data = data[:at] + chunk + data[at:]
        elif kind == "delete":
            data = data[:at] + data[at + len(chunk):]
        elif kind == "replace":
            data = data[:at] + chunk + data[at + len(chunk):]
        else:
            data = data[:at]
    return data


json_values = st.recursive(st.none() | st.booleans() | st.integers(-20, 40) | st.floats(allow_nan=False) | st.text(max_size=6),
                           lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner, max_size=4),
                           max_leaves=8)


def paths_of(value, prefix=()):
    """Every (path) to a value inside nested dicts/lists, the root included."""
    yield prefix
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for key, inner in items:
        yield from paths_of(inner, (*prefix, key))


@st.composite
def mutated_tree(draw, valid):
    """`valid` (nested dicts/lists) with a few values replaced by random JSON, or removed."""
    tree = copy.deepcopy(valid)
    for _ in range(draw(st.integers(1, 3))):
        paths = list(paths_of(tree))
        path = draw(st.sampled_from(paths))
        if not path:
            tree = draw(json_values)
            continue
        parent = tree
        for key in path[:-1]:
            parent = parent[key]
        if draw(st.booleans()):
            parent[path[-1]] = draw(json_values)
        elif isinstance(parent, dict):
            del parent[path[-1]]
        else:
            parent.pop(path[-1])
    return tree


def text_file(valid: st.SearchStrategy) -> st.SearchStrategy:
    """Bytes of a valid file, or the same with random edits, or arbitrary bytes."""
    return st.one_of(valid, st.tuples(valid, st.lists(edit, min_size=1, max_size=4)).map(lambda v: apply_edits(*v)),
                     st.binary(max_size=200))


def assert_accepted_or_refused(load, named: str):
    """`load()` returns, or raises PipelineError naming `named`; anything else fails the test."""
    try:
        load()
    except PipelineError as err:
        assert named in str(err), f"the error does not name {named}: {err}"
        assert "\n" not in str(err), f"the error is not one line: {err}"


# ---------------------------------------------------------------------------------------------------
# Sudoku and maze CSVs (stage=augment task.source=, stage=eval eval.source=)

SUDOKU_4 = "1234341221434321"


@st.composite
def sudoku_csv(draw):
    rows = []
    for _ in range(draw(st.integers(1, 4))):
        relabel = draw(st.permutations("1234"))
        answer = "".join(relabel[int(c) - 1] for c in SUDOKU_4)
        blanks = draw(st.sets(st.integers(0, 15), max_size=6))
        question = "".join("." if i in blanks else c for i, c in enumerate(answer))
        rating = draw(st.sampled_from(["0", "3", "", "1.5"]))
        rows.append(f"gen,{question},{answer},{rating}")
    return ("source,question,answer,rating\n" + "\n".join(rows) + "\n").encode()


@st.composite
def maze_csv(draw):
    seed = draw(st.integers(0, 2**16))
    questions, answers, _ = maze.generate(np.random.default_rng(seed), draw(st.integers(1, 3)), 5, "random", 0.3)
    lines = ["source,question,answer,rating"]
    lines += [f"gen,{q},{a},0" for q, a in zip(maze.format_grids(questions), maze.format_grids(answers))]
    return ("\n".join(lines) + "\n").encode()


def _augment_sudoku(path: str):
    for part in sources.read_puzzle_source(path).values():
        sudoku_task._validate(part, 4)
        sudoku_task._count_non_unique(part, 4, allowed=False)


def _augment_maze(path: str):
    for part in sources.read_puzzle_source(path).values():
        maze_task._parse_and_validate(part, 5)


@pytest.mark.parametrize("task, valid, augment_load, module", [
    ("sudoku", sudoku_csv(), _augment_sudoku, sudoku_task),
    ("maze", maze_csv(), _augment_maze, maze_task),
], ids=["sudoku", "maze"])
def test_puzzle_csv_is_accepted_or_refused_naming_the_file(task, valid, augment_load, module):
    @SETTINGS
    @given(data=text_file(valid))
    def check(data):
        tried(task)
        with tempfile.TemporaryDirectory() as folder:
            path = str(Path(folder) / "puzzles.csv")
            Path(path).write_bytes(data)
            assert_accepted_or_refused(lambda: augment_load(path), path)
            assert_accepted_or_refused(lambda: eval_stage.csv_dataset(path, module, {"size": 4 if task == "sudoku" else 5,
                                                                                     "task": task}), path)
    with mock.patch.object(eval_stage.ray.data, "from_arrow", lambda tables: tables):   # the loading, not Ray Data
        check()
    assert TRIED[task] >= EXAMPLES


# ---------------------------------------------------------------------------------------------------
# ARC JSON: the Kaggle layout (challenges + solutions) and the ARC-AGI folder layout

VALID_TASK = {"train": [{"input": [[1, 2], [3, 4]], "output": [[4, 3], [2, 1]]}, {"input": [[5]], "output": [[6]]}],
              "test": [{"input": [[0, 7, 9]], "output": [[9, 7, 0]]}]}


def arc_json(valid_obj) -> st.SearchStrategy:
    """A valid JSON document, one with values replaced/removed, or its bytes edited."""
    return st.one_of(mutated_tree(valid_obj).map(lambda v: json.dumps(v).encode()),
                     text_file(st.just(json.dumps(valid_obj).encode())))


def test_arc_kaggle_files_are_accepted_or_refused_naming_the_file():
    challenges = {"t1": {k: VALID_TASK[k] for k in ("train",)} | {"test": [{"input": [[0, 7, 9]]}]}, "t2": VALID_TASK}
    solutions = {"t1": [[[9, 7, 0]]], "t2": [[[9, 7, 0]]]}

    @SETTINGS
    @given(st.one_of(st.tuples(arc_json(challenges), st.just(json.dumps(solutions).encode())),
                     st.tuples(st.just(json.dumps(challenges).encode()), arc_json(solutions))))
    def check(files):
        tried("arc_kaggle")
        with tempfile.TemporaryDirectory() as folder:
            prefix = str(Path(folder) / "arc")
            Path(f"{prefix}_training_challenges.json").write_bytes(files[0])
            Path(f"{prefix}_training_solutions.json").write_bytes(files[1])
            # a broken challenges file may be refused for what the solutions file then lacks: either is named
            assert_accepted_or_refused(lambda: arc_sources.load_subsets(prefix, ["training"]), f"{prefix}_training_")
    check()
    assert TRIED["arc_kaggle"] >= EXAMPLES


def test_arc_task_folder_is_accepted_or_refused_naming_the_file():
    @SETTINGS
    @given(arc_json(VALID_TASK))
    def check(data):
        tried("arc_folder")
        with tempfile.TemporaryDirectory() as folder:
            (Path(folder) / "training").mkdir()
            Path(folder, "training", "0a1b2c3d.json").write_bytes(data)
            assert_accepted_or_refused(lambda: arc_sources.load_subsets(folder, ["training"]),
                                       str(Path(folder, "training", "0a1b2c3d.json")))
    check()
    assert TRIED["arc_folder"] >= EXAMPLES


# ---------------------------------------------------------------------------------------------------
# Reference runs: all_config.yaml + step_<N>; identifiers.json

def _saved_state(state) -> bytes:
    import io
    buffer = io.BytesIO()
    torch.save(state, buffer)
    return buffer.getvalue()


@st.composite
def step_file(draw):
    state = documented_state(vocab=11, seq_len=16, rows=3)
    keys = sorted(state)
    choice = draw(st.sampled_from(["valid", "drop", "rename", "reshape", "retype", "not_tensor", "bytes", "nested"]))
    key = draw(st.sampled_from(keys))
    if choice == "drop":
        del state[key]
    elif choice == "rename":
        state[key + draw(st.text("abc.", min_size=1, max_size=3))] = state.pop(key)
    elif choice == "reshape":
        state[key] = torch.zeros(tuple(draw(st.lists(st.integers(0, 5), max_size=3))))
    elif choice == "retype":
        state[key] = state[key].to(draw(st.sampled_from([torch.int64, torch.bool, torch.uint8, torch.float16])))
    elif choice == "not_tensor":
        state[key] = draw(st.one_of(st.integers(), st.text(max_size=4), st.none()))
    elif choice == "nested":
        state = draw(st.sampled_from([{"model": state}, [state], {}, {"model": 3}]))
    data = _saved_state(state)
    if choice == "bytes":
        data = apply_edits(data, draw(st.lists(edit, min_size=1, max_size=3)))
    return data


def test_reference_run_is_accepted_or_refused_naming_the_file():
    config = documented_config()

    @SETTINGS
    @given(st.one_of(st.tuples(st.just(yaml.safe_dump(config).encode()), step_file()),
                     st.tuples(st.one_of(mutated_tree(config).map(lambda v: yaml.safe_dump(v).encode()),
                                         text_file(st.just(yaml.safe_dump(config).encode()))),
                               st.just(_saved_state(documented_state(vocab=11, seq_len=16, rows=3))))))
    def check(files):
        tried("reference_run")
        with tempfile.TemporaryDirectory() as folder:
            Path(folder, "all_config.yaml").write_bytes(files[0])
            Path(folder, "step_12").write_bytes(files[1])
            assert_accepted_or_refused(lambda: ref.read_reference(folder), folder)
    check()
    assert TRIED["reference_run"] >= EXAMPLES


def test_identifiers_json_is_accepted_or_refused_naming_the_file():
    names = ["<blank>", "t1", "t1|||t3|||0123456789", "t2|||t0|||0213456789"]

    @SETTINGS
    @given(arc_json(names))
    def check(data):
        tried("identifiers")
        with tempfile.TemporaryDirectory() as folder:
            path = str(Path(folder) / "identifiers.json")
            Path(path).write_bytes(data)
            assert_accepted_or_refused(lambda: arc_identifiers.named_versions(arc_identifiers.read_names(path),
                                                                              ["t1", "t2"], path), path)
    check()
    assert TRIED["identifiers"] >= EXAMPLES
