"""Sudoku as batches of digit grids: strings, validation, solving, generation, augmentation, canonical forms.

Grids are uint8 arrays `[B, n, n]` of digits, 0 = blank, 1..n; boxes are `br` rows by `bc` columns
(4: 2x2, 6: 2x3, 9: 3x3). Model tokens follow the reference: 0 PAD (never written), 1 = blank,
2..n+1 = digits, so `tokens = digits + 1`, seq_len n*n and vocab n+2.

Augmentation is the reference's: transpose (square boxes only: a 2x3-box grid transposed has 3x2
boxes), then rows gathered by a band-preserving permutation and columns by a stack-preserving one,
then digits relabelled with blank fixed. Puzzle and solution get the same transform.
"""
import dataclasses
import functools
import itertools

import numpy as np

from augment import sudoku_solver

BOX_SHAPES = {4: (2, 2), 6: (2, 3), 9: (3, 3)}
BLANK_CHARS = ".0"


def box_shape(n: int) -> tuple:
    if n not in BOX_SHAPES:
        raise ValueError(f"Sudoku size must be one of {sorted(BOX_SHAPES)}, got {n}")
    return BOX_SHAPES[n]


def vocab_size(n: int) -> int:
    return n + 2


def to_tokens(grids: np.ndarray) -> np.ndarray:
    """[B, n, n] digits -> [B, n*n] uint8 tokens (1 = blank, 2..n+1 = digits)."""
    return (grids.reshape(len(grids), -1) + 1).astype(np.uint8)


def from_tokens(tokens: np.ndarray, n: int) -> np.ndarray:
    return (np.asarray(tokens).reshape(-1, n, n) - 1).astype(np.uint8)


# ---------------------------------------------------------------------------------------------------
# Strings

def parse(strings, n: int, blanks_allowed: bool):
    """Strings of n*n characters -> ([B, n, n] uint8 digits, reasons). Bad rows get a zero grid and a reason.

    Digits are '1'..str(n); blanks ('.' or '0') only where `blanks_allowed`.
    """
    size = n * n
    count = len(strings)
    lengths = np.fromiter((len(s) for s in strings), dtype=np.int64, count=count)
    reasons = np.full(count, "", dtype=object)
    reasons[lengths != size] = [f"has {k} characters, expected {size}" for k in lengths[lengths != size]]
    good = lengths == size
    grids = np.zeros((count, size), dtype=np.uint8)
    if good.any():
        text = "".join(s for s, ok in zip(strings, good) if ok).encode("latin-1", errors="replace")
        chars = np.frombuffer(text, dtype=np.uint8).reshape(-1, size)
        table = np.full(256, 255, dtype=np.uint8)                    # 255 = not allowed
        table[ord("1"):ord("1") + n] = np.arange(1, n + 1)
        if blanks_allowed:
            for ch in BLANK_CHARS:
                table[ord(ch)] = 0
        digits = table[chars]
        bad_char = (digits == 255).any(axis=1)
        rows = np.flatnonzero(good)
        allowed = f"'1'-'{n}'" + (" or '.'" if blanks_allowed else "")
        for k in np.flatnonzero(bad_char):
            col = int(np.argmax(digits[k] == 255))
            reasons[rows[k]] = f"character {col + 1} is {chr(chars[k, col])!r}, expected {allowed}"
        digits[digits == 255] = 0
        grids[rows] = digits
    return grids.reshape(count, n, n), reasons


def format_grids(grids: np.ndarray) -> list:
    """[B, n, n] digits -> strings with '.' for blanks (the Sudoku-Extreme CSV layout)."""
    chars = np.frombuffer(b".123456789", dtype=np.uint8)[grids.reshape(len(grids), -1)]
    return [row.tobytes().decode() for row in chars]


# ---------------------------------------------------------------------------------------------------
# Validity, written without the solver so that it can check it

def _units(grids: np.ndarray) -> np.ndarray:
    """[B, 3n, n]: every row, column and box of each grid."""
    count, n, _ = grids.shape
    br, bc = box_shape(n)
    boxes = grids.reshape(count, n // br, br, n // bc, bc).transpose(0, 1, 3, 2, 4).reshape(count, n, n)
    return np.concatenate([grids, grids.transpose(0, 2, 1), boxes], axis=1)


def is_valid_solution(grids: np.ndarray) -> np.ndarray:
    """[B] bool: every row, column and box holds each digit 1..n exactly once."""
    n = grids.shape[-1]
    return (np.sort(_units(grids), axis=2) == np.arange(1, n + 1)).all(axis=(1, 2))


def givens_consistent(questions: np.ndarray, solutions: np.ndarray) -> np.ndarray:
    return ((questions == 0) | (questions == solutions)).all(axis=(1, 2))


def validate_rows(question_strings, answer_strings, n: int) -> np.ndarray:
    """Per row, "" if the (question, answer) pair is a valid puzzle with its solution, else the reason."""
    questions, q_reasons = parse(question_strings, n, blanks_allowed=True)
    answers, a_reasons = parse(answer_strings, n, blanks_allowed=False)
    reasons = np.where(q_reasons != "", "question " + q_reasons.astype(str),
                       np.where(a_reasons != "", "answer " + a_reasons.astype(str), "")).astype(object)
    ok = reasons == ""
    reasons[ok & ~is_valid_solution(answers)] = "answer is not a valid grid (a row, column or box repeats a digit)"
    ok = reasons == ""
    reasons[ok & ~givens_consistent(questions, answers)] = "question has a given that differs from the answer"
    return reasons


# ---------------------------------------------------------------------------------------------------
# Solving and generation (compiled kernels in augment/sudoku_solver.py)

@dataclasses.dataclass
class Solved:
    count: np.ndarray       # solutions found, up to the limit asked for
    solution: np.ndarray    # [B, n, n] the first solution found (zeros where none)
    guesses: np.ndarray     # placements at cells with two or more candidates: the difficulty rating
    nodes: np.ndarray       # all placements of the search


def solve(questions: np.ndarray, limit: int = 2) -> Solved:
    """Solve each puzzle of [B, n, n], counting solutions up to `limit` (2: is it unique?)."""
    count, n, _ = questions.shape
    br, bc = box_shape(n)
    flat = np.ascontiguousarray(questions.reshape(count, n * n), dtype=np.int8)
    found, solutions, guesses, nodes = sudoku_solver.solve_batch(flat, n, br, bc, limit)
    return Solved(found, solutions.reshape(count, n, n).astype(np.uint8), guesses, nodes)


def generate(rng: np.random.Generator, count: int, n: int, max_blanks=None):
    """`count` puzzles with unique solutions: ([B, n, n] questions, solutions, ratings).

    A random full grid (search with random tie-breaking and digit order), then clues removed in random
    order while the solution stays unique: down to a minimal puzzle, or until `max_blanks` cells are
    blank (easier puzzles). Rating = guesses of the solver proving uniqueness.
    """
    br, bc = box_shape(n)
    size = n * n
    cell_orders = rng.permuted(np.tile(np.arange(size), (count, 1)), axis=1)
    digit_orders = rng.permuted(np.tile(np.arange(1, n + 1, dtype=np.int8), (count, size, 1)), axis=2)
    removal_orders = rng.permuted(np.tile(np.arange(size), (count, 1)), axis=1)
    limit = size if max_blanks is None else int(max_blanks)
    questions, solutions, ratings = sudoku_solver.generate_batch(n, br, bc, cell_orders, digit_orders,
                                                                 removal_orders, limit)
    shape = (count, n, n)
    return questions.reshape(shape).astype(np.uint8), solutions.reshape(shape).astype(np.uint8), ratings


# ---------------------------------------------------------------------------------------------------
# Augmentation: pure batch functions

@dataclasses.dataclass
class Transform:
    """One symmetry per grid of a batch (the reference's order: transpose, gather, relabel)."""
    transpose: np.ndarray   # [B] bool
    row_perm: np.ndarray    # [B, n]: new row i <- old row row_perm[i] (bands kept together)
    col_perm: np.ndarray    # [B, n]: new column j <- old column col_perm[j] (stacks kept together)
    digit_map: np.ndarray   # [B, n+1]: digit d -> digit_map[d], digit_map[0] = 0

    def __len__(self):
        return len(self.transpose)


def _grouped_permutations(rng, count: int, groups: int, width: int) -> np.ndarray:
    """[count, groups*width]: permute the groups, then the members inside each group."""
    group_order = rng.permuted(np.tile(np.arange(groups), (count, 1)), axis=1)
    inside = rng.permuted(np.tile(np.arange(width), (count, groups, 1)), axis=2)
    return (group_order[:, :, None] * width + inside).reshape(count, groups * width)


def random_transforms(rng: np.random.Generator, count: int, n: int) -> Transform:
    br, bc = box_shape(n)
    transpose = rng.random(count) < 0.5 if br == bc else np.zeros(count, dtype=bool)
    digits = rng.permuted(np.tile(np.arange(1, n + 1), (count, 1)), axis=1)
    return Transform(transpose=transpose,
                     row_perm=_grouped_permutations(rng, count, n // br, br),
                     col_perm=_grouped_permutations(rng, count, n // bc, bc),
                     digit_map=np.concatenate([np.zeros((count, 1), dtype=np.int64), digits], axis=1))


def identity_transforms(count: int, n: int) -> Transform:
    return Transform(np.zeros(count, dtype=bool), np.tile(np.arange(n), (count, 1)),
                     np.tile(np.arange(n), (count, 1)), np.tile(np.arange(n + 1), (count, 1)))


def apply_transform(grids: np.ndarray, t: Transform) -> np.ndarray:
    """Apply transform b to grid b of [B, n, n] (puzzles and solutions alike: blanks stay blank)."""
    count, n, _ = grids.shape
    out = np.where(t.transpose[:, None, None], grids.transpose(0, 2, 1), grids)
    out = np.take_along_axis(out, t.row_perm[:, :, None], axis=1)
    out = np.take_along_axis(out, t.col_perm[:, None, :], axis=2)
    return np.take_along_axis(t.digit_map, out.reshape(count, -1).astype(np.int64), axis=1) \
        .reshape(count, n, n).astype(grids.dtype)


def inverse_transform(t: Transform) -> Transform:
    """The transform undoing `t`, in the same form (permuting then transposing = transposing then
    permuting with the roles of rows and columns swapped)."""
    inv_rows, inv_cols = np.argsort(t.row_perm, axis=1), np.argsort(t.col_perm, axis=1)
    swap = t.transpose[:, None]
    return Transform(transpose=t.transpose.copy(),
                     row_perm=np.where(swap, inv_cols, inv_rows),
                     col_perm=np.where(swap, inv_rows, inv_cols),
                     digit_map=np.argsort(t.digit_map, axis=1))


def token_transform(t: Transform) -> Transform:
    """`t` acting on model token grids (digit d is token d+1; tokens 0 PAD and 1 blank stay fixed), so that
    `apply_transform` moves any predicted token grid, and `inverse_transform` of it maps one back exactly."""
    digit_tokens = t.digit_map[:, 1:] + 1
    fixed = np.tile(np.arange(2, dtype=t.digit_map.dtype), (len(t), 1))
    return dataclasses.replace(t, digit_map=np.concatenate([fixed, digit_tokens], axis=1))


# ---------------------------------------------------------------------------------------------------
# Canonical forms (split hygiene)

@functools.lru_cache(maxsize=None)
def _stack_preserving_perms(n: int, width: int) -> np.ndarray:
    groups = n // width
    perms = []
    for order in itertools.permutations(range(groups)):
        for inside in itertools.product(itertools.permutations(range(width)), repeat=groups):
            perms.append([order[g] * width + inside[g][k] for g in range(groups) for k in range(width)])
    return np.array(perms, dtype=np.int64)


def canonical_form(questions: np.ndarray, solutions: np.ndarray) -> np.ndarray:
    """[B, n*n] int8: equal for two puzzles exactly when one is a transform of the other (each puzzle
    taken with its unique solution; the symmetries are those of `random_transforms`)."""
    count, n, _ = questions.shape
    br, bc = box_shape(n)
    def flat(grids):
        return np.ascontiguousarray(grids.reshape(count, n * n), dtype=np.int8)
    return sudoku_solver.canonical_batch(flat(solutions), flat(questions), n, br, bc,
                                         _stack_preserving_perms(n, bc), br == bc)
