"""Mazes as batches of grids: generation, encoding, validation and dihedral augmentation.

Tokens follow the reference (Maze-Hard): 0 PAD, 1 wall `#`, 2 open ` `, 3 start `S`, 4 goal `G`,
5 path `o`. A question marks walls, open cells, S and G; its answer is the question with the cells of the
shortest S-G path (S and G excluded) set to 5. Path length counts moves, so a path of length L has L - 1
`o` cells.

Generated mazes have a *unique* shortest path: with ties, an exact-match label is ambiguous and the 8
dihedral copies of a maze would disagree with any tie-breaking rule.
All functions take batches `[B, H, W]` (numpy); distances are BFS over the 4-neighbourhood, run on the
whole batch at once with frontier arrays (bit rows where only the farthest cells matter).
"""
import numpy as np

from augment.dihedral import NUM_DIHEDRAL, dihedral_transform

PAD, WALL, OPEN, START, GOAL, PATH = range(6)
VOCAB_SIZE = 6
CHARS = "\0# SGo"                      # token -> character of the Maze-Hard CSV layout
STYLES = ("random", "dfs")
REFERENCE_SIZE, REFERENCE_MIN_PATH_LEN = 30, 110   # Maze-Hard: 30x30, shortest path > 110

_CHAR_TO_TOKEN = np.zeros(256, dtype=np.uint8)     # 0 = not a maze character
for _token, _char in enumerate(CHARS[1:], start=1):
    _CHAR_TO_TOKEN[ord(_char)] = _token


def default_min_path_len(size: int) -> int:
    """110 at 30x30, scaled with the area: the longest shortest paths of random-wall mazes grow with
    the number of cells, not with the side (9x9 -> 10, 15x15 -> 28)."""
    return round(REFERENCE_MIN_PATH_LEN * size * size / (REFERENCE_SIZE * REFERENCE_SIZE))


# ---------------------------------------------------------------------------------------------------
# BFS on batches

def _neighbours(mask: np.ndarray) -> np.ndarray:
    """Cells with at least one 4-neighbour in `mask` (batch of bool grids)."""
    out = np.zeros_like(mask)
    out[:, 1:, :] |= mask[:, :-1, :]
    out[:, :-1, :] |= mask[:, 1:, :]
    out[:, :, 1:] |= mask[:, :, :-1]
    out[:, :, :-1] |= mask[:, :, 1:]
    return out


def bfs_distances(passable: np.ndarray, sources: np.ndarray) -> np.ndarray:
    """Moves from each grid's source cells to every cell (-1: unreachable or wall), whole batch at once.

    passable: bool [B, H, W]; sources: bool [B, H, W] (one or more cells per grid).
    """
    dist = np.full(passable.shape, -1, dtype=np.int16)
    frontier = sources & passable
    dist[frontier] = 0
    step = 0
    active = np.flatnonzero(frontier.any(axis=(1, 2)))
    while active.size:
        step += 1
        # Only grids still expanding take part: the batch's longest search no longer costs every grid.
        sub = frontier[active]
        new = _neighbours(sub) & passable[active] & (dist[active] < 0)
        frontier = np.zeros_like(frontier)
        frontier[active] = new
        dist[frontier] = step
        active = active[new.any(axis=(1, 2))]
    return dist


def _to_bits(mask: np.ndarray) -> np.ndarray:
    """bool [B, H, W] (W <= 64) -> uint64 [B, H], bit c of row r set where mask[:, r, c]."""
    return (mask.astype(np.uint64) << np.arange(mask.shape[2], dtype=np.uint64)).sum(axis=2, dtype=np.uint64)


def _from_bits(bits: np.ndarray, width: int) -> np.ndarray:
    return ((bits[:, :, None] >> np.arange(width, dtype=np.uint64)) & np.uint64(1)).astype(bool)


def farthest_cells(passable: np.ndarray, sources: np.ndarray):
    """(moves to the farthest reachable cell [B] (-1: no source), bool mask of those cells [B, H, W]).

    The search behind endpoint selection, where no distance map is needed: each row is one uint64 of
    bits, so a BFS step is a few shifts on [B, H] words instead of work on every cell.
    """
    width = passable.shape[2]
    if width > 64:
        dist = bfs_distances(passable, sources)
        ecc = dist.max(axis=(1, 2))
        return ecc, (dist == ecc[:, None, None]) & (ecc >= 0)[:, None, None]
    open_bits = _to_bits(passable)
    frontier = _to_bits(sources & passable)
    ecc = np.where(frontier.any(axis=1), 0, -1)
    farthest = frontier.copy()
    # Only grids still expanding are kept in the working arrays (compacted as searches finish).
    live = np.flatnonzero(ecc == 0)
    open_live, seen, front = open_bits[live], frontier[live], frontier[live]
    while live.size:
        grown = (front << np.uint64(1)) | (front >> np.uint64(1))
        grown[:, 1:] |= front[:, :-1]
        grown[:, :-1] |= front[:, 1:]
        new = grown & open_live & ~seen
        going = new.any(axis=1)
        live, open_live, seen, front = live[going], open_live[going], seen[going] | new[going], new[going]
        ecc[live] += 1
        farthest[live] = front
    return ecc, _from_bits(farthest, width)


def _neighbour_views(grids: np.ndarray, fill) -> list:
    """The value of each cell's neighbour above, below, left and right (`fill` outside the grid)."""
    padded = np.pad(grids, ((0, 0), (1, 1), (1, 1)), constant_values=fill)
    height, width = grids.shape[1:]
    return [padded[:, 1 + dr:1 + dr + height, 1 + dc:1 + dc + width]
            for dr, dc in ((-1, 0), (1, 0), (0, -1), (0, 1))]


def _random_argmax(score: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Flat index of a maximum of each grid, ties broken at random."""
    flat = score.reshape(len(score), score.shape[1] * score.shape[2]).astype(np.float64)
    flat = flat + rng.random(flat.shape) * 0.5          # below 1: only breaks ties between equals
    return flat.argmax(axis=1)


def _one_hot(flat_index: np.ndarray, shape: tuple) -> np.ndarray:
    mask = np.zeros((shape[0], shape[1] * shape[2]), dtype=bool)
    mask[np.arange(shape[0]), flat_index] = True
    return mask.reshape(shape)


# ---------------------------------------------------------------------------------------------------
# Wall layouts

def random_walls(rng: np.random.Generator, num: int, size: int, wall_density: float) -> np.ndarray:
    """Each cell a wall with probability `wall_density` (Maze-Hard looks like 30-50 %)."""
    return rng.random((num, size, size)) < wall_density


def dfs_walls(rng: np.random.Generator, num: int, size: int) -> np.ndarray:
    """Perfect mazes (DFS backtracker): rooms on even coordinates joined into a random spanning tree.

    Every grid runs its own backtracking stack; one step of all stacks is one vectorised step. An even
    `size` leaves the last row and column as wall.
    """
    rooms = (size + 1) // 2
    walls = np.ones((num, size, size), dtype=bool)
    visited = np.zeros((num, rooms, rooms), dtype=bool)
    stack = np.zeros((num, rooms * rooms, 2), dtype=np.int64)
    depth = np.ones(num, dtype=np.int64)
    start = rng.integers(0, rooms, (num, 2))
    stack[:, 0] = start
    idx = np.arange(num)
    visited[idx, start[:, 0], start[:, 1]] = True
    walls[idx, 2 * start[:, 0], 2 * start[:, 1]] = False
    moves = np.array([(-1, 0), (1, 0), (0, -1), (0, 1)])
    while (depth > 0).any():
        live = idx[depth > 0]
        top = stack[live, depth[live] - 1]                                   # [L, 2]
        nxt = top[:, None, :] + moves[None]                                  # [L, 4, 2]
        inside = ((nxt >= 0) & (nxt < rooms)).all(axis=2)
        clipped = np.clip(nxt, 0, rooms - 1)
        free = inside & ~visited[live[:, None], clipped[..., 0], clipped[..., 1]]
        choice = np.where(free, rng.random(free.shape), -1.0).argmax(axis=1)
        has_move = free.any(axis=1)
        go, cell = live[has_move], nxt[has_move, choice[has_move]]
        prev = top[has_move]
        visited[go, cell[:, 0], cell[:, 1]] = True
        walls[go, 2 * cell[:, 0], 2 * cell[:, 1]] = False
        walls[go, prev[:, 0] + cell[:, 0], prev[:, 1] + cell[:, 1]] = False     # the wall between
        stack[go, depth[go]] = cell
        depth[go] += 1
        depth[live[~has_move]] -= 1
    return walls


# ---------------------------------------------------------------------------------------------------
# Endpoints, unique shortest path, encoding

def far_endpoints(open_cells: np.ndarray, rng: np.random.Generator, min_path_len: int = 1):
    """Start and goal far apart, for the grids where they can be `min_path_len` moves apart.

    BFS from a random open cell to its farthest cell S, then from S to the farthest G (exact diameter
    on a tree, close to it otherwise). A grid whose first search reaches less than half of
    `min_path_len` is dropped before the second: no two cells of that component are further apart.
    Returns (kept grid indices, start, goal, dist_from_S), start/goal as bool one-hot grids.
    """
    seed = _one_hot(_random_argmax(open_cells, rng), open_cells.shape) & open_cells
    ecc_seed, far_from_seed = farthest_cells(open_cells, seed)
    kept = np.flatnonzero(2 * ecc_seed >= max(min_path_len, 1))
    open_cells, far_from_seed = open_cells[kept], far_from_seed[kept]
    start = _one_hot(_random_argmax(far_from_seed, rng), open_cells.shape) & open_cells
    ecc_s, far_from_s = farthest_cells(open_cells, start)
    far = ecc_s >= max(min_path_len, 1)
    kept, open_cells, start, far_from_s = kept[far], open_cells[far], start[far], far_from_s[far]
    goal = _one_hot(_random_argmax(far_from_s, rng), open_cells.shape) & open_cells
    return kept, start, goal, bfs_distances(open_cells, start)


def shortest_path_cells(dist_s: np.ndarray, goal: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One shortest path per grid (bool mask, S and G included), walked back from G choosing a random
    predecessor (a neighbour one move closer to S) at each step."""
    num, height, width = dist_s.shape
    flat_dist = dist_s.reshape(num, height * width)
    path = goal.reshape(num, height * width).copy()
    cur = path.argmax(axis=1)
    rows = np.arange(num)
    offsets = np.array([-width, width, -1, 1])
    while True:
        here = flat_dist[rows, cur]
        live = here > 0
        if not live.any():
            return path.reshape(dist_s.shape)
        r, c = np.divmod(cur, width)
        inside = np.stack([r > 0, r < height - 1, c > 0, c < width - 1], axis=1)
        nxt = np.clip(cur[:, None] + offsets[None], 0, height * width - 1)
        is_pred = inside & (flat_dist[rows[:, None], nxt] == (here - 1)[:, None]) & live[:, None]
        pick = np.where(is_pred, rng.random(is_pred.shape), -1.0).argmax(axis=1)
        cur = np.where(live, nxt[rows, pick], cur)
        path[rows[live], cur[live]] = True


def make_path_unique(open_cells, dist_s, dist_g, path) -> np.ndarray:
    """Open cells after walling off every branch from `path` into another shortest path.

    A cell c lies on some shortest path iff dist_s + dist_g = L. Any other shortest path leaves `path`
    at its first differing cell, which is such a cell one move further from S than the path cell it
    touches. Walling those off (only those: the rest of the maze keeps its look) leaves `path` as the
    only path of length L, in one pass, since walls can only lengthen paths.
    """
    length = np.where(path, dist_s, -1).max(axis=(1, 2))[:, None, None]
    on_shortest = open_cells & (dist_s >= 0) & (dist_g >= 0) & (dist_s + dist_g == length)
    path_step = np.where(path, dist_s, -2)
    follows_path = np.any([view == dist_s - 1 for view in _neighbour_views(path_step, -2)], axis=0)
    return open_cells & ~(on_shortest & ~path & follows_path)


def encode(open_cells, start, goal, path=None) -> np.ndarray:
    """Token grids (uint8): the question, or with `path` the answer (S and G keep their tokens)."""
    grid = np.where(open_cells, OPEN, WALL).astype(np.uint8)
    if path is not None:
        grid[path] = PATH
    grid[start] = START
    grid[goal] = GOAL
    return grid


def generate(rng: np.random.Generator, num: int, size: int, style: str = "random",
             wall_density: float = 0.37, min_path_len: int | None = None):
    """Candidate mazes: `num` tried, those with a unique shortest path of >= `min_path_len` moves kept.

    Returns (questions, answers, path_lengths): uint8 [K, size, size] twice and int16 [K], K <= num.
    """
    if style not in STYLES:
        raise ValueError(f"maze style must be one of {STYLES}, got {style!r}")
    min_path_len = default_min_path_len(size) if min_path_len is None else min_path_len
    walls = random_walls(rng, num, size, wall_density) if style == "random" else dfs_walls(rng, num, size)
    kept, start, goal, dist_s = far_endpoints(~walls, rng, min_path_len)
    open_cells, length = ~walls[kept], dist_s.max(axis=(1, 2))
    dist_g = bfs_distances(open_cells, goal)
    path = shortest_path_cells(dist_s, goal, rng)
    open_cells = make_path_unique(open_cells, dist_s, dist_g, path)
    return encode(open_cells, start, goal), encode(open_cells, start, goal, path), length.astype(np.int16)


# ---------------------------------------------------------------------------------------------------
# Checking answers

def path_errors(questions: np.ndarray, answers: np.ndarray) -> np.ndarray:
    """Per grid, '' when `answers` is `questions` plus one shortest S-G path, else the reason.

    The marked cells with S and G form a shortest path iff they number L + 1 (L = BFS distance),
    S and G each touch exactly one of them and every other one exactly two: such a set holds a simple
    S-G path, which has at least L + 1 cells, so nothing is left over for a loop.
    """
    questions, answers = np.asarray(questions), np.asarray(answers)
    reasons = np.full(len(questions), "", dtype=object)
    if questions.shape != answers.shape:
        reasons[:] = f"answer shape {answers.shape[1:]} differs from question shape {questions.shape[1:]}"
        return reasons
    start, goal = questions == START, questions == GOAL
    passable = (questions == OPEN) | start | goal
    marked = answers == PATH
    changed = (answers != questions) & ~(marked & (questions == OPEN))
    on_path = marked | start | goal
    length = np.where(goal, bfs_distances(passable, start), -1).max(axis=(1, 2))
    touching = np.sum(_neighbour_views(on_path, False), axis=0)
    ends_ok = ((touching == 1) | ~(start | goal)).all(axis=(1, 2))
    inner_ok = ((touching == 2) | ~marked).all(axis=(1, 2))
    count = on_path.sum(axis=(1, 2))
    checks = [
        (length < 0, "S cannot reach G"),
        (changed.any(axis=(1, 2)), "answer changes cells other than open cells turned into path 'o'"),
        (count != length + 1, "marked path is not as short as the shortest S-G path"),
        (~(ends_ok & inner_ok), "marked cells do not form one S-G path"),
    ]
    for bad, reason in reversed(checks):       # the first failing check names the reason
        reasons[bad] = reason
    wrong_length = (reasons == checks[2][1]).nonzero()[0]
    reasons[wrong_length] = [f"answer marks {count[i] - 2} path cells, a shortest path has {length[i] - 1}"
                             for i in wrong_length]
    return reasons


def shortest_path_is_unique(questions: np.ndarray) -> np.ndarray:
    """Bool per well-formed question: exactly one shortest S-G path (every BFS layer of the cells on
    shortest paths holds one cell)."""
    start, goal = questions == START, questions == GOAL
    passable = (questions == OPEN) | start | goal
    dist_s, dist_g = bfs_distances(passable, start), bfs_distances(passable, goal)
    length = np.where(goal, dist_s, -1).max(axis=(1, 2))
    on_shortest = (dist_s >= 0) & (dist_g >= 0) & (dist_s + dist_g == length[:, None, None])
    return (length >= 0) & (on_shortest.sum(axis=(1, 2)) == length + 1)


def question_errors(questions: np.ndarray) -> np.ndarray:
    """Per grid, '' for a well-formed question (walls, open cells, one S, one G), else the reason."""
    questions = np.asarray(questions)
    reasons = np.full(len(questions), "", dtype=object)
    allowed = np.isin(questions, (WALL, OPEN, START, GOAL)).all(axis=(1, 2))
    checks = [
        (~allowed, "question holds characters other than '#', ' ', 'S', 'G'"),
        ((questions == START).sum(axis=(1, 2)) != 1, "question needs exactly one 'S'"),
        ((questions == GOAL).sum(axis=(1, 2)) != 1, "question needs exactly one 'G'"),
    ]
    for bad, reason in reversed(checks):
        reasons[bad] = reason
    return reasons


def validate(questions: np.ndarray, answers: np.ndarray) -> np.ndarray:
    """Per row, '' for a valid (question, answer) pair, else the first reason it is not."""
    reasons = question_errors(questions)
    ok = reasons == ""
    reasons[ok] = path_errors(questions[ok], answers[ok])
    return reasons


def is_valid_shortest_path(question_grid: np.ndarray, predicted_grid: np.ndarray):
    """Whether a prediction is the question plus a shortest S-G path through open cells, nothing else
    changed: the score for a model where exact match is too strict (several shortest paths may exist).

    question_grid: [B, H, W] (bool [B] back) or [H, W] (a bool back); predicted_grid: the same grids,
    or flat token sequences of the same size.
    """
    questions = np.asarray(question_grid)
    single = questions.ndim == 2
    questions = questions.reshape((-1,) + questions.shape[-2:])
    predictions = np.asarray(predicted_grid).reshape(questions.shape)
    ok = validate(questions, predictions) == ""
    return bool(ok[0]) if single else ok


# ---------------------------------------------------------------------------------------------------
# The Maze-Hard CSV layout and augmentation

def parse(strings: list, size: int):
    """Strings of size*size characters from '# SGo' -> (uint8 grids [B, size, size], reasons)."""
    grids = np.zeros((len(strings), size, size), dtype=np.uint8)
    reasons = np.full(len(strings), "", dtype=object)
    for i, text in enumerate(strings):
        raw = np.frombuffer(text.encode("utf-8"), dtype=np.uint8)
        if raw.size != size * size:
            reasons[i] = f"has {len(text)} characters, expected {size * size} (task.size={size})"
            continue
        tokens = _CHAR_TO_TOKEN[raw]
        if not tokens.all():
            bad = text[int(np.argmin(tokens))]
            reasons[i] = f"holds {bad!r}, not one of '#', ' ', 'S', 'G', 'o'"
            continue
        grids[i] = tokens.reshape(size, size)
    return grids, reasons


def format_grids(grids: np.ndarray) -> list:
    """Token grids -> strings in the Maze-Hard layout (row-major, one character per cell)."""
    table = np.array([ord(c) for c in CHARS], dtype=np.uint8)
    flat = table[np.asarray(grids).reshape(len(grids), -1)] if len(grids) else []
    return [row.tobytes().decode("ascii") for row in flat]


def dihedral_copies(grids: np.ndarray, dihedral_ids: np.ndarray) -> np.ndarray:
    """Grid i moved by symmetry dihedral_ids[i] (square grids), vectorised per symmetry."""
    out = np.empty_like(grids)
    for tid in range(NUM_DIHEDRAL):
        rows = np.flatnonzero(dihedral_ids == tid)
        if rows.size:
            out[rows] = dihedral_transform(grids[rows], tid)
    return out


def canonical_hash(grids: np.ndarray) -> np.ndarray:
    """uint64 per grid, equal for grids that are dihedral images of each other (leakage checks)."""
    flat_len = grids.shape[-1] * grids.shape[-2]
    if not len(grids):
        return np.zeros(0, dtype=np.uint64)
    weights = np.random.default_rng(0x6D617A65).integers(1, 2**63, flat_len, dtype=np.uint64) | np.uint64(1)
    hashes = [(dihedral_transform(grids, tid).reshape(len(grids), -1).astype(np.uint64) * weights).sum(
        axis=1, dtype=np.uint64) for tid in range(NUM_DIHEDRAL)]
    return np.min(hashes, axis=0)
