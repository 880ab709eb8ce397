"""The ARC task. `stage=augment task=arc`: ARC tasks, augmented, as N x N token canvases (Parquet shards + side
files); scored by `stage=eval_arc`.

`task.canvas=N` (default 30, the reference's) keeps only the tasks whose grids all fit on N x N (the
manifest counts the others per subset): small canvases put small-grid tasks within a CPU's reach.

The driver reads and validates every task, checks for leakage, and chooses each task's versions (the
identity plus up to `task.num_aug` distinct (dihedral, colour map) pairs; cheap: no grid is built). That
fixes the puzzle identifiers: one per (task, version), consecutive per task. With `task.identifiers=<a reference
identifiers.json>` the versions are instead exactly those it names (the identity first), so a reference
checkpoint's trained rows serve every version (`pipeline.checkpoints.arc_identifiers`). Ray Data then encodes: each
work unit is a run of whole tasks of about `task.rows_per_file` rows that one Ray task encodes into
preallocated arrays and writes as one Parquet file, a row group of about `task.rows_per_group` rows at a
time (`dataset_format.write_files`), so no process ever holds more than a row group.

Routing as the reference: demo pairs of every task -> train; test pairs of `task.test_subset` -> test;
test pairs of the other subsets -> train, except those of `task.num_val` seeded tasks -> val (their
demonstrations still train, so the model knows their identifiers). With `task.val_from_demos=true`, each
test task with at least 3 demonstrations lends its last one to val instead of train: a validation signal on
the very tasks that are scored that never reads their test pairs. Train rows are translated on the canvas; test rows sit at
(0, 0) (as do val rows) and share the identifier of their (task, version). Every row carries its transform (`dihedral`,
`colour_map`, `offset_row`, `offset_col`) so a prediction maps back exactly (`augment.arc.to_original`).
A task's versions and offsets depend only on `seed` and its task id.
"""
import hashlib
import logging
import posixpath
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from ray.data.extensions import ArrowTensorArray

from augment import arc
from pipeline import storage
from pipeline.checkpoints import arc_identifiers
from pipeline.data import dataset_format as fmt
from pipeline.errors import PipelineError
from pipeline.options import Options, at_least
from pipeline.tasks.arc import sources

log = logging.getLogger(__name__)

PLAN_STREAM, TRANSLATE_STREAM = 1, 2       # independent random streams per task
IDENTIFIERS_FILE = "identifiers.parquet"
TEST_PUZZLES_FILE = "test_puzzles.json"
EXAMPLES_SHOWN = 5                         # overlaps quoted in an error message
MIN_DEMOS_TO_LEND = 3                      # task.val_from_demos: a task keeps at least 2 demonstrations to train on
# Canvases are ~83% PAD: zstd alone shrinks them ~20x, and skipping Parquet's dictionary encoding of the
# 2 x 900 tokens per row saves about a quarter of the write time (files about 2x larger; measured).
PARQUET_OPTIONS = {"use_dictionary": ["task_id"]}

# The task's hooks for the other stages (pipeline/tasks/__init__.py)
EVAL_STAGE = "eval_arc"
ARC_COLOURS = ["#000000", "#0074D9", "#FF4136", "#2ECC40", "#FFDC00", "#AAAAAA", "#F012BE", "#FF851B",
               "#7FDBFF", "#870C25"]
PALETTE = ["#111111", "#555555"] + ARC_COLOURS          # PAD, EOS, colours 0..9
LEGEND = "ARC's ten colours; near-black: outside the grid    grey: the end-of-grid marker"


def build(cfg, data_dir: str) -> dict:
    task = Options.of(cfg).task
    if task.source is None:
        raise PipelineError("task.source is not set: pass the ARC tasks as task.source=<prefix> (Kaggle files "
                            "<prefix>_<subset>_challenges.json), a folder <dir>/<subset>/<task_id>.json, or hf:<id>")
    subsets, test_subset = list(task.subsets), task.test_subset
    source = storage.to_absolute(task.source)
    keep = None if task.task_ids is None else {str(t) for t in task.task_ids}
    exclude = {str(t) for t in (task.exclude_task_ids or [])}
    loaded = sources.load_subsets(source, subsets, keep)
    if keep is not None:
        missing = sorted(keep - {t for tasks in loaded.values() for t in tasks})
        if missing:
            raise PipelineError(f"task.task_ids: {missing} not found in task.subsets={subsets} of {source}")
    groups = [(s, tid, t) for s in subsets for tid, (t, _) in loaded[s].items() if tid not in exclude]
    canvas = task.canvas
    fitting = [arc.fits(t, canvas) for _, _, t in groups]
    too_large = {s: sum(1 for (g, _, _), ok in zip(groups, fitting) if g == s and not ok) for s in subsets}
    if any(too_large.values()):
        log.info("task.canvas=%d: left out %s tasks with a grid side above %d", canvas,
                 ", ".join(f"{k} {s}" for s, k in too_large.items() if k), canvas)
    groups = [g for g, ok in zip(groups, fitting) if ok]
    if not any(s == test_subset for s, _, _ in groups):
        dropped = f" (task.canvas={canvas} left out {too_large[test_subset]} of them)" if too_large[test_subset] else ""
        raise PipelineError(f"task.test_subset={test_subset}: no tasks left to test on{dropped}")

    overlap = find_overlap(groups, test_subset)
    if overlap["count"]:
        message = f"{overlap['summary']} (task.source={source})"
        if not task.allow_overlap:
            raise PipelineError(f"{message}. Set task.allow_overlap=true to build anyway, or drop tasks with "
                                f"task.exclude_task_ids")
        log.warning("%s; building anyway (task.allow_overlap=true)", message)

    num_aug, seed = task.num_aug, int(cfg.seed)
    if task.identifiers:   # exactly the versions a reference checkpoint was trained on, by name
        names_file = storage.to_absolute(task.identifiers)
        plans = arc_identifiers.named_versions(arc_identifiers.read_names(names_file), [tid for _, tid, _ in groups],
                                               f"task.identifiers={task.identifiers}")
    else:
        plans = [arc.plan_versions(t, num_aug, _task_rng(seed, PLAN_STREAM, tid)) for _, tid, t in groups]
    sizes = np.array([len(d) for d, _ in plans])
    first_ids = 1 + np.concatenate([[0], np.cumsum(sizes)[:-1]])       # 0 is the blank identifier
    short = int((sizes < num_aug + 1).sum())
    log.info("%d tasks, %d versions (%d tasks have fewer than %d distinct versions)",
             len(groups), sizes.sum(), short, num_aug + 1)

    _write_identifiers(storage.join(data_dir, IDENTIFIERS_FILE), groups, plans, first_ids)
    test_tasks = {tid: t for s, tid, t in groups if s == test_subset}
    _write_test_puzzles(storage.join(data_dir, TEST_PUZZLES_FILE), test_tasks)

    records = {"train": [], "val": [], "test": []}
    skipped = 0
    held = _validation_groups(groups, test_subset, task.num_val, seed)
    val_demos = task.val_from_demos
    for group_id, ((subset, tid, t), (dihedral, maps), first_id) in enumerate(zip(groups, plans, first_ids)):
        common = dict(task_id=tid, group_id=group_id, first_id=int(first_id), dihedral=dihedral, colour_maps=maps)
        known_tests = [(i, p, True) for i, p in enumerate(t.test) if p[1] is not None]
        train = [(i, p, False) for i, p in enumerate(t.train)]
        if subset == test_subset:
            records["test"].append(dict(common, pairs=[(i, p, True) for i, p in enumerate(t.test)]))
            if val_demos and len(train) >= MIN_DEMOS_TO_LEND:    # its last demonstration validates instead
                *train, lent = train
                records["val"].append(dict(common, pairs=[lent]))
        elif group_id in held:         # its demonstrations are trained on, its test pairs validate
            records["val"].append(dict(common, pairs=known_tests))
        else:
            train += known_tests
            skipped += len(t.test) - len(known_tests)
        records["train"].append(dict(common, pairs=train))
    if skipped:
        log.warning("%d test pairs of non-test subsets have no known output; left out of training", skipped)

    rows_per_file = task.rows_per_file
    for split in fmt.SPLITS:
        if not records[split]:
            continue
        units = _units(records[split], rows_per_file)
        log.info("encoding the %s split: %d rows in %d files", split,
                 sum(len(r["pairs"]) * len(r["dihedral"]) for r in records[split]), len(units))
        fmt.write_files(units, _encode_unit, data_dir, split,
                        parquet_options={**PARQUET_OPTIONS, "row_group_size": task.rows_per_group},
                        seed=seed, translate=split == "train", rows_per_group=task.rows_per_group, canvas=canvas)

    return {
        "seq_len": canvas * canvas, "vocab_size": arc.VOCAB_SIZE, "num_puzzle_identifiers": int(1 + sizes.sum()),
        "canvas": canvas, "too_large_for_canvas": too_large,
        "source": source, "subsets": {s: sum(1 for g in groups if g[0] == s) for s in subsets},
        "test_subset": test_subset, "num_aug": num_aug, "version_names": task.identifiers,
        "versions": int(sizes.sum()), "augmentation_shortfall": short,
        "test_tasks": {tid: len(t.test) for tid, t in test_tasks.items()},
        "val_demonstrations": sum(1 for r in records["val"] if not r["pairs"][0][2]),
        "test_outputs_known": all(t.has_test_outputs for t in test_tasks.values()),
        "skipped_test_pairs_without_output": skipped,
        "identifiers_file": IDENTIFIERS_FILE, "test_puzzles_file": TEST_PUZZLES_FILE,
        "overlap": overlap,
    }


@dataclass(frozen=True)
class TaskOptions:
    """`task:` for task=arc (`conf/task/arc.yaml` says what each is)."""
    name: str
    source: str | None
    subsets: tuple[str, ...]
    test_subset: str
    task_ids: tuple[str, ...] | None
    exclude_task_ids: tuple[str, ...]
    identifiers: str | None
    canvas: int = at_least(1)
    num_val: int = at_least(0)
    val_from_demos: bool
    num_aug: int = at_least(0)
    allow_overlap: bool
    rows_per_file: int = at_least(1)
    rows_per_group: int = at_least(1)

    def check(self, section: str) -> None:
        if not self.subsets or len(set(self.subsets)) != len(self.subsets):
            raise PipelineError(f"{section}.subsets={list(self.subsets)}: need at least one subset, each once")
        if self.test_subset not in self.subsets:
            raise PipelineError(f"{section}.test_subset={self.test_subset} is not one of "
                                f"{section}.subsets={list(self.subsets)}")
        if self.canvas > arc.CANVAS:
            raise PipelineError(f"{section}.canvas={self.canvas}: must be in 1..{arc.CANVAS} (the ARC format's "
                                f"largest side)")


def _validation_groups(groups: list, test_subset: str, num_val: int, seed: int) -> set:
    """Group ids of the `num_val` tasks outside the test subset whose known test pairs are held out as the
    validation split: a seeded draw among the tasks that have any."""
    candidates = np.array([g for g, (subset, _, t) in enumerate(groups)
                           if subset != test_subset and any(p[1] is not None for p in t.test)], dtype=np.int64)
    return set(candidates[fmt.held_out_groups(len(candidates), num_val, seed)].tolist())


def _task_rng(seed: int, stream: int, task_id: str) -> np.random.Generator:
    key = int.from_bytes(hashlib.sha256(task_id.encode()).digest()[:8], "little")
    return np.random.default_rng([seed, stream, key])


# ---------------------------------------------------------------------------------------------------
# Leakage

def find_overlap(groups: list, test_subset: str) -> dict:
    """Test pairs that also appear (same content) among training examples, and tasks present in two
    subsets (same set of pairs, in any order)."""
    training = {}
    for subset, tid, t in groups:
        pairs = [("train", i, p) for i, p in enumerate(t.train)]
        if subset != test_subset:
            pairs += [("test", i, p) for i, p in enumerate(t.test) if p[1] is not None]
        for part, i, (inp, out) in pairs:
            training.setdefault(arc.pair_digest(inp, out), f"{subset}/{tid} {part} pair {i}")
    leaked = [f"{test_subset}/{tid} test pair {i} = {training[d]}"
              for subset, tid, t in groups if subset == test_subset
              for i, (inp, out) in enumerate(t.test)
              if out is not None and (d := arc.pair_digest(inp, out)) in training]
    seen, shared = {}, []
    for subset, tid, t in groups:
        first = seen.setdefault(arc.task_digest(t), (subset, tid))
        if first[0] != subset:
            shared.append(f"{first[0]}/{first[1]} = {subset}/{tid}")
    parts = []
    if leaked:
        parts.append(f"{len(leaked)} test pair(s) of task.test_subset={test_subset} appear among the training "
                     f"examples ({'; '.join(leaked[:EXAMPLES_SHOWN])}{'; ...' if len(leaked) > EXAMPLES_SHOWN else ''})")
    if shared:
        parts.append(f"{len(shared)} task(s) appear in two subsets ({'; '.join(shared[:EXAMPLES_SHOWN])}"
                     f"{'; ...' if len(shared) > EXAMPLES_SHOWN else ''})")
    return {"count": len(leaked) + len(shared), "test_pairs_in_training": leaked, "tasks_in_two_subsets": shared,
            "summary": "leakage: " + " and ".join(parts) if parts else ""}


# ---------------------------------------------------------------------------------------------------
# Side files (written before the manifest)

def _write_identifiers(path: str, groups: list, plans: list, first_ids: np.ndarray) -> None:
    """puzzle_identifier -> (subset, task, version): what eval needs to map an identifier back."""
    sizes = [len(d) for d, _ in plans]
    aug_index = np.concatenate([np.arange(n, dtype=np.int32) for n in sizes])
    table = pa.table({
        "puzzle_identifier": pa.array((np.repeat(first_ids, sizes) + aug_index).astype(np.int32)),
        "group_id": pa.array(np.repeat(np.arange(len(groups), dtype=np.int64), sizes)),
        "aug_index": pa.array(aug_index),
        "subset": pa.array(np.repeat([s for s, _, _ in groups], sizes)),
        "task_id": pa.array(np.repeat([tid for _, tid, _ in groups], sizes)),
        "dihedral": pa.array(np.concatenate([d for d, _ in plans])),
        "colour_map": ArrowTensorArray.from_numpy(np.concatenate([m for _, m in plans])),
    })
    fs, p = storage.filesystem(path)
    fs.makedirs(posixpath.dirname(p), exist_ok=True)
    with fs.open(p, "wb") as f:
        pq.write_table(table, f, compression="zstd")


def _write_test_puzzles(path: str, tasks: dict) -> None:
    """The raw test tasks (outputs where known), in the ARC JSON layout, for scoring."""
    def pair(inp, out):
        return {"input": inp.tolist()} if out is None else {"input": inp.tolist(), "output": out.tolist()}
    storage.write_json_atomic(path, {tid: {"train": [pair(*p) for p in t.train], "test": [pair(*p) for p in t.test]}
                                     for tid, t in tasks.items()})


# ---------------------------------------------------------------------------------------------------
# Encoding on Ray

def _units(records: list, min_rows: int) -> list:
    """Consecutive runs of whole tasks of at least `min_rows` rows (the last may be smaller)."""
    units, current, rows = [], [], 0
    for record in records:
        current.append(record)
        rows += len(record["pairs"]) * len(record["dihedral"])
        if rows >= min_rows:
            units.append(current)
            current, rows = [], 0
    return units + [current] if current else units


def _encode_unit(unit: list, *, seed: int, translate: bool, rows_per_group: int, canvas: int):
    """The rows of one unit (one file), in batches of whole tasks of about `rows_per_group` rows (small
    buffers), in (group_id, aug_index) order."""
    for records in _units(unit, rows_per_group):
        yield _encode_tasks(records, seed, translate, canvas)


def test_rows(task: arc.ArcTask, versions: tuple | None, num_aug: int, seed: int, canvas: int) -> dict:
    """One task's test inputs as the data stage encodes its test split (at (0, 0), version-major), under
    `versions` (dihedral ids [V], colour maps [V, 10]) or, when None, the versions the data stage would draw
    for it (`plan_versions` from the seed and its task id: the identity and up to `num_aug` more). For
    stage=solve: the puzzle_identifier column is each version's index (0 = the identity)."""
    if versions is None:
        versions = arc.plan_versions(task, num_aug, _task_rng(seed, PLAN_STREAM, task.task_id))
    dihedral, maps = versions
    record = dict(task_id=task.task_id, group_id=0, first_id=0, dihedral=dihedral, colour_maps=maps,
                  pairs=[(i, p, True) for i, p in enumerate(task.test)])
    return _encode_tasks([record], seed, translate=False, canvas=canvas)


def _encode_tasks(records: list, seed: int, translate: bool, canvas: int) -> dict:
    """All rows of some tasks: per task, version-major (rows of one puzzle are contiguous)."""
    counts = [len(r["pairs"]) * len(r["dihedral"]) for r in records]
    total = sum(counts)
    inputs = np.zeros((total, canvas * canvas), dtype=np.uint8)
    labels = np.zeros((total, canvas * canvas), dtype=np.uint8)
    meta = {"puzzle_identifier": [], "group_id": [], "aug_index": [], "task_id": [], "dihedral": [],
            "colour_map": [], "offset_row": [], "offset_col": [], "example_index": [], "is_test_pair": []}
    row = 0
    for record, count in zip(records, counts):
        dihedral, maps = record["dihedral"], record["colour_maps"]
        versions, num_pairs = len(dihedral), len(record["pairs"])
        pairs = [p for _, p, _ in record["pairs"]]
        offsets = None
        if translate:
            shapes = np.array([[inp.shape, inp.shape if out is None else out.shape] for inp, out in pairs])
            offsets = arc.translation_offsets(_task_rng(seed, TRANSLATE_STREAM, record["task_id"]), dihedral, shapes,
                                              canvas=canvas)
        arc.encode_versions(pairs, dihedral, maps, offsets, inputs, labels, first_row=row)
        row += count
        version = np.repeat(np.arange(versions), num_pairs)
        flat_offsets = np.zeros((count, 2), np.int8) if offsets is None else offsets.reshape(count, 2)
        meta["puzzle_identifier"].append((record["first_id"] + version).astype(np.int32))
        meta["group_id"].append(np.full(count, record["group_id"], dtype=np.int64))
        meta["aug_index"].append(version.astype(np.int32))
        meta["task_id"].append(np.full(count, record["task_id"]))
        meta["dihedral"].append(dihedral[version])
        meta["colour_map"].append(maps[version])
        meta["offset_row"].append(flat_offsets[:, 0])
        meta["offset_col"].append(flat_offsets[:, 1])
        meta["example_index"].append(np.tile([i for i, _, _ in record["pairs"]], versions).astype(np.int16))
        meta["is_test_pair"].append(np.tile([t for _, _, t in record["pairs"]], versions).astype(bool))
    return {"inputs": inputs, "labels": labels, **{k: np.concatenate(v) for k, v in meta.items()}}
