"""PNG pictures of puzzles: the input, the prediction after each supervision step, the target.

Tokens are drawn as coloured cells: ARC's ten colours (PAD black, end-of-grid marker grey), maze walls,
open cells, start, goal and path; Sudoku cells white with their digit written in (blue where the model
changed a blank, red where it is wrong).
"""
import io

import matplotlib

matplotlib.use("Agg")   # files only, no display
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.colors import ListedColormap  # noqa: E402

from augment import sudoku  # noqa: E402
from pipeline import storage  # noqa: E402

ARC_COLOURS = ["#000000", "#0074D9", "#FF4136", "#2ECC40", "#FFDC00", "#AAAAAA", "#F012BE", "#FF851B",
               "#7FDBFF", "#870C25"]
PALETTES = {
    "arc": ["#111111", "#555555"] + ARC_COLOURS,                          # PAD, EOS, colours 0..9
    "maze": ["#ffffff", "#333333", "#f4f4f4", "#2ECC40", "#FF4136", "#0074D9"],   # PAD # ' ' S G o
}


def _panel(ax, grid: np.ndarray, task: str, title: str, target: np.ndarray | None, givens: np.ndarray | None):
    ax.set_title(title, fontsize=8)
    ax.set_xticks([])
    ax.set_yticks([])
    if task in PALETTES:
        palette = PALETTES[task]
        ax.imshow(np.clip(grid, 0, len(palette) - 1), cmap=ListedColormap(palette), vmin=0, vmax=len(palette) - 1,
                  interpolation="nearest")
        return
    # Sudoku: tokens 1 = blank, 2.. = digits 1..
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
        ax.text(c, r, str(int(token) - 1), ha="center", va="center", fontsize=7, color=colour)


def puzzle_png(task: str, inputs: np.ndarray, steps: np.ndarray, labels: np.ndarray, title: str = "") -> bytes:
    """One puzzle as PNG bytes. inputs/labels [seq_len] tokens; steps [N_sup, seq_len] the prediction after
    each supervision step. The grid is square (seq_len = side^2: Sudoku, maze, ARC's N x N canvas)."""
    side = int(round(np.sqrt(inputs.size)))
    as_grid = lambda tokens: np.asarray(tokens).reshape(side, side)  # noqa: E731
    panels = [("input", as_grid(inputs))] + [(f"step {i + 1}", as_grid(s)) for i, s in enumerate(steps)]
    panels.append(("target", as_grid(labels)))
    columns = min(len(panels), 9)
    rows = -(-len(panels) // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(1.6 * columns, 1.8 * rows + 0.3), squeeze=False)
    givens, target = as_grid(inputs), as_grid(labels)
    for ax, (name, grid) in zip(axes.ravel(), panels):
        _panel(ax, grid, task, name, None if name == "target" else target, None if name == "input" else givens)
    for ax in axes.ravel()[len(panels):]:
        ax.axis("off")
    fig.suptitle(title, fontsize=9)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=80, bbox_inches="tight")
    plt.close(fig)
    return buffer.getvalue()


def write_png(path: str, data: bytes) -> None:
    fs, p = storage.filesystem(path)
    fs.makedirs(p.rsplit("/", 1)[0], exist_ok=True)
    with fs.open(p, "wb") as f:
        f.write(data)
