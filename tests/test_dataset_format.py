"""The dataset contract's helpers: held-out validation groups, splitting a Dataset by group."""
import numpy as np
import pytest

from pipeline.data import dataset_format as fmt
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


def encode_rows(unit, *, width):
    """A test builder's encoder: each (group, copies) of the unit as one batch of rows."""
    for group, copies in unit:
        yield {"inputs": np.full((copies, width), group, np.uint8), "group_id": np.full(copies, group, np.int64),
               "aug_index": np.arange(copies, dtype=np.int32)}


def test_write_files_writes_each_unit_as_one_file_in_order(ray_local, tmp_path):
    import pyarrow.parquet as pq
    units = [[(0, 2), (1, 3)], [], [(5, 1)]]
    fmt.write_files(units, encode_rows, str(tmp_path), "train", {"row_group_size": 2}, width=4)
    names = sorted(p.name for p in (tmp_path / "train").iterdir())
    assert names == [fmt.shard_name(0), fmt.shard_name(2)]          # an empty unit writes no file
    first = pq.read_table(tmp_path / "train" / fmt.shard_name(0))
    assert first.column("group_id").to_pylist() == [0, 0, 1, 1, 1]
    assert pq.ParquetFile(tmp_path / "train" / fmt.shard_name(0)).metadata.num_row_groups == 3


def test_write_files_refuses_rows_out_of_order(ray_local, tmp_path):
    with pytest.raises(Exception, match="out of \\(group_id, aug_index\\) order"):
        fmt.write_files([[(3, 1), (2, 1)]], encode_rows, str(tmp_path), "train", width=4)
