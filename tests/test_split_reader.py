"""Reading a split's rows by position straight from its Parquet files, locally and from the S3 server."""
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline import storage
from pipeline.data.dataset_format import arrow_table, column_numpy, disk_table, read_ray, token_array
from pipeline.data.split_reader import SplitFiles


def write_files(split_dir: str, sizes=(7, 0, 12, 5), row_group_size=4, disk=True) -> dict:
    """Parquet files of tokens whose first token is the row's position; returns the whole split. `disk`:
    tokens as the data stages write them (fixed-size binary), else as Ray tensor columns (older datasets)."""
    fs, root = storage.filesystem(split_dir)
    fs.makedirs(root, exist_ok=True)
    start, whole = 0, []
    for index, n in enumerate(sizes):
        position = np.arange(start, start + n)
        tokens = np.stack([position % 256, position // 256, np.full(n, index)], axis=1).astype(np.uint8)
        columns = {"inputs": tokens, "group_id": position.astype(np.int64)}
        with fs.open(storage.filesystem(storage.join(split_dir, f"part-{index:06d}.parquet"))[1], "wb") as f:
            table = arrow_table(columns)
            pq.write_table(disk_table(table) if disk else table, f, row_group_size=row_group_size)
        whole.append(columns)
        start += n
    return {k: np.concatenate([w[k] for w in whole]) for k in ("inputs", "group_id")}


@pytest.mark.parametrize("where", ["local", "s3"])
def test_rows_by_position_match_the_whole_split(where, tmp_path, s3_bucket):
    split_dir = str(tmp_path / "train") if where == "local" else f"{s3_bucket}/reader/train"
    whole = write_files(split_dir)
    split = SplitFiles(split_dir)
    assert split.rows == 24
    read = split.read_columns(["inputs", "group_id"])
    assert np.array_equal(read["inputs"], whole["inputs"]) and read["inputs"].shape == (24, 3)
    positions = np.array([23, 0, 8, 8, 19, 3, 12])        # any order, repeats, across files and row groups
    rows = split.read_rows(positions, ["inputs", "group_id"])
    assert np.array_equal(rows["group_id"], positions)
    assert np.array_equal(rows["inputs"], whole["inputs"][positions])


def test_tensor_extension_columns_read_as_arrays(tmp_path):
    import ray.data  # noqa: F401  (registers Ray's tensor type, as inside a Ray worker)
    whole = write_files(str(tmp_path / "train"), sizes=(6,), row_group_size=2, disk=False)
    table = pq.read_table(str(tmp_path / "train" / "part-000000.parquet"))
    assert isinstance(table.column("inputs").type, pa.ExtensionType)
    rows = SplitFiles(str(tmp_path / "train")).read_rows(np.array([5, 1]), ["inputs"])
    assert np.array_equal(rows["inputs"], whole["inputs"][[5, 1]])


def test_token_columns_are_one_binary_value_per_row_and_read_back_exactly(tmp_path):
    whole = write_files(str(tmp_path / "train"), sizes=(9,), row_group_size=4)
    table = pq.read_table(str(tmp_path / "train" / "part-000000.parquet"))
    assert table.column("inputs").type == pa.binary(3)
    assert np.array_equal(column_numpy(table.column("inputs")), whole["inputs"])
    sliced = token_array(whole["inputs"]).slice(2, 5)                 # an array with an offset
    assert np.array_equal(column_numpy(sliced), whole["inputs"][2:7])
    assert column_numpy(token_array(np.zeros((0, 4), np.uint8))).shape == (0, 4)


@pytest.mark.parametrize("disk", [True, False])
def test_ray_reads_token_columns_as_arrays_whichever_encoding(disk, tmp_path, ray_local):
    whole = write_files(str(tmp_path / "train"), sizes=(5, 6), row_group_size=4, disk=disk)
    batch = read_ray(str(tmp_path / "train"), ["inputs", "group_id"]).take_batch(11, batch_format="numpy")
    order = np.argsort(batch["group_id"])
    assert batch["inputs"].dtype == np.uint8 and batch["inputs"].shape == (11, 3)
    assert np.array_equal(batch["inputs"][order], whole["inputs"])
