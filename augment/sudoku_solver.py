"""Compiled (numba) kernels for Sudoku: bitmask search, puzzle generation, canonical forms.

Grids are flat int8 arrays of digits (0 = blank, 1..n) of length n*n; boxes are `br` rows by `bc`
columns. Randomness never comes from numba's own generator: callers pass random orders drawn from a
seeded `np.random.Generator`, so results are a function of the seed alone.
Few entry points on purpose: each jitted function costs compile time on first use (cached afterwards).
"""
import numba as nb
import numpy as np


@nb.njit(cache=True)
def _search(grid, n, br, bc, cell_order, digit_order, limit, solution):
    """Depth-first search with bitmasks, choosing the cell with fewest candidates first.

    cell_order breaks ties between equally constrained cells; digit_order[cell] is the order digits are
    tried in. Stops after `limit` solutions. Returns (solutions found up to limit, guesses, nodes):
    guesses = placements at cells that had two or more candidates, nodes = all placements.
    The first solution found is written to `solution`.
    """
    size = n * n
    boxes_across = n // bc
    full = (1 << n) - 1
    row_used = np.zeros(n, np.int32)
    col_used = np.zeros(n, np.int32)
    box_used = np.zeros(n, np.int32)
    work = grid.copy()
    for i in range(size):
        d = work[i]
        if d == 0:
            continue
        bit = 1 << (d - 1)
        r, c = i // n, i % n
        b = (r // br) * boxes_across + c // bc
        if (row_used[r] | col_used[c] | box_used[b]) & bit:
            return 0, 0, 0                      # the givens already clash
        row_used[r] |= bit
        col_used[c] |= bit
        box_used[b] |= bit
    units = np.empty((3 * n, n), np.int64)        # rows, then columns, then boxes
    for r in range(n):
        for c in range(n):
            units[r, c] = r * n + c
            units[n + c, r] = r * n + c
            b = (r // br) * boxes_across + c // bc
            units[2 * n + b, (r % br) * bc + c % bc] = r * n + c
    candidates = np.zeros(size, np.int32)
    empties = np.empty(size, np.int64)
    num_empty = 0
    for k in range(size):
        if work[cell_order[k]] == 0:
            empties[num_empty] = cell_order[k]
            num_empty += 1
    stack_cell = np.empty(num_empty + 1, np.int64)
    stack_left = np.empty(num_empty + 1, np.int32)     # candidates not yet tried at this depth
    stack_branching = np.empty(num_empty + 1, np.bool_)
    depth = 0
    found = 0
    guesses = 0
    nodes = 0
    while True:
        best = -1
        best_count = n + 1
        best_mask = 0
        for k in range(num_empty):
            i = empties[k]
            if work[i] != 0:
                continue
            r, c = i // n, i % n
            b = (r // br) * boxes_across + c // bc
            mask = full & ~(row_used[r] | col_used[c] | box_used[b])
            count = 0
            m = mask
            while m:
                m &= m - 1
                count += 1
            candidates[i] = mask
            if count < best_count:
                best, best_count, best_mask = i, count, mask
                if count <= 1:
                    break
        if best_count >= 2:
            # No naked single: look for a digit with one place left in a row, column or box (a hidden
            # single), or none at all (a dead end). Costs a pass over the units, saves most guesses.
            for u in range(3 * n):
                once = 0
                twice = 0
                for t in range(n):
                    i = units[u, t]
                    if work[i] == 0:
                        twice |= once & candidates[i]
                        once |= candidates[i]
                used = row_used[u] if u < n else (col_used[u - n] if u < 2 * n else box_used[u - 2 * n])
                if full & ~used & ~once:
                    best_count = 0
                    break
                hidden = once & ~twice
                if hidden:
                    bit = hidden & -hidden
                    for t in range(n):
                        i = units[u, t]
                        if work[i] == 0 and candidates[i] & bit:
                            best, best_count, best_mask = i, 1, bit
                            break
                    break
        if best == -1:                           # no blank left: a solution
            found += 1
            if found == 1:
                solution[:] = work
            if found >= limit:
                break
        elif best_count > 0:                     # descend: the placement loop below picks a digit
            stack_cell[depth] = best
            stack_left[depth] = best_mask
            stack_branching[depth] = best_count > 1
            depth += 1
        # Undo the top placement, then place its next untried digit; pop exhausted levels.
        placed = False
        while depth > 0 and not placed:
            top = depth - 1
            i = stack_cell[top]
            r, c = i // n, i % n
            b = (r // br) * boxes_across + c // bc
            if work[i] != 0:
                bit = ~(1 << (work[i] - 1))
                row_used[r] &= bit
                col_used[c] &= bit
                box_used[b] &= bit
                work[i] = 0
            left = stack_left[top]
            if left == 0:
                depth -= 1
                continue
            for k in range(n):
                d = digit_order[i, k]
                bit = 1 << (d - 1)
                if left & bit:
                    stack_left[top] = left & ~bit
                    work[i] = d
                    row_used[r] |= bit
                    col_used[c] |= bit
                    box_used[b] |= bit
                    nodes += 1
                    if stack_branching[top]:
                        guesses += 1
                    placed = True
                    break
        if not placed:
            break
    return found, guesses, nodes


@nb.njit(cache=True)
def _digits_in_order(size, n):
    """Digit order 1..n at every cell: the deterministic search (solving, proving uniqueness)."""
    order = np.empty((size, n), np.int8)
    for i in range(size):
        for k in range(n):
            order[i, k] = k + 1
    return order


@nb.njit(cache=True)
def solve_batch(grids, n, br, bc, limit):
    """Search every puzzle of [B, n*n] in natural cell and digit order.

    Returns (solution counts up to `limit`, first solutions [B, n*n], guesses, nodes).
    """
    count = grids.shape[0]
    size = n * n
    cell_order = np.arange(size)
    digit_order = _digits_in_order(size, n)
    solutions = np.zeros((count, size), np.int8)
    found = np.zeros(count, np.int32)
    guesses = np.zeros(count, np.int64)
    nodes = np.zeros(count, np.int64)
    for p in range(count):
        found[p], guesses[p], nodes[p] = _search(grids[p], n, br, bc, cell_order, digit_order, limit,
                                                 solutions[p])
    return found, solutions, guesses, nodes


@nb.njit(cache=True)
def generate_batch(n, br, bc, cell_orders, digit_orders, removal_orders, max_blanks):
    """One puzzle per row of the random orders: a random full grid, then clues removed one at a time in
    `removal_orders` order, each removal kept only if the solution stays unique. Removal stops at
    `max_blanks` blank cells (easier puzzles); with `max_blanks >= n*n` the puzzle is minimal.

    Returns (questions [B, n*n], solutions [B, n*n], guesses of the final puzzle's search [B]).
    """
    count = cell_orders.shape[0]
    size = n * n
    natural = np.arange(size)
    in_order = _digits_in_order(size, n)
    questions = np.zeros((count, size), np.int8)
    solutions = np.zeros((count, size), np.int8)
    ratings = np.zeros(count, np.int64)
    scratch = np.zeros(size, np.int8)
    empty = np.zeros(size, np.int8)
    for p in range(count):
        _search(empty, n, br, bc, cell_orders[p], digit_orders[p], 1, solutions[p])
        question = solutions[p].copy()
        blanks = 0
        for k in range(size):
            if blanks >= max_blanks:
                break
            cell = removal_orders[p, k]
            kept = question[cell]
            question[cell] = 0
            found, _, _ = _search(question, n, br, bc, natural, in_order, 2, scratch)
            if found != 1:
                question[cell] = kept
            else:
                blanks += 1
        questions[p] = question
        _, ratings[p], _ = _search(question, n, br, bc, natural, in_order, 2, scratch)
    return questions, solutions, ratings


@nb.njit(cache=True)
def canonical_batch(solutions, questions, n, br, bc, col_perms, with_transpose):
    """The canonical question of each puzzle under row/column symmetries (and transpose) and relabelling.

    The solution grid is brought to its lexicographically smallest form: for a chosen first row and
    column permutation, relabelling makes that row 1..n, and every other row's place follows by sorting
    (rows of a valid grid are pairwise different), so only (orientation, first row, column permutation)
    is searched. Among the transforms reaching that grid (its automorphisms), the smallest transformed
    question wins. Equal outputs <=> equivalent puzzles, given each puzzle's unique solution.
    """
    count = solutions.shape[0]
    size = n * n
    num_bands = n // br
    out = np.zeros((count, size), np.int8)
    best = np.zeros((n, n), np.int8)
    best_q = np.zeros((n, n), np.int8)
    cand = np.zeros((n, n), np.int8)
    cand_q = np.zeros((n, n), np.int8)
    label = np.zeros(n + 1, np.int8)
    order = np.zeros(n, np.int64)
    band_first = np.zeros(num_bands, np.int64)
    g = np.zeros((n, n), np.int8)
    q = np.zeros((n, n), np.int8)
    for p in range(count):
        have_best = False
        for orient in range(2 if with_transpose else 1):
            if orient == 0:
                g[:, :] = solutions[p].reshape(n, n)
                q[:, :] = questions[p].reshape(n, n)
            else:
                g[:, :] = solutions[p].reshape(n, n).T
                q[:, :] = questions[p].reshape(n, n).T
            for r0 in range(n):
                band0 = r0 // br
                for cp in range(col_perms.shape[0]):
                    perm = col_perms[cp]
                    for j in range(n):
                        label[g[r0, perm[j]]] = j + 1
                    # Cheap rejection: the second row is the smallest other row of the first band.
                    if have_best:
                        verdict = 1
                        for r in range(band0 * br, band0 * br + br):
                            if r == r0:
                                continue
                            v = 0
                            for j in range(n):
                                a = label[g[r, perm[j]]]
                                if a != best[1, j]:
                                    v = -1 if a < best[1, j] else 1
                                    break
                            if v < verdict:
                                verdict = v
                        if verdict > 0:
                            continue
                    # Full candidate: rows ordered (first row, rest of its band sorted, other bands
                    # sorted by their smallest row, each sorted inside).
                    for r in range(n):
                        for j in range(n):
                            cand[r, j] = label[g[r, perm[j]]]
                    k = 0
                    order[k] = r0
                    k += 1
                    k = _append_sorted_band(cand, order, k, band0, br, r0)
                    for b in range(num_bands):
                        band_first[b] = _smallest_row(cand, b, br)
                    done = np.zeros(num_bands, np.bool_)
                    done[band0] = True
                    for _ in range(num_bands - 1):
                        pick = -1
                        for b in range(num_bands):
                            if not done[b] and (pick == -1 or _row_cmp(cand, band_first[b], band_first[pick]) < 0):
                                pick = b
                        done[pick] = True
                        k = _append_sorted_band(cand, order, k, pick, br, -1)
                    verdict = 0
                    if have_best:
                        for r in range(n):
                            for j in range(n):
                                a = cand[order[r], j]
                                if a != best[r, j]:
                                    verdict = -1 if a < best[r, j] else 1
                                    break
                            if verdict != 0:
                                break
                        if verdict > 0:
                            continue
                    for r in range(n):
                        for j in range(n):
                            d = q[order[r], perm[j]]
                            cand_q[r, j] = label[d] if d else 0
                    if have_best and verdict == 0:       # same grid: an automorphism; keep the smaller question
                        qv = 0
                        for r in range(n):
                            for j in range(n):
                                if cand_q[r, j] != best_q[r, j]:
                                    qv = -1 if cand_q[r, j] < best_q[r, j] else 1
                                    break
                            if qv != 0:
                                break
                        if qv >= 0:
                            continue
                    for r in range(n):
                        for j in range(n):
                            best[r, j] = cand[order[r], j]
                    best_q[:, :] = cand_q
                    have_best = True
        out[p] = best_q.reshape(size)
    return out


@nb.njit(cache=True)
def _row_cmp(grid, a, b):
    for j in range(grid.shape[1]):
        if grid[a, j] != grid[b, j]:
            return -1 if grid[a, j] < grid[b, j] else 1
    return 0


@nb.njit(cache=True)
def _smallest_row(grid, band, br):
    pick = band * br
    for r in range(band * br + 1, band * br + br):
        if _row_cmp(grid, r, pick) < 0:
            pick = r
    return pick


@nb.njit(cache=True)
def _append_sorted_band(grid, order, k, band, br, skip):
    """Append the rows of `band` except `skip` to `order[k:]` in increasing order; return the new k."""
    start = k
    for r in range(band * br, band * br + br):
        if r == skip:
            continue
        pos = k
        while pos > start and _row_cmp(grid, r, order[pos - 1]) < 0:
            order[pos] = order[pos - 1]
            pos -= 1
        order[pos] = r
        k += 1
    return k
