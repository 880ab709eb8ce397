import numpy as np
import pytest

from augment.dihedral import (
    DIHEDRAL_INVERSE,
    NUM_DIHEDRAL,
    dihedral_coords,
    dihedral_transform,
    inverse_dihedral_transform,
)


@pytest.mark.parametrize("tid", range(NUM_DIHEDRAL))
def test_inverse_is_identity_on_batches(tid):
    grids = np.random.default_rng(tid).integers(0, 10, (5, 3, 7))
    out = dihedral_transform(grids, tid)
    assert np.array_equal(inverse_dihedral_transform(out, tid), grids)
    assert np.array_equal(out[2], dihedral_transform(grids[2], tid))   # batch = per grid


def test_all_eight_are_distinct_and_match_the_reference_table():
    g = np.arange(12).reshape(3, 4)
    images = [dihedral_transform(g, t) for t in range(NUM_DIHEDRAL)]
    assert len({im.tobytes() + bytes(im.shape) for im in images}) == 8
    assert np.array_equal(images[1], np.rot90(g)) and np.array_equal(images[6], g.T)
    assert np.array_equal(images[7], np.fliplr(np.rot90(g)))
    for t in range(NUM_DIHEDRAL):
        assert np.array_equal(dihedral_transform(images[t], DIHEDRAL_INVERSE[t]), g)


@pytest.mark.parametrize("tid", range(NUM_DIHEDRAL))
def test_coords_follow_the_grid(tid):
    g = np.arange(12).reshape(3, 4)
    rows, cols = np.divmod(np.arange(12), 4)
    r2, c2 = dihedral_coords(rows, cols, tid, 3, 4)
    assert np.array_equal(dihedral_transform(g, tid)[r2, c2], g[rows, cols])
