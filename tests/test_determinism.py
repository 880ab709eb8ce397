"""Same command, same files: a dataset's shards are a function of config and seed, not of Ray's scheduling.

Each build runs once with Ray Data limited to one CPU (tasks finish in order) and once with all of the
test cluster's CPUs (they finish as they like); the shards must have equal names and equal rows in the
same order, and training on either gives the same weights.
"""
import numpy as np
import pyarrow.parquet as pq
import pytest
import ray
import torch
from ray.data import DataContext, ExecutionResources

from pipeline import storage
from pipeline.data import dataset_format as fmt
from pipeline.run import run_stage
from tests.test_train import final_state, tiny_overrides

# Sudoku without copies: every generated chunk of 8 stays a block and ~5 blocks make a shard; with copies
# the augmentation batches merge the chunks (still in order).
BUILDS = {
    "sudoku": ("task=sudoku", "task.size=4", "task.num_train=200", "task.num_test=16", "task.num_aug=0"),
    "sudoku_copies": ("task=sudoku", "task.size=4", "task.num_train=96", "task.num_test=16", "task.num_aug=3"),
    "maze": ("task=maze", "task.size=6", "task.style=dfs", "task.min_path_len=4", "task.num_train=200",
             "task.num_test=16", "task.num_aug=0"),
}


def shards(data_dir) -> dict:
    """{split/name: the shard's rows as an Arrow table} (rows and their order, not the file's bytes:
    Parquet metadata may differ between writes of equal rows)."""
    out = {}
    for split in ("train", "test"):
        for path in storage.list_files(storage.join(str(data_dir), split), ".parquet"):
            out[f"{split}/{path.rsplit('/', 1)[-1]}"] = pq.read_table(path)
    return out


def build(make_cfg, data_dir, task: str, cpu_limit):
    context = DataContext.get_current()
    saved = context.execution_options.resource_limits
    context.execution_options.resource_limits = ExecutionResources(cpu=cpu_limit)
    try:
        run_stage(make_cfg("stage=augment", "preset=none", *BUILDS[task], "task.chunk_size=8",
                           "task.rows_per_file=40", "ray.dashboard=false", f"data_dir={data_dir}"))
    finally:
        context.execution_options.resource_limits = saved


def test_files_are_a_function_of_the_rows_not_of_their_blocks(ray_local, tmp_path):
    """The same rows in any order, cut into any blocks, give the same files: group g's rows in file
    g // groups_per_file, sorted by (group_id, aug_index)."""
    groups, copies = 30, 3
    rows = fmt.arrow_table({"inputs": np.arange(groups * copies * 4, dtype=np.uint8).reshape(-1, 4),
                            "group_id": np.repeat(np.arange(groups, dtype=np.int64), copies),
                            "aug_index": np.tile(np.arange(copies, dtype=np.int32), groups)})
    rng = np.random.default_rng(0)
    for attempt in range(3):
        shuffled = rows.take(rng.permutation(rows.num_rows))
        cuts = [0, *sorted(rng.choice(np.arange(1, rows.num_rows), 6, replace=False)), rows.num_rows]
        blocks = [shuffled.slice(a, b - a) for a, b in zip(cuts, cuts[1:])]
        fmt.write_split(ray.data.from_arrow(blocks), str(tmp_path / str(attempt)), "train", groups_per_file=7)
    written = [shards(tmp_path / str(attempt)) for attempt in range(3)]
    assert sorted(written[0]) == [f"train/part-{k:06d}.parquet" for k in range(5)]
    for name, table in written[0].items():
        k = int(name[-14:-8])
        assert table.select(rows.column_names).equals(fmt.disk_table(rows.slice(k * 7 * copies, 7 * copies))), name
        assert all(table.equals(other[name]) for other in written[1:]), name


@pytest.mark.parametrize("task", sorted(BUILDS))
def test_build_is_independent_of_parallelism(ray_local, make_cfg, tmp_path, task):
    build(make_cfg, tmp_path / "serial", task, cpu_limit=1)
    build(make_cfg, tmp_path / "parallel", task, cpu_limit=None)
    serial, parallel = shards(tmp_path / "serial"), shards(tmp_path / "parallel")
    if task == "sudoku":     # several shards, whose order could differ
        assert len([k for k in serial if k.startswith("train/")]) > 1
    assert sorted(serial) == sorted(parallel)
    for name, table in serial.items():
        assert table.equals(parallel[name]), name


def test_training_on_either_build_is_identical(ray_local, make_cfg, tmp_path):
    build(make_cfg, tmp_path / "serial", "sudoku", cpu_limit=1)
    build(make_cfg, tmp_path / "parallel", "sudoku", cpu_limit=None)
    states = []
    for name in ("serial", "parallel"):
        run_stage(make_cfg("stage=train", "preset=none", "task=sudoku", f"data_dir={tmp_path / name}",
                           f"run_dir={tmp_path / name}_run", *tiny_overrides(), "train.num_workers=1",
                           "train.steps=4", "train.eval_every=0", "ray.dashboard=false"))
        states.append(final_state(str(tmp_path / f"{name}_run")))
    for key, value in states[0]["model"].items():
        assert torch.equal(value, states[1]["model"][key]), key
