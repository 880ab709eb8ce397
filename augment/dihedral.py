"""The 8 symmetries of the square, on batches of grids (the last two axes are rows, columns).

Ids follow the reference: 0 identity, 1 rot90 (counter-clockwise), 2 rot180, 3 rot270, 4 left-right
flip, 5 up-down flip, 6 transpose, 7 anti-transpose.
"""
import numpy as np

NUM_DIHEDRAL = 8
DIHEDRAL_INVERSE = (0, 3, 2, 1, 4, 5, 6, 7)


def dihedral_transform(grids: np.ndarray, tid: int) -> np.ndarray:
    """Apply symmetry `tid` to every grid of a batch `[..., H, W]` (a view where numpy allows)."""
    if tid == 0:
        return grids
    if tid in (1, 2, 3):
        return np.rot90(grids, k=tid, axes=(-2, -1))
    if tid == 4:
        return grids[..., :, ::-1]
    if tid == 5:
        return grids[..., ::-1, :]
    if tid == 6:
        return np.swapaxes(grids, -1, -2)
    if tid == 7:
        return np.rot90(grids, k=1, axes=(-2, -1))[..., :, ::-1]
    raise ValueError(f"dihedral id must be in 0..7, got {tid}")


def inverse_dihedral_transform(grids: np.ndarray, tid: int) -> np.ndarray:
    return dihedral_transform(grids, DIHEDRAL_INVERSE[tid])


def dihedral_coords(rows: np.ndarray, cols: np.ndarray, tid: int, height: int, width: int):
    """Where cells (rows, cols) of an H x W grid land under symmetry `tid` (for coordinates, not grids)."""
    grid = np.arange(height * width).reshape(height, width)
    moved = dihedral_transform(grid, tid)
    where = np.empty(height * width, dtype=np.int64)
    where[moved.ravel()] = np.arange(moved.size)
    flat = where[np.asarray(rows) * width + np.asarray(cols)]
    return flat // moved.shape[1], flat % moved.shape[1]
