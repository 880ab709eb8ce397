"""Maze generation, validation and augmentation, every label checked by a BFS written here."""
from collections import deque

import numpy as np
import pytest

from augment import maze
from augment.dihedral import NUM_DIHEDRAL, dihedral_transform


def bfs(grid: np.ndarray, source):
    """Plain queue BFS over non-wall cells: {cell: moves from source}."""
    size_r, size_c = grid.shape
    dist = {source: 0}
    queue = deque([source])
    while queue:
        r, c = queue.popleft()
        for nr, nc in ((r - 1, c), (r + 1, c), (r, c - 1), (r, c + 1)):
            if 0 <= nr < size_r and 0 <= nc < size_c and grid[nr, nc] != maze.WALL and (nr, nc) not in dist:
                dist[(nr, nc)] = dist[(r, c)] + 1
                queue.append((nr, nc))
    return dist


def cell_of(grid, token):
    (r,), (c,) = np.nonzero(grid == token)
    return int(r), int(c)


def count_shortest_paths(question):
    """Number of distinct shortest S-G paths (dynamic programming over BFS layers)."""
    start, goal = cell_of(question, maze.START), cell_of(question, maze.GOAL)
    dist = bfs(question, start)
    ways = {start: 1}
    for cell in sorted(dist, key=dist.get)[1:]:
        r, c = cell
        ways[cell] = sum(ways.get(n, 0) for n in ((r - 1, c), (r + 1, c), (r, c - 1), (r, c + 1))
                         if dist.get(n) == dist[cell] - 1)
    return ways[goal], dist[goal]


def assert_label_is_the_unique_shortest_path(question, answer, length):
    start, goal = cell_of(question, maze.START), cell_of(question, maze.GOAL)
    assert np.array_equal(answer == maze.PATH, (question == maze.OPEN) & (answer != maze.OPEN))
    assert np.array_equal(np.where(answer == maze.PATH, maze.OPEN, answer), question)
    ways, shortest = count_shortest_paths(question)
    assert ways == 1 and shortest == length
    # Walk the marked cells from S: each step has exactly one unvisited marked neighbour, G at the end.
    marked = set(zip(*np.nonzero(answer == maze.PATH))) | {goal}
    cur, moves = start, 0
    while cur != goal:
        r, c = cur
        (cur,) = [n for n in ((r - 1, c), (r + 1, c), (r, c - 1), (r, c + 1)) if n in marked]
        marked.discard(cur)
        moves += 1
    assert moves == length and not marked


@pytest.mark.parametrize("style,size,min_len", [("random", 9, None), ("random", 15, None), ("dfs", 11, None),
                                                ("dfs", 10, None), ("random", 30, 110)])
def test_every_label_is_the_unique_shortest_path(style, size, min_len):
    rng = np.random.default_rng(3)
    questions, answers, lengths = maze.generate(rng, 1500 if size == 30 else 60, size, style, 0.37, min_len)
    assert len(questions) >= 3
    assert questions.dtype == np.uint8 and questions.shape[1:] == (size, size)
    assert lengths.min() >= (min_len or maze.default_min_path_len(size))
    for q, a, n in zip(questions, answers, lengths):
        assert (q == maze.START).sum() == 1 and (q == maze.GOAL).sum() == 1
        assert_label_is_the_unique_shortest_path(q, a, n)
    assert (maze.validate(questions, answers) == "").all()


def test_perfect_mazes_are_trees():
    walls = maze.dfs_walls(np.random.default_rng(0), 20, 9)
    for w in walls:
        grid = np.where(w, maze.WALL, maze.OPEN)
        open_cells = list(zip(*np.nonzero(~w)))
        assert len(bfs(grid, open_cells[0])) == len(open_cells)                       # connected
        edges = (~w[1:] & ~w[:-1]).sum() + (~w[:, 1:] & ~w[:, :-1]).sum()
        assert edges == len(open_cells) - 1                                            # no cycle


def test_random_mazes_follow_the_wall_density():
    questions, _, _ = maze.generate(np.random.default_rng(1), 300, 15, "random", 0.3, 0)
    # Walling off alternative shortest paths adds some walls on top of the sampled ones.
    assert 0.28 < (questions == maze.WALL).mean() < 0.4


@pytest.mark.parametrize("tid", range(NUM_DIHEDRAL))
def test_dihedral_copies_stay_valid(tid):
    questions, answers, lengths = maze.generate(np.random.default_rng(4), 40, 12, "random", 0.37)
    ids = np.full(len(questions), tid)
    moved_q, moved_a = maze.dihedral_copies(questions, ids), maze.dihedral_copies(answers, ids)
    assert np.array_equal(moved_q, dihedral_transform(questions, tid))
    for q, a, n in zip(moved_q, moved_a, lengths):
        assert_label_is_the_unique_shortest_path(q, a, n)


def test_generation_is_deterministic_per_seed():
    runs = [maze.generate(np.random.default_rng(s), 80, 11, "random", 0.37) for s in (7, 7, 8)]
    assert all(np.array_equal(x, y) for x, y in zip(runs[0], runs[1]))
    assert not np.array_equal(runs[0][0][:5], runs[2][0][:5])
    dfs = [maze.dfs_walls(np.random.default_rng(5), 4, 9) for _ in range(2)]
    assert np.array_equal(*dfs)


def test_strings_round_trip_and_bad_characters():
    questions, answers, _ = maze.generate(np.random.default_rng(2), 30, 9, "random", 0.37)
    texts = maze.format_grids(answers)
    assert all(len(t) == 81 and set(t) <= set("# SGo") for t in texts)
    grids, reasons = maze.parse(texts, 9)
    assert np.array_equal(grids, answers) and (reasons == "").all()
    _, reasons = maze.parse([texts[0][:-1], texts[0][:-1] + "x", texts[0]], 9)
    assert "80 characters" in reasons[0] and "'x'" in reasons[1] and reasons[2] == ""


def _one_good_maze():
    q, a, n = maze.generate(np.random.default_rng(9), 20, 11, "random", 0.37)
    return q[0], a[0], int(n[0])


def test_validator_names_each_bad_case():
    q, a, _ = _one_good_maze()
    cases = {}
    two_s = q.copy()
    two_s[tuple(np.argwhere(q == maze.OPEN)[0])] = maze.START
    cases["exactly one 'S'"] = (two_s, a)
    no_g = q.copy()
    no_g[q == maze.GOAL] = maze.OPEN
    cases["exactly one 'G'"] = (no_g, np.where(a == maze.GOAL, maze.OPEN, a))
    cases["other than"] = (np.where(q == maze.OPEN, maze.PATH, q), a)
    broken = a.copy()
    broken[tuple(np.argwhere(a == maze.PATH)[len(np.argwhere(a == maze.PATH)) // 2])] = maze.OPEN
    cases["path cells"] = (q, broken)
    wall_to_path = a.copy()
    wall_to_path[tuple(np.argwhere(a == maze.WALL)[0])] = maze.PATH
    cases["changes cells"] = (q, wall_to_path)
    sealed = q.copy()
    sealed[np.isin(a, (maze.PATH,))] = maze.WALL
    cases["cannot reach"] = (sealed, np.where(a == maze.PATH, maze.WALL, a))
    cases["path cells, a shortest path"] = (q, np.where(q == maze.OPEN, maze.OPEN, a))   # path removed
    questions = np.stack([v[0] for v in cases.values()] + [q])
    answers = np.stack([v[1] for v in cases.values()] + [a])
    reasons = maze.validate(questions, answers)
    for (expected, _), reason in zip(cases.items(), reasons):
        assert expected in reason, (expected, reason)
    assert reasons[-1] == ""


def _detoured(question, answer):
    """A longer S-G path (found by BFS avoiding one cell of the shortest one), or None."""
    marked = np.argwhere(answer == maze.PATH)
    for r, c in marked:
        blocked = question.copy()
        blocked[r, c] = maze.WALL
        start, goal = cell_of(question, maze.START), cell_of(question, maze.GOAL)
        dist = bfs(blocked, start)
        if goal not in dist:
            continue
        out, cur = question.copy(), goal
        while dist[cur] > 1:
            r2, c2 = cur
            cur = next(n for n in ((r2 - 1, c2), (r2 + 1, c2), (r2, c2 - 1), (r2, c2 + 1))
                       if dist.get(n) == dist[cur] - 1)
            out[cur] = maze.PATH
        return out
    return None


def test_is_valid_shortest_path_accepts_true_paths_and_rejects_others():
    questions, answers, _ = maze.generate(np.random.default_rng(11), 200, 9, "random", 0.3)
    assert maze.is_valid_shortest_path(questions, answers).all()
    assert maze.is_valid_shortest_path(questions[0], answers[0]) is True
    assert maze.is_valid_shortest_path(questions, answers.reshape(len(answers), -1)).all()   # sequences
    bad = []
    for q, a in zip(questions, answers):
        longer = _detoured(q, a)
        if longer is not None:
            bad.append((q, longer))
            break
    assert bad, "no maze with a detour found"
    q, a = questions[0], answers[0]
    broken = a.copy()
    broken[tuple(np.argwhere(a == maze.PATH)[0])] = maze.OPEN
    altered = a.copy()
    altered[tuple(np.argwhere(a == maze.WALL)[0])] = maze.OPEN
    extra = a.copy()
    extra[tuple(np.argwhere(a == maze.OPEN)[0])] = maze.PATH
    bad += [(q, broken), (q, altered), (q, extra), (q, q)]
    result = maze.is_valid_shortest_path(np.stack([b[0] for b in bad]), np.stack([b[1] for b in bad]))
    assert not result.any()


def test_a_tie_is_accepted_by_the_scorer():
    # An open 3x3 room: S and G in opposite corners have 6 shortest paths; any of them scores.
    q = np.full((3, 3), maze.OPEN, dtype=np.uint8)
    q[0, 0], q[2, 2] = maze.START, maze.GOAL
    one, other = q.copy(), q.copy()
    one[0, 1] = one[0, 2] = one[1, 2] = maze.PATH
    other[1, 0] = other[2, 0] = other[2, 1] = maze.PATH
    assert maze.is_valid_shortest_path(np.stack([q, q]), np.stack([one, other])).all()


def test_canonical_hash_is_the_same_for_dihedral_images():
    questions, _, _ = maze.generate(np.random.default_rng(12), 30, 9, "random", 0.37)
    base = maze.canonical_hash(questions)
    assert len(set(base.tolist())) == len(questions)
    for tid in range(NUM_DIHEDRAL):
        assert np.array_equal(maze.canonical_hash(dihedral_transform(questions, tid)), base)


@pytest.mark.parametrize("width", [7, 30, 64, 70])
def test_bit_row_search_matches_the_distance_map(width):
    rng = np.random.default_rng(width)
    passable = rng.random((50, 9, width)) > 0.35
    sources = np.zeros_like(passable)
    sources[np.arange(50), rng.integers(0, 9, 50), rng.integers(0, width, 50)] = True
    ecc, farthest = maze.farthest_cells(passable, sources)
    dist = maze.bfs_distances(passable, sources)
    assert np.array_equal(ecc, dist.max(axis=(1, 2)))
    assert np.array_equal(farthest, (dist == ecc[:, None, None]) & (ecc >= 0)[:, None, None])
    for grid in range(5):                 # and the distance map matches a plain queue BFS
        grid_cells = np.where(passable[grid], maze.OPEN, maze.WALL)
        for (r, c) in np.argwhere(sources[grid] & passable[grid]):
            expected = bfs(grid_cells, (int(r), int(c)))
            assert {tuple(int(v) for v in cell): int(dist[grid][tuple(cell)])
                    for cell in np.argwhere(dist[grid] >= 0)} == expected
