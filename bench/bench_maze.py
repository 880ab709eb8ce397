"""Maze generation speed: batched numpy (`augment.maze.generate`) against a plain Python loop.

python bench/bench_maze.py [--seconds 10]

Both make random-wall mazes with far endpoints (two BFS passes), keep those whose shortest path reaches
min_path_len, and wall off the alternative shortest paths; the figure is kept mazes per second on one
core, at 30x30 (Maze-Hard: min_path_len 110) and at the demo size (10x10).
"""
import argparse
import random
import time
from collections import deque

import numpy as np

from augment import maze

MOVES = ((-1, 0), (1, 0), (0, -1), (0, 1))


def _bfs(open_cells, size, source):
    dist = {source: 0}
    queue = deque([source])
    while queue:
        r, c = queue.popleft()
        for dr, dc in MOVES:
            n = (r + dr, c + dc)
            if 0 <= n[0] < size and 0 <= n[1] < size and n in open_cells and n not in dist:
                dist[n] = dist[(r, c)] + 1
                queue.append(n)
    return dist


def _farthest(dist, rnd):
    top = max(dist.values())
    return rnd.choice([cell for cell, d in dist.items() if d == top])


def python_maze(rnd, size, wall_density, min_path_len):
    """One candidate, the simple way: a maze (open cells, start, goal, path) or None."""
    open_cells = {(r, c) for r in range(size) for c in range(size) if rnd.random() >= wall_density}
    if not open_cells:
        return None
    seed = rnd.choice(sorted(open_cells))
    start = _farthest(_bfs(open_cells, size, seed), rnd)
    dist_s = _bfs(open_cells, size, start)
    goal = _farthest(dist_s, rnd)
    length = dist_s[goal]
    if length < min_path_len:
        return None
    dist_g = _bfs(open_cells, size, goal)
    path, cur = [goal], goal
    while cur != start:
        preds = [(cur[0] + dr, cur[1] + dc) for dr, dc in MOVES]
        cur = rnd.choice([p for p in preds if dist_s.get(p) == dist_s[cur] - 1])
        path.append(cur)
    step = {cell: dist_s[cell] for cell in path}
    for cell in list(open_cells):
        on_shortest = cell in dist_g and cell in dist_s and dist_s[cell] + dist_g[cell] == length
        follows = any(step.get((cell[0] + dr, cell[1] + dc)) == dist_s.get(cell, -9) - 1 for dr, dc in MOVES)
        if on_shortest and cell not in step and follows:
            open_cells.discard(cell)
    return open_cells, start, goal, path


def rate(make_batch, seconds):
    """Kept mazes per second over at least `seconds` of repeated calls."""
    kept, began = 0, time.perf_counter()
    while time.perf_counter() - began < seconds:
        kept += make_batch()
    return kept / (time.perf_counter() - began)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="time per measurement")
    args = parser.parse_args()
    density = 0.37
    for size in (30, 10):
        min_len = maze.default_min_path_len(size)
        rng, rnd = np.random.default_rng(0), random.Random(0)
        batch = 4096 if size == 30 else 1024
        fast = rate(lambda: len(maze.generate(rng, batch, size, "random", density, min_len)[0]), args.seconds)
        slow = rate(lambda: sum(python_maze(rnd, size, density, min_len) is not None for _ in range(50)),
                    args.seconds)
        print(f"{size}x{size} min_path_len {min_len}: numpy {fast:8.1f} mazes/s, python {slow:7.1f} mazes/s, "
              f"ratio {fast / slow:5.1f}x", flush=True)
    rng = np.random.default_rng(0)
    dfs = rate(lambda: len(maze.generate(rng, 512, 30, "dfs", density, 110)[0]), args.seconds)
    print(f"30x30 dfs (perfect mazes): numpy {dfs:8.1f} mazes/s")


if __name__ == "__main__":
    main()
