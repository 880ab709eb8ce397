"""The maze task. `stage=augment task=maze`: Maze-Hard style data, generated on Ray Data or read from CSV files;
and its hooks for the other stages (CSV puzzles, dihedral test-time versions, valid paths, pictures).

Generated (`task.source=generate`): each Ray task makes one seeded chunk of mazes (`augment.maze`), so the
dataset depends on `seed` and the config only, not on scheduling. The test split is made first; training
mazes equal to a test maze up to symmetry are rejected, so augmentation cannot leak test mazes into
training. Read (`task.source=<csv | dir | s3:// | hf:id>`): every row is parsed and validated in the driver
before anything is written. `task.num_val` training-side mazes beyond `task.num_train` are held out (seeded)
as the validation split. Training mazes then get `task.num_aug` distinct dihedral copies each (the
test split never); all puzzle identifiers are 0, as in the reference.
"""
import logging
import math
from dataclasses import dataclass
from typing import Literal

import numpy as np
import ray

from augment import dihedral, maze
from augment.dihedral import NUM_DIHEDRAL
from pipeline import storage
from pipeline.data import dataset_format as fmt
from pipeline.data import sources, split_hygiene
from pipeline.data.generation import collect_kept
from pipeline.errors import PipelineError
from pipeline.options import Options, at_least
from pipeline.progress import Tally, TallyBar

log = logging.getLogger(__name__)

STREAM = {"probe": 0, "test": 1, "train": 2, "augment": 3}     # independent random streams per purpose
PROBE_CANDIDATES = 2000

# The task's hooks for the other stages (pipeline/tasks/__init__.py)
EVAL_STAGE = "eval"
PALETTE = ["#ffffff", "#333333", "#f4f4f4", "#2ECC40", "#FF4136", "#0074D9"]   # PAD # ' ' S G o
LEGEND = "dark: wall    light: open cell    green: start S    red: goal G    blue: path"
MAX_TTA = NUM_DIHEDRAL
EXTRA_RATES = {"valid_path": "valid_shortest_path_rate"}


def csv_reasons(rows, size: int) -> np.ndarray:
    return _parsed(rows, size)[2]


def _parsed(rows, size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(questions, answers, per row "" or why it is no maze with its shortest path)."""
    questions, q_reasons = maze.parse(rows.question, size)
    answers, a_reasons = maze.parse(rows.answer, size)
    reasons = np.where(q_reasons != "", "question " + q_reasons, np.where(a_reasons != "", "answer " + a_reasons, ""))
    ok = reasons == ""
    reasons[ok] = maze.validate(questions[ok], answers[ok])
    return questions, answers, reasons


def encode_csv(rows, size: int) -> tuple[np.ndarray, np.ndarray]:
    return maze.parse(rows.question, size)[0].reshape(len(rows), -1), maze.parse(rows.answer, size)[0].reshape(len(rows), -1)


def question_reasons(questions: list, size: int) -> np.ndarray:
    """Per maze without an answer, "" or why its question is not one (stage=solve, unanswered eval rows)."""
    grids, reasons = maze.parse(questions, size)
    reasons = np.where(reasons != "", "question " + reasons.astype(str), "").astype(object)
    ok = reasons == ""
    reasons[ok] = maze.question_errors(grids[ok])
    return reasons


def encode_questions(questions: list, size: int) -> np.ndarray:
    return maze.parse(questions, size)[0].reshape(len(questions), -1)


def format_answers(tokens: np.ndarray, size: int) -> list:
    """Predicted tokens -> Maze-Hard strings (a padding token, never a cell, shows as '?')."""
    return [row.replace("\0", "?") for row in maze.format_grids(np.asarray(tokens).reshape(-1, size, size))]


def tta_transform(size: int, tta: int, rngs: list):
    """The dihedral symmetries 1..tta-1, the same for every puzzle, as `apply(v, grids, inverse)`."""
    def apply(v: int, grids: np.ndarray, inverse: bool) -> np.ndarray:
        return dihedral.inverse_dihedral_transform(grids, v) if inverse else dihedral.dihedral_transform(grids, v)
    return apply


def score_batch(batch: dict, size: int) -> dict:
    """`valid_path`: the prediction is a shortest path from S to G through open cells (maybe another one
    than the label's)."""
    n = len(batch["preds"])
    questions = np.asarray(batch["inputs"]).reshape(n, size, size)
    batch["valid_path"] = maze.is_valid_shortest_path(questions, np.asarray(batch["preds"])) if n else np.zeros(0, bool)
    return batch


def build(cfg, data_dir: str) -> dict:
    task = Options.of(cfg).task
    size = task.size
    min_path_len = maze.default_min_path_len(size) if task.min_path_len is None else task.min_path_len
    fields = {"seq_len": size * size, "vocab_size": maze.VOCAB_SIZE, "num_puzzle_identifiers": 1,
              "size": size, "source": task.source, "num_aug": task.num_aug}
    if task.source == "generate":
        fields.update(style=task.style, min_path_len=min_path_len, wall_density=task.wall_density,
                      dropped_equivalent_test=0)     # training candidates avoid test mazes instead
        _generate_splits(cfg, data_dir, size, min_path_len)
    else:
        fields.update(style="csv", **_write_csv_splits(cfg, data_dir, size))
    fields["path_len_histogram"] = {s: _path_len_histogram(storage.join(data_dir, s)) for s in fmt.SPLITS}
    return fields


@dataclass(frozen=True)
class TaskOptions:
    """`task:` for task=maze (`conf/task/maze.yaml` says what each is)."""
    name: str
    source: str
    style: Literal[maze.STYLES]
    size: int = at_least(2)
    num_train: int = at_least(1)
    num_test: int = at_least(0)
    num_val: int = at_least(0)
    min_path_len: int | None = at_least(1)
    wall_density: float = at_least(0)
    num_aug: int = at_least(0)
    chunk_size: int = at_least(1)
    rows_per_file: int = at_least(1)

    def check(self, section: str) -> None:
        if self.num_aug >= NUM_DIHEDRAL:
            raise PipelineError(f"{section}.num_aug={self.num_aug}: must be 0..{NUM_DIHEDRAL - 1} dihedral copies")
        if self.wall_density >= 1.0:
            raise PipelineError(f"{section}.wall_density={self.wall_density}: must be in [0, 1)")


# ---------------------------------------------------------------------------------------------------
# Generated mazes

def _generate_splits(cfg, data_dir: str, size: int, min_path_len: int) -> None:
    task = Options.of(cfg).task
    gen = dict(seed=int(cfg.seed), size=size, style=task.style, wall_density=task.wall_density,
               min_path_len=min_path_len, chunk_size=task.chunk_size)
    gen["candidates"] = _candidates_per_try(gen)
    exclude = np.zeros(0, dtype=np.uint64)
    for split in ("test", "train"):        # test first: training mazes must avoid its hashes
        total = task.num_train + task.num_val if split == "train" else task.num_test
        chunks = math.ceil(total / gen["chunk_size"])
        tally = Tally.remote()
        ds = ray.data.range(chunks, override_num_blocks=max(chunks, 1)).map_batches(
            _generate_chunk, batch_size=1, batch_format="numpy",
            fn_kwargs=dict(gen, split=split, total=total, exclude=exclude, tally=tally))
        what = (f"{task.num_train:,} training + {task.num_val:,} validation" if split == "train"
                else f"{total:,} test")
        log.info("generating %s mazes (%dx%d, %s) in %d chunk%s", what, size, size, task.style, chunks,
                 "s" * (chunks != 1))
        with TallyBar(tally, total, f"generate {split}", "maze"):
            if split == "train":       # group ids are 0..total-1; the held-out ones are the validation split
                ds, val = fmt.split_by_groups(ds.materialize(), fmt.held_out_groups(total, task.num_val, gen["seed"]))
                fmt.write_split(val, data_dir, "val", fmt.groups_per_file(task.rows_per_file, 1))
                ds = _augmented(ds, cfg)
            copies = 1 + task.num_aug if split == "train" else 1
            fmt.write_split(ds, data_dir, split, fmt.groups_per_file(task.rows_per_file, copies))
        if split == "test":
            exclude = np.unique(maze.canonical_hash(_read_inputs(storage.join(data_dir, "test"), size)))


def _candidates_per_try(gen: dict) -> int:
    """Candidates a chunk tries at once, from the share of a seeded probe that passes the filter.

    A filter that (almost) nothing passes is a config error: say so now, not after hours of retries.
    """
    rng = np.random.default_rng([gen["seed"], STREAM["probe"]])
    _, _, lengths = maze.generate(rng, PROBE_CANDIDATES, gen["size"], gen["style"], gen["wall_density"],
                                  gen["min_path_len"])
    if len(lengths) == 0:
        raise PipelineError(
            f"task.min_path_len={gen['min_path_len']}: none of {PROBE_CANDIDATES} {gen['size']}x"
            f"{gen['size']} '{gen['style']}' mazes (task.wall_density={gen['wall_density']}) has a shortest "
            f"path that long; lower it (null gives {maze.default_min_path_len(gen['size'])} at this size)")
    share = len(lengths) / PROBE_CANDIDATES
    return int(min(4096, max(64, 1.25 * gen["chunk_size"] / share)))   # 4096: ~100 MB of work arrays


def _generate_chunk(batch, *, seed, split, size, style, wall_density, min_path_len, chunk_size, candidates,
                    total, exclude, tally) -> dict:
    """Rows of one chunk of mazes: a pure function of (seed, split, chunk index) and the config."""
    chunk = int(batch["id"][0])
    need = min(chunk_size, total - chunk * chunk_size)
    rng = np.random.default_rng([seed, STREAM[split], chunk])
    seen = exclude

    def attempt():
        nonlocal seen
        questions, answers, lengths = maze.generate(rng, candidates, size, style, wall_density, min_path_len)
        hashes = maze.canonical_hash(questions)
        fresh = split_hygiene.first_of_kind(hashes) & ~split_hygiene.seen_in(hashes, seen)  # new, and not a test maze
        seen = np.union1d(seen, hashes)
        return questions[fresh], answers[fresh], lengths[fresh]

    questions, answers, lengths = collect_kept(
        need, attempt, f"maze chunk {chunk} of {split}: new mazes ({candidates} candidates per try)")
    tally.add.remote(need)
    return _rows(questions, answers, lengths, group_ids=chunk * chunk_size + np.arange(need))


def _rows(questions, answers, lengths, group_ids) -> dict:
    n = len(questions)
    return {"inputs": questions.reshape(n, -1), "labels": answers.reshape(n, -1),
            "puzzle_identifier": np.zeros(n, dtype=np.int32),
            "group_id": np.asarray(group_ids, dtype=np.int64),
            "aug_index": np.zeros(n, dtype=np.int32), "dihedral_id": np.zeros(n, dtype=np.int32),
            "path_len": np.asarray(lengths, dtype=np.int32)}


# ---------------------------------------------------------------------------------------------------
# Augmentation

def _augmented(ds, cfg):
    task = Options.of(cfg).task
    if task.num_aug == 0:
        return ds
    return ds.map_batches(_add_dihedral_copies, batch_format="numpy",
                          fn_kwargs=dict(seed=int(cfg.seed), num_aug=task.num_aug, size=task.size))


def _mix64(x: np.ndarray) -> np.ndarray:
    """splitmix64 finaliser: well-spread uint64 keys from small integers, vectorised."""
    x = (x + np.uint64(0x9E3779B97F4A7C15)) & np.uint64(2**64 - 1)
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


def dihedral_choices(seed: int, group_ids: np.ndarray, num_aug: int) -> np.ndarray:
    """[n, num_aug] distinct non-identity symmetries per maze, a function of (seed, group id) only, so
    the copies do not depend on how Ray cut the batches."""
    with np.errstate(over="ignore"):
        cells = group_ids.astype(np.uint64)[:, None] * np.uint64(8) + np.arange(1, 8, dtype=np.uint64)
        keys = _mix64(_mix64(np.uint64(seed) * np.uint64(STREAM["augment"]) + np.uint64(1)) ^ cells)
    return 1 + np.argsort(keys, axis=1)[:, :num_aug]


def _add_dihedral_copies(batch, *, seed, num_aug, size) -> dict:
    n = len(batch["group_id"])
    questions = batch["inputs"].reshape(n, size, size)
    answers = batch["labels"].reshape(n, size, size)
    ids = np.concatenate([np.zeros((n, 1), dtype=np.int64),
                          dihedral_choices(seed, batch["group_id"], num_aug)], axis=1).ravel()
    repeat = np.repeat(np.arange(n), num_aug + 1)
    rows = _rows(maze.dihedral_copies(questions[repeat], ids), maze.dihedral_copies(answers[repeat], ids),
                 batch["path_len"][repeat], batch["group_id"][repeat])
    rows["aug_index"] = np.tile(np.arange(num_aug + 1, dtype=np.int32), n)
    rows["dihedral_id"] = ids.astype(np.int32)
    return rows


# ---------------------------------------------------------------------------------------------------
# Mazes from CSV files

def _write_csv_splits(cfg, data_dir: str, size: int) -> dict:
    task = Options.of(cfg).task
    loaded = sources.read_puzzle_source(task.source)
    for part in loaded.values():               # every loaded row, before choosing or writing any
        _parse_and_validate(part, size)
    rows = sources.split_rows(loaded, task.num_train + task.num_val, task.num_test,
                              np.random.default_rng(int(cfg.seed)))
    parsed = {split: _parse_and_validate(part, size) for split, part in rows.items()}
    train_side = parsed.pop("train")
    keep, dropped = split_hygiene.hold_out_and_drop(
        maze.canonical_hash(train_side[0]), np.arange(len(train_side[0])), maze.canonical_hash(parsed["test"][0]),
        task.num_val, int(cfg.seed), "maze")
    parsed = {split: tuple(a[keep[split]] for a in (train_side if split in ("train", "val") else parsed["test"]))
              for split in ("train", "test", "val")}
    info = {f"dropped_equivalent_{split}": count for split, count in dropped.items()}
    info.update({
            "tied_shortest_paths": {s: int((~maze.shortest_path_is_unique(q)).sum()) for s, (q, _, _) in
                                    parsed.items()}})
    for split, (questions, answers, lengths) in parsed.items():
        chunk = task.chunk_size
        tables = [fmt.arrow_table(_rows(questions[i:i + chunk], answers[i:i + chunk], lengths[i:i + chunk],
                                    np.arange(i, min(i + chunk, len(questions)))))
                  for i in range(0, len(questions), chunk)]
        if not tables:
            continue
        ds = ray.data.from_arrow(tables)
        copies = 1
        if split == "train":
            ds, copies = _augmented(ds, cfg), 1 + task.num_aug
        fmt.write_split(ds, data_dir, split, fmt.groups_per_file(task.rows_per_file, copies))
    return info


def _parse_and_validate(part: sources.PuzzleRows, size: int):
    questions, answers, reasons = _parsed(part, size)
    sources.raise_first_bad(part, reasons)
    lengths = (answers == maze.PATH).sum(axis=(1, 2)) + 1
    return questions, answers, lengths



# ---------------------------------------------------------------------------------------------------
# Reading back small columns for the manifest

def _read_inputs(split_dir: str, size: int) -> np.ndarray:
    if not storage.list_files(split_dir, ".parquet"):
        return np.zeros((0, size, size), dtype=np.uint8)
    return fmt.column_numpy(fmt.read_columns(split_dir, ["inputs"]).column("inputs")).reshape(-1, size, size)


def _path_len_histogram(split_dir: str) -> dict:
    """{path length: mazes} over the split's original mazes (augmented copies share their length)."""
    if not storage.list_files(split_dir, ".parquet"):
        return {}
    table = fmt.read_columns(split_dir, ["path_len", "aug_index"])
    lengths = table.column("path_len").to_numpy()[table.column("aug_index").to_numpy() == 0]
    values, counts = np.unique(lengths, return_counts=True)
    return {str(v): int(c) for v, c in zip(values, counts)}
