"""The dataset contract's helpers: held-out validation groups, splitting a Dataset by group."""
import numpy as np
import pytest

from pipeline import dataset_format as fmt
from pipeline.errors import PipelineError


def test_held_out_groups_are_a_seeded_sorted_subset():
    held = fmt.held_out_groups(1000, 50, seed=3)
    assert len(held) == len(set(held.tolist())) == 50 and np.all(np.diff(held) > 0)
    assert held.min() >= 0 and held.max() < 1000
    assert np.array_equal(held, fmt.held_out_groups(1000, 50, seed=3))
    assert not np.array_equal(held, fmt.held_out_groups(1000, 50, seed=4))
    # Spread over the range, not the first or last groups (a file sorted by rating would bias those).
    assert 300 < np.median(held) < 700
    assert fmt.held_out_groups(10, 0, seed=0).size == 0
    with pytest.raises(PipelineError, match="task.num_val=11"):
        fmt.held_out_groups(10, 11, seed=0)


def test_split_by_groups_partitions_the_rows(ray_local):
    import ray
    ds = ray.data.range(40, override_num_blocks=4).map_batches(
        lambda b: {"group_id": b["id"] // 2, "aug_index": (b["id"] % 2).astype(np.int32)})
    rest, held = fmt.split_by_groups(ds, np.array([3, 7, 19]))
    held_groups = sorted(r["group_id"] for r in held.take_all())
    rest_groups = {r["group_id"] for r in rest.take_all()}
    assert held_groups == [3, 3, 7, 7, 19, 19]
    assert rest_groups == set(range(20)) - {3, 7, 19} and rest.count() == 34
