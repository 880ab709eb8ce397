"""The dataset contract every data stage writes and every later stage reads.

Layout under `data_dir` (local or `s3://`):
- `train/*.parquet`, `val/*.parquet`, `test/*.parquet`: one row per example, with at least
  - `inputs`, `labels`: fixed-length uint8 token sequences, `fixed_size_binary(seq_len)` on disk (one
    Parquet value per row: ten times cheaper to write and read than a list of seq_len values); label 0 is
    PAD/ignore. Read them with `column_numpy` (rows x seq_len uint8) or `read_ray` (Ray tensor columns);
    both also read the `large_list<uint8>` tensor columns of datasets written before;
  - `puzzle_identifier` (int32): row of the puzzle-embedding table, 0 = blank;
  - `group_id` (int64): the original puzzle/task the row derives from;
  - `aug_index` (int32): 0 = untransformed, k = k-th augmentation of that group.
  A *puzzle* is one (group_id, aug_index) pair. Tasks may add columns (ARC: its transform).
  `val` (validation) holds `task.num_val` groups held out of the training data (never trained on, not the
  reported test split): periodic evaluation and the `best_` checkpoint use it. It may be absent (empty).
- `dataset.json`: the manifest, written last and atomically. Its presence means the dataset is complete.
"""
import datetime
import logging
import pickle
import posixpath
import uuid

import numpy as np
import pyarrow as pa
import pyarrow.dataset as pads
import pyarrow.parquet as pq
import ray

from pipeline import storage
from pipeline.config import command_line, saved_config
from pipeline.errors import PipelineError

log = logging.getLogger(__name__)

MANIFEST = "dataset.json"
SPLITS = ("train", "val", "test")
VALIDATION_STREAM = 7        # the random stream choosing held-out groups (builders use 0..3 for their own)


def manifest_path(data_dir: str) -> str:
    return storage.join(data_dir, MANIFEST)


def read_manifest(data_dir: str) -> dict:
    path = manifest_path(data_dir)
    if not storage.exists(path):
        raise PipelineError(f"no dataset at {data_dir}: {MANIFEST} is missing "
                            f"(run stage=augment first, or pass data_dir=)")
    return storage.read_json(path)


def read_task_manifest(cfg) -> dict:
    """The manifest of `cfg.data_dir`, which must hold a dataset of `cfg.task.name`."""
    manifest = read_manifest(cfg.data_dir)
    if manifest.get("task") != cfg.task.name:
        raise PipelineError(f"data_dir={cfg.data_dir} holds a {manifest.get('task')} dataset, but task="
                            f"{cfg.task.name}; pass task={manifest.get('task')} or the data_dir of a {cfg.task.name} dataset")
    return manifest


def dataset_complete(data_dir: str) -> bool:
    return storage.exists(manifest_path(data_dir))


def clear_incomplete(data_dir: str) -> None:
    """Remove split folders left by an interrupted run (no manifest means nothing was published)."""
    for split in SPLITS:
        storage.remove(storage.join(data_dir, split))
        storage.remove(staging_dir(data_dir, split))


def held_out_groups(num_groups: int, num_val: int, seed: int) -> np.ndarray:
    """The `num_val` group ids (of 0..num_groups-1) held out for validation, sorted: a seeded draw, so the
    same command holds out the same groups."""
    if not 0 <= num_val <= num_groups:
        raise PipelineError(f"task.num_val={num_val}: must be in 0..{num_groups} (the training groups)")
    rng = np.random.default_rng([int(seed), VALIDATION_STREAM])
    return np.sort(rng.choice(num_groups, size=num_val, replace=False)).astype(np.int64)


def split_by_groups(ds, groups: np.ndarray) -> tuple:
    """(rows whose group_id is not in `groups`, rows whose group_id is): Ray Datasets, lazily filtered."""
    def part(keep_listed):
        return ds.map_batches(_select_groups, batch_format="pyarrow",
                              fn_kwargs=dict(groups=groups, keep_listed=keep_listed))
    return part(False), part(True)


def _select_groups(batch: pa.Table, *, groups: np.ndarray, keep_listed: bool) -> pa.Table:
    listed = np.isin(batch.column("group_id").to_numpy(), groups)
    return batch.filter(pa.array(listed if keep_listed else ~listed))


def read_columns(split_dir: str, columns: list, files: list | None = None) -> pa.Table:
    """Some columns of every Parquet shard of a split (small ones: ids, lengths), without Ray.
    `files`: the split's shards when the caller has already listed them."""
    fs, _ = storage.filesystem(split_dir)
    files = storage.list_files(split_dir, ".parquet") if files is None else files
    paths = [storage.filesystem(f)[1] for f in files]
    return pads.dataset(paths, filesystem=fs, format="parquet").to_table(columns=columns)


def split_stats(split_dir: str) -> dict:
    """Count examples, puzzles and groups of a written split by reading back its small columns."""
    files = storage.list_files(split_dir, ".parquet")
    if not files:
        return {"examples": 0, "puzzles": 0, "groups": 0, "files": 0, "bytes": 0}
    fs, _ = storage.filesystem(split_dir)
    paths = [storage.filesystem(f)[1] for f in files]
    table = read_columns(split_dir, ["group_id", "aug_index"], files)
    groups = table.column("group_id").to_numpy()
    augs = table.column("aug_index").to_numpy().astype("int64")
    puzzles = np.unique(groups.astype(np.int64) << 32 | augs).size   # one int64 key per (group, version)
    return {
        "examples": int(table.num_rows),
        "puzzles": int(puzzles),
        "groups": int(np.unique(groups).size),
        "files": len(files),
        "bytes": int(sum(fs.size(p) for p in paths)),
    }


TOKEN_COLUMNS = ("inputs", "labels", "preds")     # written as fixed_size_binary(seq_len) (preds: stage=eval's)


def token_array(tokens: np.ndarray) -> pa.FixedSizeBinaryArray:
    """[rows, seq_len] uint8 tokens as one fixed-size binary value per row (zero copy of a C-ordered array)."""
    tokens = np.ascontiguousarray(tokens, dtype=np.uint8)
    return pa.FixedSizeBinaryArray.from_buffers(pa.binary(tokens.shape[1]), tokens.shape[0],
                                                [None, pa.py_buffer(tokens)])


def column_numpy(column) -> np.ndarray:
    """An Arrow column as numpy: token columns (fixed-size binary, or lists of equal length, plain or Ray's
    tensor extension) as [rows, seq_len]; the others as 1-D. Token arrays may be read-only views."""
    array = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    shape = getattr(array.type, "shape", None)      # Ray's tensor type knows its row shape, even with no rows
    if isinstance(array, pa.ExtensionArray):
        array = array.storage
    if pa.types.is_fixed_size_binary(array.type):
        width, rows = array.type.byte_width, len(array)
        if rows == 0:
            return np.zeros((0, width), np.uint8)
        data = np.frombuffer(array.buffers()[1], np.uint8)
        return data[array.offset * width:(array.offset + rows) * width].reshape(rows, width)
    if pa.types.is_list(array.type) or pa.types.is_large_list(array.type):
        if len(array) == 0:
            return np.zeros((0, *(shape or (0,))), dtype=array.type.value_type.to_pandas_dtype())
        return array.flatten().to_numpy(zero_copy_only=False).reshape(len(array), -1)
    return array.to_numpy(zero_copy_only=False)


def arrow_table(columns: dict) -> pa.Table:
    """Rows of numpy columns as an Arrow table; 2-D columns become Ray tensor columns (as `map_batches`
    output would), so in-memory datasets look the same whichever way a builder made them."""
    from ray.data.extensions import ArrowTensorArray
    return pa.table({k: ArrowTensorArray.from_numpy(v) if v.ndim > 1 else pa.array(v)
                     for k, v in columns.items()})


def disk_table(table: pa.Table) -> pa.Table:
    """`table` as it goes to disk: its token columns as fixed-size binary."""
    for name in TOKEN_COLUMNS:
        if name in table.column_names and not pa.types.is_fixed_size_binary(table.schema.field(name).type):
            tokens = column_numpy(table.column(name))
            if tokens.ndim == 2 and tokens.shape[1]:       # (an empty list column has no width to declare)
                table = table.set_column(table.schema.get_field_index(name), name, token_array(tokens))
    return table


def read_ray(split_dir: str, columns: list):
    """A written split (or any folder of shards with token columns) as a Ray Dataset whose token columns are
    Ray tensors: numpy batches hold them as [rows, seq_len] uint8, whichever encoding the files use."""
    return ray.data.read_parquet(split_dir, columns=columns).map_batches(_tokens_as_tensors, batch_format="pyarrow")


def _tokens_as_tensors(batch: pa.Table) -> pa.Table:
    from ray.data.extensions import ArrowTensorArray
    for name in TOKEN_COLUMNS:
        if name in batch.column_names and pa.types.is_fixed_size_binary(batch.schema.field(name).type):
            batch = batch.set_column(batch.schema.get_field_index(name), name,
                                     ArrowTensorArray.from_numpy(column_numpy(batch.column(name))))
    return batch


SHARD = "shard"                  # the helper column naming each row's file; never written
ORDER_COLUMNS = ("group_id", "aug_index", "is_test_pair", "example_index")   # a row's place in its file


def _write_options(schema: pa.Schema, options: dict) -> dict:
    """Parquet writer options: zstd, and min/max statistics only for the scalar columns (a token column's
    statistics cost a third of its write time and no reader uses them)."""
    scalar = [f.name for f in schema if f.name not in TOKEN_COLUMNS and not (
        pa.types.is_list(f.type) or pa.types.is_large_list(f.type) or isinstance(f.type, pa.ExtensionType))]
    return {"compression": "zstd", "write_statistics": scalar, **options}


def shard_name(index: int) -> str:
    return f"part-{index:06d}.parquet"


def groups_per_file(rows_per_file: int, copies: int) -> int:
    """Groups per file for about `rows_per_file` rows when each group has `copies` rows."""
    return max(1, int(rows_per_file) // int(copies))


def staging_dir(data_dir: str, split: str) -> str:
    """Where `write_split` puts a split's fragments before merging them into its files."""
    return storage.join(data_dir, f".staging-{split}")


def write_split(ds, data_dir: str, split: str, groups_per_file: int, parquet_options: dict | None = None) -> None:
    """Write a Ray Dataset of example rows into `data_dir/<split>/` as zstd Parquet shards.

    Which rows a file holds and in what order are functions of the rows alone, never of Ray's scheduling
    (which task finished first, how blocks were bundled), so equal builds give equal files whatever the
    load or the number of CPUs: the same command trains on the same stream. File k holds the groups
    `k * groups_per_file ...` (all of their copies), its rows sorted by ORDER_COLUMNS. `parquet_options`: extra
    `pyarrow.parquet.write_table` options for a task's data. (A builder that makes each file's rows itself,
    in order, uses `write_files`: one pass.)

    Two passes, no shuffle service: each block writes its rows of each file as a fragment under
    `staging_dir`, then one task per file merges that file's fragments, sorts and writes it. A task holds one
    block or one file, never a split. (Ray's hash shuffle did this in one pass but held 1/P of the split per
    reducer, started an actor per partition, and failed on the empty blocks a filter leaves.)
    """
    if groups_per_file < 1:
        raise ValueError(f"groups_per_file={groups_per_file} must be positive")
    ds = ds.map_batches(_with_shard, batch_format="pyarrow", fn_kwargs=dict(groups_per_file=groups_per_file))
    staging = staging_dir(data_dir, split)
    storage.remove(staging)
    ds.map_batches(_stage_fragments, batch_format="pyarrow", batch_size=None,
                   fn_kwargs=dict(staging=staging)).materialize()
    directory = storage.join(data_dir, split)
    ray.get([_merge_shard.remote(shard, staging, directory, parquet_options or {}) for shard in _staged_shards(staging)])
    storage.remove(staging)


def _with_shard(batch: pa.Table, *, groups_per_file: int) -> pa.Table:
    groups = batch.column("group_id").to_numpy()
    return batch.append_column(SHARD, pa.array(groups // groups_per_file, type=pa.int64()))


def _staged_shards(staging: str) -> list[int]:
    """The file indices that received fragments: the staging folder's subfolders (one listing call)."""
    return sorted(int(posixpath.basename(folder)) for folder in storage.list_folders(staging))


def _stage_fragments(block: pa.Table, *, staging: str) -> pa.Table:
    """One block's rows of each file -> `staging/<file>/<uuid>.parquet`; returns the files it touched."""
    if block.num_rows == 0:            # a filter's empty block (Ray may hand it over without a schema)
        return pa.table({SHARD: pa.array([], type=pa.int64())})
    shards = block.column(SHARD).to_numpy()
    touched = np.unique(shards)
    for shard in touched:
        rows = block.filter(pa.array(shards == shard)).drop_columns([SHARD])
        fs, path = storage.filesystem(storage.join(staging, f"{int(shard):06d}", f"{uuid.uuid4().hex}.parquet"))
        fs.makedirs(path.rsplit("/", 1)[0], exist_ok=True)
        with fs.open(path, "wb") as f:
            pq.write_table(disk_table(rows), f, compression="lz4")
    return pa.table({SHARD: pa.array(touched, type=pa.int64())})


@ray.remote
def _merge_shard(shard: int, staging: str, directory: str, options: dict) -> int:
    """A file's fragments (any number, any order) -> `part-<shard>.parquet`, sorted; returns its row count."""
    import ray.data  # noqa: F401  (registers Ray's tensor extension types, so fragments read back as written)
    fragments = storage.list_files(storage.join(staging, f"{shard:06d}"), ".parquet")
    fs, _ = storage.filesystem(directory)
    rows = pa.concat_tables([pq.read_table(storage.filesystem(f)[1], filesystem=fs) for f in fragments])
    rows = disk_table(rows.sort_by([(c, "ascending") for c in ORDER_COLUMNS if c in rows.column_names]).combine_chunks())
    path = storage.filesystem(storage.join(directory, shard_name(shard)))[1]
    fs.makedirs(path.rsplit("/", 1)[0], exist_ok=True)
    with fs.open(path, "wb") as f:
        pq.write_table(rows, f, **_write_options(rows.schema, options))
    return rows.num_rows


def write_files(units: list, encode, data_dir: str, split: str, parquet_options: dict | None = None,
                **encode_options) -> None:
    """Write a split whose builder makes each file's rows itself (ARC: a run of whole tasks per file): file k
    holds what `encode(units[k], **encode_options)` yields, dicts of numpy columns that must already follow
    ORDER_COLUMNS' (group_id, aug_index) order. One Ray task per file encodes batch by batch and writes each
    batch as row groups of `part-<k>.parquet`: one pass, nothing staged, a task holds one batch."""
    items = [{"index": k, "unit": pickle.dumps(u, protocol=pickle.HIGHEST_PROTOCOL)} for k, u in enumerate(units)]
    directory = storage.join(data_dir, split)
    ray.data.from_items(items, override_num_blocks=max(1, len(items))).map_batches(
        _write_file, batch_size=1, batch_format="numpy",
        fn_kwargs=dict(encode=encode, directory=directory, options=parquet_options or {},
                       encode_options=encode_options)).materialize()


def _write_file(batch, *, encode, directory: str, options: dict, encode_options: dict) -> dict:
    index, unit = int(batch["index"][0]), pickle.loads(batch["unit"][0])
    fs, path = storage.filesystem(storage.join(directory, shard_name(index)))
    options = dict(options)
    row_group_size = options.pop("row_group_size", None)
    writer, handle, rows, last = None, None, 0, np.zeros((0, 2), np.int64)
    try:
        for columns in encode(unit, **encode_options):
            keys = np.concatenate([last, np.stack([columns["group_id"], columns["aug_index"]], axis=1)]).astype(np.int64)
            step_group, step_aug = np.diff(keys[:, 0]), np.diff(keys[:, 1])
            if ((step_group < 0) | ((step_group == 0) & (step_aug < 0))).any():
                raise ValueError(f"{path}: the builder's rows are out of (group_id, aug_index) order")
            last = keys[-1:]
            table = disk_table(arrow_table(columns))
            if writer is None:
                fs.makedirs(path.rsplit("/", 1)[0], exist_ok=True)
                handle = fs.open(path, "wb")
                writer = pq.ParquetWriter(handle, table.schema, **_write_options(table.schema, options))
            writer.write_table(table, row_group_size=row_group_size)
            rows += table.num_rows
    finally:
        if writer is not None:
            writer.close()
        if handle is not None:
            handle.close()
    return {"rows": np.array([rows])}


def publish_manifest(cfg, data_dir: str, fields: dict) -> dict:
    """Compute per-split stats, then write `dataset.json` last: the dataset is now complete.

    `fields` holds the task's own entries (seq_len, vocab_size, num_puzzle_identifiers, ...).
    """
    manifest = {
        "task": cfg.task.name,
        "pad_id": 0,
        "ignore_label_id": 0,
        "blank_identifier_id": 0,
        "seed": int(cfg.seed),
        "splits": {split: split_stats(storage.join(data_dir, split)) for split in SPLITS},
        "config": saved_config(cfg),
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "command": command_line(),
        **fields,
    }
    for key in ("seq_len", "vocab_size", "num_puzzle_identifiers"):
        if key not in manifest:
            raise ValueError(f"manifest field {key!r} missing")
    storage.write_json_atomic(manifest_path(data_dir), manifest)
    return manifest


def print_summary(manifest: dict, data_dir: str) -> None:
    order = {"train": 0, "val": 1, "test": 2}      # the same rows in the same order on every run
    rows = [(s, v["examples"], v["puzzles"], v["groups"], v["files"], v["bytes"] / 1e6)
            for s, v in sorted(manifest["splits"].items(), key=lambda item: (order.get(item[0], 3), item[0]))
            if s != "val" or v["examples"]]
    lines = [f"dataset {manifest['task']} at {data_dir}",
             f"{'split':<6} {'examples':>10} {'puzzles':>9} {'groups':>8} {'files':>6} {'MB':>9}"]
    lines += [f"{s:<6} {e:>10,} {p:>9,} {g:>8,} {f:>6} {mb:>9.2f}" for s, e, p, g, f, mb in rows]
    lines.append(f"seq_len {manifest['seq_len']}, vocab {manifest['vocab_size']}, "
                 f"puzzle identifiers {manifest['num_puzzle_identifiers']:,}")
    print("\n".join(lines), flush=True)
