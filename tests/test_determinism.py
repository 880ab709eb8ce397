"""Same command, same files: a dataset's shards are a function of config and seed, not of Ray's scheduling.

Each build runs once with Ray Data limited to one CPU (tasks finish in order) and once with all of the
test cluster's CPUs (they finish as they like); the shards must have equal names and equal rows in the
same order, and training on either gives the same weights.
"""
import pyarrow.parquet as pq
import pytest
import torch
from ray.data import DataContext, ExecutionResources

from pipeline import storage
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
