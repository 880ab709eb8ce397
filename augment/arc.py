"""ARC tasks as numpy arrays: validation, augmentation (symmetry, colours, translation), the canvas encoding.

Tokens follow the reference: 0 PAD, 1 end-of-grid marker (EOS), 2..11 colours 0..9. A grid of h x w
cells sits on an N x N canvas (the reference's N = 30; smaller canvases for small-grid tasks) at offset
(r0, c0); EOS fills the row below it (r0 + h, columns c0..c0+w-1) and the column right of it (rows
r0..r0+h-1, column c0 + w), each only inside the canvas, so an N-row or N-column grid has no marker on
that side; the corner (r0 + h, c0 + w) stays PAD. Encoders take the canvas side (or read it from the
array they fill); decoders read it from the sequence length (N * N).

A *version* of a task is one (dihedral id, colour map): `colour_map[c]` is the new colour of colour c
(0 fixed, 1..9 permuted). It maps a grid g to `dihedral_transform(colour_map[g], dihedral)` (the two
commute). Training examples are also translated; the test split always sits at (0, 0).
"""
import dataclasses
import hashlib

import numpy as np
from numpy.lib.stride_tricks import as_strided

from augment.dihedral import NUM_DIHEDRAL, dihedral_transform, inverse_dihedral_transform

CANVAS = 30                           # the ARC format's largest side, and the reference's canvas
SEQ_LEN = CANVAS * CANVAS
PAD, EOS = 0, 1
COLOUR_TOKEN = 2                      # token of colour c is c + 2
NUM_COLOURS = 10
VOCAB_SIZE = COLOUR_TOKEN + NUM_COLOURS
IDENTITY_COLOURS = np.arange(NUM_COLOURS, dtype=np.uint8)
_SWAPS_SIDES = np.array([False, True, False, True, False, False, True, True])   # dihedral ids that transpose


# ---------------------------------------------------------------------------------------------------
# Tasks and validation

class ArcTaskError(ValueError):
    """A task that breaks the ARC format; says which task, which pair (train/test, index) and why."""

    def __init__(self, task_id: str, part: str | None, index: int | None, reason: str):
        self.task_id, self.part, self.index, self.reason = task_id, part, index, reason
        where = "" if part is None else f", {part}" if index is None else f", {part} pair {index}"
        super().__init__(f"task {task_id}{where}: {reason}")


@dataclasses.dataclass
class ArcTask:
    task_id: str
    train: list      # [(input, output)] uint8 grids
    test: list       # [(input, output or None)]: None where no solution is known

    @property
    def has_test_outputs(self) -> bool:
        return all(out is not None for _, out in self.test)

    def grids(self) -> list:
        """Every grid of the task in a fixed order (demo pairs, then test pairs)."""
        return [g for pair in self.train + self.test for g in pair if g is not None]


def as_grid(value) -> np.ndarray:
    """A JSON grid (list of rows) as uint8 [h, w], or ValueError saying what is wrong with it."""
    if not isinstance(value, (list, tuple)) or len(value) == 0:
        raise ValueError("is not a non-empty list of rows")
    try:
        grid = np.array(value)
    except ValueError:
        raise ValueError("is not rectangular (rows of different lengths)") from None
    if grid.ndim != 2:
        raise ValueError("is not rectangular (rows of different lengths)" if grid.dtype == object or grid.ndim > 2
                         else "is not a list of rows")
    if grid.dtype.kind not in "iu":
        raise ValueError(f"has cells that are not integer colours 0..9 (found {grid.dtype.name})")
    height, width = grid.shape
    if not (1 <= height <= CANVAS and 1 <= width <= CANVAS):
        raise ValueError(f"is {height}x{width}; sides must be 1..{CANVAS}")
    bad = (grid < 0) | (grid >= NUM_COLOURS)
    if bad.any():
        r, c = np.argwhere(bad)[0]
        raise ValueError(f"has colour {grid[r, c]} at row {r}, column {c}; colours are 0..9")
    return grid.astype(np.uint8)


def parse_task(task_id: str, raw, test_outputs=None) -> ArcTask:
    """Validate one task (`{"train": [{"input", "output"}...], "test": [{"input"[, "output"]}...]}`).

    `test_outputs`: the solutions listed apart from the task (Kaggle layout), one grid per test input.
    Without them, test outputs come from the pairs themselves: all of them or none.
    """
    if not isinstance(raw, dict) or not isinstance(raw.get("train"), list) or not isinstance(raw.get("test"), list):
        raise ArcTaskError(task_id, None, None, "needs lists 'train' and 'test'")
    if not raw["train"] or not raw["test"]:
        raise ArcTaskError(task_id, None, None, "needs at least one 'train' and one 'test' pair")
    if test_outputs is not None and len(test_outputs) != len(raw["test"]):
        raise ArcTaskError(task_id, "test", None, f"{len(raw['test'])} test inputs but {len(test_outputs)} "
                                                   f"solution grids")

    def grid(part, index, key, value):
        try:
            return as_grid(value)
        except ValueError as err:
            raise ArcTaskError(task_id, part, index, f"{key} grid {err}") from None

    def pair(part, index, item, output):
        if not isinstance(item, dict) or "input" not in item:
            raise ArcTaskError(task_id, part, index, "is not an object with an 'input' grid")
        return grid(part, index, "input", item["input"]), None if output is None else grid(part, index, "output", output)

    train = []
    for i, item in enumerate(raw["train"]):
        if not isinstance(item, dict) or item.get("output") is None:
            raise ArcTaskError(task_id, "train", i, "has no 'output' grid")
        train.append(pair("train", i, item, item["output"]))
    if test_outputs is None:
        test_outputs = [item.get("output") if isinstance(item, dict) else None for item in raw["test"]]
        missing = [i for i, out in enumerate(test_outputs) if out is None]
        if missing and len(missing) < len(test_outputs):
            raise ArcTaskError(task_id, "test", missing[0], "has no 'output' grid while other test pairs do")
    test = [pair("test", i, item, out) for i, (item, out) in enumerate(zip(raw["test"], test_outputs))]
    return ArcTask(task_id, train, test)


def pair_digest(inp: np.ndarray, out: np.ndarray | None) -> bytes:
    """Content hash of one (input, output) pair: shapes and cells of both grids."""
    h = hashlib.sha256()
    for grid in (inp, out):
        if grid is None:
            h.update(b"none")
        else:
            h.update(np.asarray(grid.shape, dtype=np.int64).tobytes())
            h.update(np.ascontiguousarray(grid, dtype=np.uint8).tobytes())
    return h.digest()


def task_digest(task: ArcTask) -> bytes:
    """Content hash of a task as a *set* of pairs: the same task listed with its pairs in another order
    (or with a demo pair moved to test) gets the same digest."""
    return hashlib.sha256(b"".join(sorted(pair_digest(i, o) for i, o in task.train + task.test))).digest()


# ---------------------------------------------------------------------------------------------------
# Colour maps and the (dihedral, colour map) transform

def random_colour_maps(rng: np.random.Generator, num: int) -> np.ndarray:
    """[num, 10] uint8: 0 fixed, colours 1..9 permuted uniformly."""
    maps = np.empty((num, NUM_COLOURS), dtype=np.uint8)
    maps[:, 0] = 0
    maps[:, 1:] = rng.permuted(np.broadcast_to(np.arange(1, NUM_COLOURS, dtype=np.uint8), (num, NUM_COLOURS - 1)),
                               axis=1)
    return maps


def inverse_colour_map(colour_maps: np.ndarray) -> np.ndarray:
    """The inverse permutation(s), for one map [10] or a batch [n, 10]."""
    return np.argsort(colour_maps, axis=-1).astype(np.uint8)


def apply_colour_maps(grids: np.ndarray, colour_maps: np.ndarray) -> np.ndarray:
    """Recolour: one map [10] for every grid; or one grid [h, w] under many maps [n, 10] -> [n, h, w];
    or grid i of a batch [n, h, w] under map i [n, 10]."""
    colour_maps = np.asarray(colour_maps)
    if colour_maps.ndim == 1:
        return colour_maps[grids]
    if grids.ndim == 2:
        return colour_maps[:, grids]
    n = len(grids)
    return np.take_along_axis(colour_maps, grids.reshape(n, -1), axis=1).reshape(grids.shape)


def transform_grids(grids: np.ndarray, dihedral: int, colour_maps: np.ndarray) -> np.ndarray:
    """Grids of a version: recolour (see `apply_colour_maps`), then apply dihedral symmetry `dihedral`."""
    return dihedral_transform(apply_colour_maps(grids, colour_maps), dihedral)


def inverse_transform_grids(grids: np.ndarray, dihedral: int, colour_maps: np.ndarray) -> np.ndarray:
    """Back to the original task: undo the symmetry, then the colours (one map, or one per grid)."""
    return apply_colour_maps(inverse_dihedral_transform(grids, dihedral), inverse_colour_map(colour_maps))


# ---------------------------------------------------------------------------------------------------
# Choosing the versions of a task

def _colour_canonical(grids: list) -> tuple:
    """(key, colours): the grids with non-zero colours renumbered 1, 2, ... by first appearance, as bytes,
    and the original colour of each new number. Renumbering forgets any colour permutation, so two
    versions are equal exactly when their symmetric images have equal keys and agree on these colours."""
    flat = np.concatenate([g.ravel() for g in grids])
    present, first = np.unique(flat, return_index=True)
    colours = present[np.argsort(first)]
    colours = colours[colours != 0]
    renumber = np.zeros(NUM_COLOURS, dtype=np.uint8)
    renumber[colours] = np.arange(1, len(colours) + 1)
    shapes = np.array([g.shape for g in grids], dtype=np.int64)
    return shapes.tobytes() + renumber[flat].tobytes(), colours


class VersionKeys:
    """Content keys of a task's versions: two versions get equal keys exactly when every grid of the
    task (in order) is equal under both. Compared as integers, without building the augmented grids."""

    def __init__(self, task: ArcTask):
        grids = task.grids()
        images = [_colour_canonical([dihedral_transform(g, d) for g in grids]) for d in range(NUM_DIHEDRAL)]
        class_of = {}
        self.classes = np.array([class_of.setdefault(key, len(class_of)) for key, _ in images], dtype=np.int64)
        self.colours = np.stack([colours for _, colours in images]).astype(np.int64)   # [8, k]: same set

    def __call__(self, dihedral: np.ndarray, colour_maps: np.ndarray) -> np.ndarray:
        """[n] int64: symmetry class (3 bits) and the new colour of each colour used (4 bits each, k <= 9)."""
        dihedral = np.asarray(dihedral, dtype=np.int64)
        mapped = np.take_along_axis(colour_maps.astype(np.int64), self.colours[dihedral], axis=1)
        shifts = 3 + 4 * np.arange(mapped.shape[1], dtype=np.int64)
        return self.classes[dihedral] | (mapped << shifts).sum(axis=1)


def plan_versions(task: ArcTask, num_aug: int, rng: np.random.Generator, tries_per_aug: int = 5):
    """Up to 1 + num_aug distinct versions: the identity first, then random (dihedral, colour map) draws
    in order, duplicates (same content) dropped, at most `tries_per_aug * num_aug` draws as the reference.

    Returns dihedral ids [V] int8 and colour maps [V, 10] uint8; V < 1 + num_aug when the task has fewer
    distinct versions (a task with one colour has at most 8 * 9 = 72).
    """
    key_of = VersionKeys(task)
    dihedral = np.zeros(1, dtype=np.int8)
    maps = IDENTITY_COLOURS[None].copy()
    keys = key_of(dihedral, maps)
    tried, budget = 0, tries_per_aug * num_aug
    while len(dihedral) < num_aug + 1 and tried < budget:
        draw = min(budget - tried, max(2 * (num_aug + 1 - len(dihedral)), 16))
        tried += draw
        dihedral = np.concatenate([dihedral, rng.integers(0, NUM_DIHEDRAL, draw).astype(np.int8)])
        maps = np.concatenate([maps, random_colour_maps(rng, draw)])
        keys = np.concatenate([keys, key_of(dihedral[-draw:], maps[-draw:])])
        _, first = np.unique(keys, return_index=True)
        keep = np.sort(first)[:num_aug + 1]         # first occurrences, in draw order
        dihedral, maps, keys = dihedral[keep], maps[keep], keys[keep]
    return dihedral, maps


# ---------------------------------------------------------------------------------------------------
# Translation

def translation_offsets(rng: np.random.Generator, dihedral: np.ndarray, pair_shapes: np.ndarray,
                        canvas: int = CANVAS) -> np.ndarray:
    """[V, E, 2] offsets (r0, c0) on a `canvas` x `canvas` canvas for E pairs under V versions.

    pair_shapes: [E, 2, 2] (input/output, rows/cols) of the untransformed pairs. Input and output of a pair
    share one offset, drawn uniformly so that both fit; one pair per version, chosen at random, stays at
    (0, 0) as in the reference.
    """
    extent = pair_shapes.max(axis=1)                                        # [E, 2]
    swaps = _SWAPS_SIDES[np.asarray(dihedral, dtype=np.int64)]
    extent = np.where(swaps[:, None, None], extent[None, :, ::-1], extent[None])   # [V, E, 2]
    offsets = rng.integers(0, canvas - extent + 1).astype(np.int8)
    num_versions, num_pairs = offsets.shape[:2]
    offsets[np.arange(num_versions), rng.integers(0, num_pairs, num_versions)] = 0
    return offsets


# ---------------------------------------------------------------------------------------------------
# The canvas encoding

def canvas_side(seq_len: int) -> int:
    """N for a sequence of N * N tokens."""
    side = int(np.sqrt(seq_len) + 0.5)
    if side * side != seq_len:
        raise ValueError(f"a sequence of {seq_len} tokens is no square canvas")
    return side


def fits(task: ArcTask, canvas: int) -> bool:
    """Every grid of the task (in any symmetry) fits on a `canvas` x `canvas` canvas."""
    return all(max(g.shape) <= canvas for g in task.grids())


def _as_canvases(canvases) -> np.ndarray:
    """[n, N, N] from [n, N * N] (or [n, N, N]) token arrays."""
    canvases = np.asarray(canvases)
    if canvases.ndim == 3:
        return canvases
    side = canvas_side(canvases.shape[-1])
    return canvases.reshape(-1, side, side)


def _windows(flat: np.ndarray, height: int, width: int, canvas: int) -> np.ndarray:
    """Every height x width window of canvases stored back to back in `flat`, indexed by the flat position
    of its top-left cell; writable, so `win[starts] = grids` paints many grids at per-grid positions
    with no per-cell index arrays."""
    span = (height - 1) * canvas + width
    return as_strided(flat, shape=(flat.size - span + 1, height, width), strides=(1, canvas, 1), writeable=True)


def paint(flat: np.ndarray, starts: np.ndarray, tokens: np.ndarray, canvas: int = CANVAS) -> None:
    """Write token grids [n, h, w] and their EOS markers at flat positions `starts` (row * N * N + r0 * N + c0)
    of zeroed N x N canvases stored back to back in `flat` (uint8, contiguous). Each grid must fit at its offset."""
    n, height, width = tokens.shape
    if n == 0:
        return
    starts = np.asarray(starts, dtype=np.int64)
    _windows(flat, height, width, canvas)[starts] = tokens
    r0, c0 = np.divmod(starts % (canvas * canvas), canvas)
    below = starts[r0 + height < canvas] + height * canvas
    _windows(flat, 1, width, canvas)[below] = EOS
    right = starts[c0 + width < canvas] + width
    _windows(flat, height, 1, canvas)[right] = EOS


def encode_grids(grids: np.ndarray, offsets: np.ndarray | None = None, out: np.ndarray | None = None,
                 rows: np.ndarray | None = None, canvas: int = CANVAS) -> np.ndarray:
    """Encode colour grids [n, h, w] (0..9) as `canvas` x `canvas` token canvases at `offsets` [n, 2]
    (default (0, 0)).

    `out` [M, canvas * canvas] uint8 (its width sets the canvas), zero where nothing was written yet,
    receives grid i in row `rows[i]` (default i); it is allocated when not given. Returns `out`.
    """
    n = len(grids)
    if out is None:
        out = np.zeros((n, canvas * canvas), dtype=np.uint8)
    canvas = canvas_side(out.shape[1])
    rows = np.arange(n) if rows is None else np.asarray(rows, dtype=np.int64)
    starts = rows * canvas * canvas
    height, width = grids.shape[1:]
    offsets = np.zeros((n, 2), dtype=np.int64) if offsets is None else np.asarray(offsets, dtype=np.int64)
    if (offsets < 0).any() or (offsets[:, 0] + height > canvas).any() or (offsets[:, 1] + width > canvas).any():
        raise ValueError(f"a {height}x{width} grid does not fit on the {canvas}x{canvas} canvas at its offset")
    starts = starts + offsets[:, 0] * canvas + offsets[:, 1]
    paint(out.reshape(-1), starts, grids.astype(np.uint8) + COLOUR_TOKEN, canvas)
    return out


def encode_versions(pairs: list, dihedral: np.ndarray, colour_maps: np.ndarray, offsets: np.ndarray | None,
                    inputs: np.ndarray, labels: np.ndarray, first_row: int = 0) -> None:
    """Encode E pairs under V versions into rows first_row + v * E + e of `inputs`/`labels` ([M, N * N],
    zeroed; their width sets the canvas). `pairs`: [(input, output or None)]; a missing output leaves its
    label row PAD. `offsets`: [V, E, 2] or None for (0, 0). Loops only over pairs and the 8 symmetries."""
    canvas = canvas_side(inputs.shape[1])
    num_pairs = len(pairs)
    dihedral = np.asarray(dihedral)
    tokens = (colour_maps + COLOUR_TOKEN).astype(np.uint8)          # colour -> token, per version
    flat_in, flat_out = inputs.reshape(-1), labels.reshape(-1)
    for d in np.unique(dihedral):
        versions = np.flatnonzero(dihedral == d)
        for e, pair in enumerate(pairs):
            starts = (first_row + versions * num_pairs + e) * canvas * canvas
            if offsets is not None:
                off = offsets[versions, e].astype(np.int64)
                starts = starts + off[:, 0] * canvas + off[:, 1]
            for grid, flat in zip(pair, (flat_in, flat_out)):
                if grid is not None:
                    paint(flat, starts, tokens[versions][:, dihedral_transform(grid, int(d))], canvas)


# ---------------------------------------------------------------------------------------------------
# Decoding predictions

def crop_sizes(canvases: np.ndarray) -> np.ndarray:
    """[n, 2] (rows, cols) of each canvas's grid, as the reference reads a prediction: the largest
    top-left rectangle of colour tokens, where a row's usable width ends at its first non-colour token
    and the first rectangle of maximal area wins. (0, 0) when the first cell is not a colour."""
    canvases = _as_canvases(canvases)
    side = canvases.shape[-1]
    colour = (canvases >= COLOUR_TOKEN) & (canvases < VOCAB_SIZE)
    run = np.where(colour.all(axis=2), side, np.argmin(colour, axis=2))            # [n, N] per row
    width = np.minimum.accumulate(run, axis=1)
    area = width * np.arange(1, side + 1)
    best = np.argmax(area, axis=1)
    n = len(canvases)
    found = area[np.arange(n), best] > 0
    return np.stack([np.where(found, best + 1, 0), np.where(found, width[np.arange(n), best], 0)], axis=1)


def shift_to_origin(canvases: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """[n, N, N] canvases moved up-left by their offsets [n, 2] (cells shifted in are PAD)."""
    canvases = _as_canvases(canvases)
    n, side = len(canvases), canvases.shape[-1]
    padded = np.zeros((n, 2 * side, 2 * side), dtype=canvases.dtype)
    padded[:, :side, :side] = canvases
    offsets = np.asarray(offsets, dtype=np.int64)
    row = np.arange(n)[:, None, None]
    r = offsets[:, 0, None, None] + np.arange(side)[None, :, None]
    c = offsets[:, 1, None, None] + np.arange(side)[None, None, :]
    return padded[row, r, c]


def decode_grids(canvases: np.ndarray, offsets: np.ndarray | None = None) -> list:
    """Colour grids (uint8, 0..9) read from canvases [n, N * N] at their offsets, cropped at the marker."""
    canvases = _as_canvases(canvases)
    if offsets is not None:
        canvases = shift_to_origin(canvases, offsets)
    sizes = crop_sizes(canvases)
    return [(c[:h, :w] - COLOUR_TOKEN).astype(np.uint8) for c, (h, w) in zip(canvases, sizes)]


def to_original(canvases: np.ndarray, dihedral: np.ndarray, colour_maps: np.ndarray,
                offsets: np.ndarray | None = None) -> list:
    """Predicted canvases [n, N * N] of versions (dihedral [n], colour maps [n, 10], offsets [n, 2]) as grids
    of the original task: crop at the marker, then undo the transform."""
    grids = decode_grids(canvases, offsets)
    return [inverse_transform_grids(g, int(d), m) for g, d, m in zip(grids, dihedral, colour_maps)]
