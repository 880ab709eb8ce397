"""Sudoku speed on one core: compiled/vectorised `augment.sudoku` against simple per-puzzle Python loops.

python bench/bench_sudoku.py [--hard ../shared/data/sudoku/magictour_top1465.csv] [--python-sample 20]

Rows: solving + proving uniqueness of 1000 hard 9x9 puzzles, generating minimal 9x9 puzzles, augmenting
(the stage's own map_batches function: per-group seeded transforms of puzzle and solution, tokens), and
canonical forms. The baselines do the same work one puzzle at a time in plain Python (the same search:
bitmasks, singles first, else the cell with fewest candidates; recursion) on a small sample; ratios are
rate / baseline rate.
"""
import argparse
import csv
import random
import time
from pathlib import Path

import numpy as np

from augment import sudoku

SHARED_HARD = Path(__file__).resolve().parents[2] / "shared" / "data" / "sudoku" / "magictour_top1465.csv"
FULL = (1 << 9) - 1
UNITS = ([[r * 9 + c for c in range(9)] for r in range(9)] + [[r * 9 + c for r in range(9)] for c in range(9)]
         + [[(b // 3 * 3 + k // 3) * 9 + b % 3 * 3 + k % 3 for k in range(9)] for b in range(9)])


# ---------------------------------------------------------------------------------------------------
# Plain Python baselines (9x9)

def python_count(grid, limit=2, digit_order=None):
    """Solutions of a flat 81-list (0 = blank) up to `limit`: (count, first solution)."""
    rows, cols, boxes = [0] * 9, [0] * 9, [0] * 9
    for i, d in enumerate(grid):
        if d:
            bit = 1 << (d - 1)
            rows[i // 9] |= bit
            cols[i % 9] |= bit
            boxes[i // 27 * 3 + i % 9 // 3] |= bit
    grid = list(grid)
    found = []

    def search():
        best, best_mask, best_count = -1, 0, 10
        for i in range(81):
            if grid[i] == 0:
                mask = FULL & ~(rows[i // 9] | cols[i % 9] | boxes[i // 27 * 3 + i % 9 // 3])
                count = bin(mask).count("1")
                if count < best_count:
                    best, best_mask, best_count = i, mask, count
                    if count <= 1:
                        break
        if best == -1:
            found.append(list(grid))
            return len(found) >= limit
        if best_count >= 2:                  # hidden singles and dead ends, as augment.sudoku.solve
            for unit, used in zip(UNITS, rows + cols + boxes):
                once = twice = 0
                for i in unit:
                    if grid[i] == 0:
                        m = FULL & ~(rows[i // 9] | cols[i % 9] | boxes[i // 27 * 3 + i % 9 // 3])
                        twice |= once & m
                        once |= m
                if FULL & ~used & ~once:
                    return False
                hidden = once & ~twice
                if hidden:
                    bit = hidden & -hidden
                    best = next(i for i in unit if grid[i] == 0 and not (
                        (rows[i // 9] | cols[i % 9] | boxes[i // 27 * 3 + i % 9 // 3]) & bit))
                    best_mask = bit
                    break
        r, c, b = best // 9, best % 9, best // 27 * 3 + best % 9 // 3
        for d in (digit_order[best] if digit_order else range(1, 10)):
            bit = 1 << (d - 1)
            if best_mask & bit:
                grid[best] = d
                rows[r] |= bit
                cols[c] |= bit
                boxes[b] |= bit
                stop = search()
                grid[best] = 0
                rows[r] &= ~bit
                cols[c] &= ~bit
                boxes[b] &= ~bit
                if stop:
                    return True
        return False

    search()
    return len(found), (found[0] if found else None)


def python_generate(rnd):
    order = [rnd.sample(range(1, 10), 9) for _ in range(81)]
    _, solution = python_count([0] * 81, limit=1, digit_order=order)
    question = list(solution)
    for cell in rnd.sample(range(81), 81):
        kept, question[cell] = question[cell], 0
        if python_count(question)[0] != 1:
            question[cell] = kept
    return question, solution


def python_augment(rnd, question, solution):
    """One transformed copy, cell by cell."""
    def grouped():
        return [3 * g + k for g in rnd.sample(range(3), 3) for k in rnd.sample(range(3), 3)]
    rows, cols, transpose = grouped(), grouped(), rnd.random() < 0.5
    digits = [0] + rnd.sample(range(1, 10), 9)

    def move(grid):
        cell = (lambda r, c: grid[c * 9 + r]) if transpose else (lambda r, c: grid[r * 9 + c])
        return [digits[cell(rows[i], cols[j])] + 1 for i in range(9) for j in range(9)]
    return move(question), move(solution)


# ---------------------------------------------------------------------------------------------------

def timed(fn):
    began = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - began


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hard", default=str(SHARED_HARD), help="Sudoku-Extreme style CSV of hard puzzles")
    parser.add_argument("--python-sample", type=int, default=20, help="puzzles per plain-Python baseline")
    args = parser.parse_args()
    from pipeline.tasks.sudoku import _add_augmented_copies     # the stage's map_batches function

    with open(args.hard) as f:
        rows = list(csv.DictReader(f))[:1000]
    questions, _ = sudoku.parse([r["question"] for r in rows], 9, blanks_allowed=True)
    small = max(2, args.python_sample)
    rng, rnd = np.random.default_rng(0), random.Random(0)
    sudoku.solve(questions[:2])                                   # compile (or load the cache) first
    sudoku.generate(rng, 2, 9)
    results = []

    solved, seconds = timed(lambda: sudoku.solve(questions))
    assert (solved.count == 1).all()
    _, py_seconds = timed(lambda: [python_count(q.ravel().tolist()) for q in questions[:small]])
    results.append(("solve + uniqueness, 1000 hard 9x9", len(questions) / seconds, small / py_seconds,
                    f"{seconds:.2f} s for 1000; mean guesses {solved.guesses.mean():.1f}"))

    (gen_q, gen_s, ratings), seconds = timed(lambda: sudoku.generate(rng, 1000, 9))
    _, py_seconds = timed(lambda: [python_generate(rnd) for _ in range(max(2, small // 10))])
    results.append(("generate minimal 9x9 puzzles", 1000 / seconds, max(2, small // 10) / py_seconds,
                    f"ratings: {np.mean(ratings == 0):.0%} zero, {np.mean(ratings >= 16):.1%} >= 16"))

    num_aug, groups = 1000, 64
    batch = {"inputs": sudoku.to_tokens(gen_q[:groups]), "labels": sudoku.to_tokens(gen_s[:groups]),
             "group_id": np.arange(groups, dtype=np.int64), "rating": ratings[:groups].astype(np.int32)}
    out, seconds = timed(lambda: _add_augmented_copies(batch, seed=0, num_aug=num_aug, n=9))
    examples = len(out["inputs"])
    pairs = [(q.ravel().tolist(), s.ravel().tolist()) for q, s in zip(gen_q[:20], gen_s[:20])]
    py_count = 200 * small
    _, py_seconds = timed(lambda: [python_augment(rnd, *pairs[k % 20]) for k in range(py_count)])
    results.append((f"augment ({groups} puzzles x {num_aug} copies)", examples / seconds, py_count / py_seconds,
                    "examples (puzzle + solution) per second"))

    _, seconds = timed(lambda: sudoku.canonical_form(gen_q[:300], gen_s[:300]))
    results.append(("canonical forms, 9x9", 300 / seconds, float("nan"), "no baseline"))

    print(f"{'measurement (one core)':<40} {'per second':>12} {'python loop':>12} {'ratio':>8}  note")
    for name, fast, slow, note in results:
        ratio = f"{fast / slow:>7.0f}x" if slow == slow else f"{'-':>8}"
        slow_text = f"{slow:>12,.1f}" if slow == slow else f"{'-':>12}"
        print(f"{name:<40} {fast:>12,.0f} {slow_text} {ratio}  {note}")


if __name__ == "__main__":
    main()
