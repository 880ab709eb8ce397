"""PNG pictures of puzzles: the input, the prediction after each supervision step, the target.

Tokens are drawn as coloured cells of the task's `PALETTE` (ARC's ten colours; maze walls, open cells, start,
goal and path), or by the task's own `draw` (Sudoku: white cells with their digits); the task's `LEGEND`
says what the colours mean, under the panels.
"""
import io

import matplotlib

matplotlib.use("Agg")   # files only, no display
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.colors import ListedColormap  # noqa: E402

from pipeline import storage, tasks  # noqa: E402

DPI = 110    # with 2.4-inch panels: a 6x6 Sudoku's digits about 20 px high


def _panel(ax, grid: np.ndarray, task: str, title: str, target: np.ndarray | None, givens: np.ndarray | None):
    ax.set_title(title, fontsize=11)
    ax.set_xticks([])
    ax.set_yticks([])
    module = tasks.get(task)
    if module.PALETTE is None:
        module.draw(ax, grid, target, givens)
        return
    palette = module.PALETTE
    ax.imshow(np.clip(grid, 0, len(palette) - 1), cmap=ListedColormap(palette), vmin=0, vmax=len(palette) - 1,
              interpolation="nearest")


def puzzle_png(task: str, inputs: np.ndarray, steps: np.ndarray, labels: np.ndarray, title: str = "") -> bytes:
    """One puzzle as PNG bytes. inputs/labels [seq_len] tokens; steps [N_sup, seq_len] the prediction after
    each supervision step. The grid is square (seq_len = side^2: Sudoku, maze, ARC's N x N canvas)."""
    side = int(round(np.sqrt(inputs.size)))
    as_grid = lambda tokens: np.asarray(tokens).reshape(side, side)  # noqa: E731
    panels = [("input", as_grid(inputs))] + [(f"step {i + 1}", as_grid(s)) for i, s in enumerate(steps)]
    panels.append(("target", as_grid(labels)))
    columns = min(len(panels), 9)
    rows = -(-len(panels) // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(2.4 * columns, 2.6 * rows), squeeze=False)
    givens, target = as_grid(inputs), as_grid(labels)
    for ax, (name, grid) in zip(axes.ravel(), panels):
        _panel(ax, grid, task, name, None if name == "target" else target, None if name == "input" else givens)
    for ax in axes.ravel()[len(panels):]:
        ax.axis("off")
    fig.suptitle(title, fontsize=12)
    fig.supxlabel(tasks.get(task).LEGEND, fontsize=10)   # what the colours mean, under the panels
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI, bbox_inches="tight")
    plt.close(fig)
    return buffer.getvalue()


def write_png(path: str, data: bytes) -> None:
    fs, p = storage.filesystem(path)
    fs.makedirs(p.rsplit("/", 1)[0], exist_ok=True)
    with fs.open(p, "wb") as f:
        f.write(data)
