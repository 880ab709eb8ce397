"""The Sudoku task. `stage=augment task=sudoku`: Sudoku-Extreme style data, generated on Ray Data or read from
CSV files; and its hooks for the other stages (CSV puzzles, test-time transforms, pictures).

Generated (`task.source=generate`): each Ray task makes one seeded chunk of minimal puzzles
(`augment.sudoku.generate`), so the data depends on `seed` and the config only, not on scheduling.
Read (`task.source=<csv | dir | s3:// | hf:id>`): every row is parsed and validated in the driver before
anything is written. `task.num_val` training-side puzzles beyond `task.num_train` are held out (seeded) as
the validation split. Validation and test puzzles equivalent to a training puzzle under the augmentation's
symmetries are dropped (and counted), then training puzzles get `task.num_aug` transformed copies each,
streamed to Parquet (the other splits never). All puzzle identifiers are 0, as in the reference. The
`rating` column holds the original puzzle's rating on every copy.
"""
import contextlib
import dataclasses
import logging
import math

import numpy as np
import ray

from augment import sudoku
from pipeline.data import dataset_format as fmt
from pipeline.data import sources, split_hygiene
from pipeline.data.generation import collect_kept
from pipeline.errors import PipelineError
from pipeline.options import Options, at_least
from pipeline.progress import Tally, TallyBar

log = logging.getLogger(__name__)

STREAM = {"probe": 0, "test": 1, "train": 2, "augment": 3}     # independent random streams per purpose
PROBE_PUZZLES = 200
ROWS_PER_AUG_BATCH = 65536    # augmented rows per map_batches call: bounds a task's memory

# The task's hooks for the other stages (pipeline/tasks/__init__.py)
EVAL_STAGE = "eval"
PALETTE = None                # white cells with their digits: `draw`
LEGEND = "black: clue given    blue: filled in by the model    red: filled in wrongly (against the target)"
MAX_TTA = None                # random transforms: any number of versions
EXTRA_RATES = {}


def csv_reasons(rows, size: int) -> np.ndarray:
    return sudoku.validate_rows(rows.question, rows.answer, size)


def encode_csv(rows, size: int) -> tuple[np.ndarray, np.ndarray]:
    return (sudoku.to_tokens(sudoku.parse(rows.question, size, True)[0]),
            sudoku.to_tokens(sudoku.parse(rows.answer, size, False)[0]))


def question_reasons(questions: list, size: int) -> np.ndarray:
    """Per puzzle without an answer, "" or why its question is not one (stage=solve, unanswered eval rows)."""
    reasons = sudoku.parse(questions, size, True)[1]
    return np.where(reasons != "", "question " + reasons.astype(str), "").astype(object)


def encode_questions(questions: list, size: int) -> np.ndarray:
    return sudoku.to_tokens(sudoku.parse(questions, size, True)[0])


def format_answers(tokens: np.ndarray, size: int) -> list:
    """Predicted tokens -> CSV strings ('.' where the model left a blank or wrote no digit)."""
    tokens = np.where((tokens >= 2) & (tokens <= size + 1), tokens, 1)
    return sudoku.format_grids(sudoku.from_tokens(tokens, size))


def tta_transform(size: int, tta: int, rngs: list):
    """Each puzzle's tta - 1 random validity-preserving transforms (relabelling, band/stack/row/column
    shuffles, transpose), drawn from its own generator, as `apply(v, grids, inverse)`."""
    per_puzzle = [sudoku.random_transforms(rng, tta - 1, size) for rng in rngs] or [sudoku.identity_transforms(tta - 1, size)]
    fields = [np.stack([getattr(t, f.name) for t in per_puzzle], axis=1)[:, :len(rngs)]   # [tta - 1, B, ...]
              for f in dataclasses.fields(sudoku.Transform)]
    transforms = [sudoku.token_transform(sudoku.Transform(*(f[v] for f in fields))) for v in range(tta - 1)]

    def apply(v: int, grids: np.ndarray, inverse: bool) -> np.ndarray:
        t = transforms[v - 1]
        # transform b of t for row r * B + b of a batch repeating the B puzzles
        t = sudoku.Transform(*(np.tile(f, (len(grids) // len(t),) + (1,) * (f.ndim - 1)) for f in dataclasses.astuple(t)))
        return sudoku.apply_transform(grids, sudoku.inverse_transform(t) if inverse else t)
    return apply


def draw(ax, grid: np.ndarray, target: np.ndarray | None, givens: np.ndarray | None) -> None:
    """A PNG panel: white cells with their digits (tokens 1 = blank, 2.. = digits 1..), blue where the model
    filled a blank, red where that is wrong."""
    n = grid.shape[0]
    ax.imshow(np.ones_like(grid, dtype=float), cmap="gray", vmin=0, vmax=1)
    rows, cols = sudoku.box_shape(n)
    for k in range(n + 1):
        ax.axhline(k - 0.5, color="black", lw=1.5 if k % rows == 0 else 0.4)
        ax.axvline(k - 0.5, color="black", lw=1.5 if k % cols == 0 else 0.4)
    for (r, c), token in np.ndenumerate(grid):
        if token < 2:
            continue
        colour = "black"
        if givens is not None and givens[r, c] < 2:
            colour = "red" if target is not None and token != target[r, c] else "#0050c0"
        ax.text(c, r, str(int(token) - 1), ha="center", va="center", fontsize=max(6, 84 // n), color=colour)


def build(cfg, data_dir: str) -> dict:
    task = Options.of(cfg).task
    n = task.size
    br, bc = sudoku.box_shape(n)
    shown = contextlib.nullcontext()
    if task.source == "generate":       # generated puzzles are unique by construction
        tally = Tally.remote()
        originals, rating_scale = _generated(cfg, n, tally), "guesses of augment.sudoku.solve"
        non_unique = {"train": 0, "test": 0}
        shown = TallyBar(tally, task.num_train + task.num_val + task.num_test, "generate", "puzzle")
    else:
        (originals, non_unique), rating_scale = _loaded(cfg, n), "the source's rating column (solver guesses where empty)"
    with shown:
        originals = {split: ds.map_batches(_with_canonical, batch_format="numpy", fn_kwargs=dict(n=n)).materialize()
                     for split, ds in originals.items()}
    # one trip to the driver per source split for the small columns; the splits are then filtered on Ray
    small = {split: _collect(ds, ["canonical", "group_id", "rating"]) for split, ds in originals.items()}
    keep, dropped = split_hygiene.hold_out_and_drop(
        small["train"]["canonical"], small["train"]["group_id"], small["test"]["canonical"], task.num_val,
        int(cfg.seed), "puzzle")
    source = {"train": "train", "val": "train", "test": "test"}       # validation is held out of the training side
    histogram = {split: _rating_histogram(small[source[split]]["rating"][keep[split]]) for split in source}
    originals = {split: fmt.split_by_groups(originals[source[split]], small[source[split]]["group_id"][keep[split]])[1]
                 .drop_columns(["canonical"]) for split in source}
    for split, ds, copies in (("val", originals["val"], 1), ("test", originals["test"], 1),
                              ("train", _augmented(originals["train"], cfg, n), 1 + task.num_aug)):
        log.info("writing the %s split", split)
        fmt.write_split(ds, data_dir, split, fmt.groups_per_file(task.rows_per_file, copies))
    return {"seq_len": n * n, "vocab_size": sudoku.vocab_size(n), "num_puzzle_identifiers": 1,
            "size": n, "box": [br, bc], "source": task.source, "num_aug": task.num_aug,
            "min_rating": task.min_rating, "max_blanks": task.max_blanks, "rating_histogram": histogram, "rating_scale": rating_scale,
            "dropped_equivalent_test": dropped["test"], "dropped_equivalent_val": dropped["val"],
            "non_unique": non_unique}


@dataclasses.dataclass(frozen=True)
class TaskOptions:
    """`task:` for task=sudoku (`conf/task/sudoku.yaml` says what each is)."""
    name: str
    source: str
    size: int
    num_train: int = at_least(1)
    num_test: int = at_least(0)
    num_val: int = at_least(0)
    num_aug: int = at_least(0)
    min_rating: int = at_least(0)
    max_blanks: int | None = at_least(1)
    allow_non_unique: bool
    chunk_size: int = at_least(1)
    rows_per_file: int = at_least(1)

    def check(self, section: str) -> None:
        n = self.size
        if n not in sudoku.BOX_SHAPES:
            raise PipelineError(f"{section}.size={n}: choose one of {sorted(sudoku.BOX_SHAPES)} "
                                f"(boxes {', '.join(f'{k}: {r}x{c}' for k, (r, c) in sudoku.BOX_SHAPES.items())})")
        if self.max_blanks is not None and self.max_blanks > n * n:
            raise PipelineError(f"{section}.max_blanks={self.max_blanks}: must be null or in 1..{n * n}")


def _rows(questions, solutions, ratings, group_ids) -> dict:
    count = len(questions)
    return {"inputs": sudoku.to_tokens(questions), "labels": sudoku.to_tokens(solutions),
            "puzzle_identifier": np.zeros(count, dtype=np.int32),
            "group_id": np.asarray(group_ids, dtype=np.int64),
            "aug_index": np.zeros(count, dtype=np.int32), "rating": np.asarray(ratings, dtype=np.int32)}


def _collect(ds, columns: list) -> dict:
    parts = list(ds.select_columns(columns).iter_batches(batch_format="numpy", batch_size=None))
    return {c: np.concatenate([p[c] for p in parts]) if parts else np.zeros(0) for c in columns}


# ---------------------------------------------------------------------------------------------------
# Generated puzzles

def _generated(cfg, n: int, tally) -> dict:
    task = Options.of(cfg).task
    gen = dict(seed=int(cfg.seed), n=n, chunk_size=task.chunk_size, min_rating=task.min_rating,
               max_blanks=task.max_blanks, tally=tally)
    gen["per_try"] = _puzzles_per_try(gen)
    out = {}
    for split in ("train", "test"):
        total = task.num_train + task.num_val if split == "train" else task.num_test
        chunks = math.ceil(total / gen["chunk_size"])
        what = (f"{task.num_train:,} training + {task.num_val:,} validation" if split == "train"
                else f"{total:,} test")
        log.info("generating %s puzzles (%dx%d) in %d chunk%s", what, n, n, chunks, "s" * (chunks != 1))
        out[split] = ray.data.range(chunks, override_num_blocks=max(chunks, 1)).map_batches(
            _generate_chunk, batch_size=1, batch_format="numpy", fn_kwargs=dict(gen, split=split, total=total))
    return out


def _puzzles_per_try(gen: dict) -> int:
    """Puzzles a chunk generates at once, from the share of a seeded probe that passes `min_rating`.

    A filter that (almost) nothing passes is a config error: say so now, not after hours of retries.
    """
    if gen["min_rating"] <= 0:
        return gen["chunk_size"]
    _, _, ratings = sudoku.generate(np.random.default_rng([gen["seed"], STREAM["probe"]]), PROBE_PUZZLES, gen["n"],
                                  gen["max_blanks"])
    share = float(np.mean(ratings >= gen["min_rating"]))
    if share == 0:
        raise PipelineError(f"task.min_rating={gen['min_rating']}: none of {PROBE_PUZZLES} generated "
                            f"{gen['n']}x{gen['n']} puzzles is rated that high (max {int(ratings.max())}); lower it")
    return int(min(4096, max(16, 1.25 * gen["chunk_size"] / share)))


def _generate_chunk(batch, *, seed, split, n, chunk_size, min_rating, max_blanks, per_try, total, tally) -> dict:
    """Rows of one chunk of puzzles: a pure function of (seed, split, chunk index) and the config."""
    chunk = int(batch["id"][0])
    need = min(chunk_size, total - chunk * chunk_size)
    rng = np.random.default_rng([seed, STREAM[split], chunk])

    def attempt():
        questions, solutions, ratings = sudoku.generate(rng, per_try, n, max_blanks)
        keep = ratings >= min_rating
        return questions[keep], solutions[keep], ratings[keep]

    questions, solutions, ratings = collect_kept(
        need, attempt, f"sudoku chunk {chunk} of {split}: puzzles rated >= {min_rating} ({per_try} per try)")
    tally.add.remote(need)
    return _rows(questions, solutions, ratings, group_ids=chunk * chunk_size + np.arange(need))


# ---------------------------------------------------------------------------------------------------
# Puzzles from CSV files

def _loaded(cfg, n: int) -> dict:
    task = Options.of(cfg).task
    loaded = sources.read_puzzle_source(task.source)
    for part in loaded.values():               # every loaded row, before choosing or writing any
        _validate(part, n)
        missing = np.isnan(part.rating)
        if missing.any():
            questions, _ = sudoku.parse([part.question[i] for i in np.flatnonzero(missing)], n, True)
            part.rating[missing] = sudoku.solve(questions).guesses
    if task.min_rating:
        loaded = {k: part.take(np.flatnonzero(part.rating >= task.min_rating)) for k, part in loaded.items()}
    chosen = sources.split_rows(loaded, task.num_train + task.num_val, task.num_test,
                                np.random.default_rng(int(cfg.seed)))
    non_unique = {split: _count_non_unique(part, n, task.allow_non_unique) for split, part in chosen.items()}
    out = {}
    for split, part in chosen.items():
        questions, _ = sudoku.parse(part.question, n, True)
        solutions, _ = sudoku.parse(part.answer, n, False)
        chunk = task.chunk_size
        out[split] = ray.data.from_arrow([
            fmt.arrow_table(_rows(questions[i:i + chunk], solutions[i:i + chunk], part.rating[i:i + chunk],
                              np.arange(i, min(i + chunk, len(part)))))
            for i in range(0, max(len(part), 1), chunk)])        # one empty table for an empty split
    return out, non_unique


def _count_non_unique(part: sources.PuzzleRows, n: int, allowed: bool) -> int:
    """Rows whose question has more than one solution (a fully blank grid has many): refused unless
    `task.allow_non_unique`, since the answer given is then one of several right ones."""
    questions, _ = sudoku.parse(part.question, n, True)
    several = sudoku.solve(questions, limit=2).count > 1
    if not allowed:
        sources.raise_first_bad(part, np.where(several, "the question has more than one solution", ""), kind="such",
                                hint="; set task.allow_non_unique=true to keep such puzzles")
    return int(several.sum())


def _validate(part: sources.PuzzleRows, n: int) -> None:
    sources.raise_first_bad(part, sudoku.validate_rows(part.question, part.answer, n), note=f" (task.size={n})")



# ---------------------------------------------------------------------------------------------------
# Split hygiene and augmentation (map_batches functions)

def _with_canonical(batch, *, n: int) -> dict:
    questions = sudoku.from_tokens(batch["inputs"], n)
    solutions = sudoku.from_tokens(batch["labels"], n)
    return {**batch, "canonical": sudoku.canonical_form(questions, solutions).astype(np.uint8)}


def _augmented(ds, cfg, n: int):
    num_aug = Options.of(cfg).task.num_aug
    if num_aug == 0:
        return ds
    return ds.map_batches(_add_augmented_copies, batch_format="numpy",
                          batch_size=max(1, ROWS_PER_AUG_BATCH // (num_aug + 1)),
                          fn_kwargs=dict(seed=int(cfg.seed), num_aug=num_aug, n=n))


def group_transforms(seed: int, group_ids: np.ndarray, num_aug: int, n: int) -> sudoku.Transform:
    """`num_aug` transforms per group, drawn from (seed, group id) alone, so the copies do not depend on
    how Ray cut the batches. Row k*num_aug + j is copy j+1 of group k."""
    parts = [sudoku.random_transforms(np.random.default_rng([seed, STREAM["augment"], int(g)]), num_aug, n)
             for g in group_ids]
    return sudoku.Transform(*(np.concatenate([getattr(p, f) for p in parts])
                              for f in ("transpose", "row_perm", "col_perm", "digit_map")))


def _add_augmented_copies(batch, *, seed: int, num_aug: int, n: int) -> dict:
    count = len(batch["group_id"])
    questions = sudoku.from_tokens(batch["inputs"], n)
    solutions = sudoku.from_tokens(batch["labels"], n)
    transforms = group_transforms(seed, batch["group_id"], num_aug, n)
    copies = np.repeat(np.arange(count), num_aug)

    def with_copies(grids):     # per group: the original (aug_index 0), then its copies 1..num_aug
        moved = sudoku.apply_transform(grids[copies], transforms).reshape(count, num_aug, n, n)
        return np.concatenate([grids[:, None], moved], axis=1).reshape(-1, n, n)

    every = np.repeat(np.arange(count), num_aug + 1)
    rows = _rows(with_copies(questions), with_copies(solutions), batch["rating"][every], batch["group_id"][every])
    rows["aug_index"] = np.tile(np.arange(num_aug + 1, dtype=np.int32), count)
    return rows


def _rating_histogram(ratings: np.ndarray) -> dict:
    """{"0": k, "1": k, "2-3": k, "4-7": k, ...}: original puzzles per power-of-two rating bin."""
    ratings = np.asarray(ratings, dtype=np.int64)
    bins = np.where(ratings > 0, np.floor(np.log2(np.maximum(ratings, 1))).astype(np.int64) + 1, 0)
    out = {}
    for b, k in zip(*np.unique(bins, return_counts=True)):
        lo, hi = (0, 0) if b == 0 else (2 ** (b - 1), 2 ** b - 1)
        out[str(lo) if lo == hi else f"{lo}-{hi}"] = int(k)
    return out
