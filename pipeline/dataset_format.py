"""The dataset contract every data stage writes and every later stage reads.

Layout under `data_dir` (local or `s3://`):
- `train/*.parquet`, `test/*.parquet`: one row per example, with at least
  - `inputs`, `labels`: fixed-length uint8 token sequences (Ray tensor columns, `large_list<uint8>` on
    disk); label 0 is PAD/ignore;
  - `puzzle_identifier` (int32): row of the puzzle-embedding table, 0 = blank;
  - `group_id` (int64): the original puzzle/task the row derives from;
  - `aug_index` (int32): 0 = untransformed, k = k-th augmentation of that group.
  A *puzzle* is one (group_id, aug_index) pair. Tasks may add columns (ARC: its transform).
- `dataset.json`: the manifest, written last and atomically. Its presence means the dataset is complete.
"""
import datetime
import logging

import numpy as np
import pyarrow as pa
import pyarrow.dataset as pads
from ray.data.datasource import FilenameProvider

from pipeline import storage
from pipeline.config import command_line, saved_config
from pipeline.errors import PipelineError

log = logging.getLogger(__name__)

MANIFEST = "dataset.json"
SPLITS = ("train", "test")


def manifest_path(data_dir: str) -> str:
    return storage.join(data_dir, MANIFEST)


def read_manifest(data_dir: str) -> dict:
    path = manifest_path(data_dir)
    if not storage.exists(path):
        raise PipelineError(f"no dataset at {data_dir}: {MANIFEST} is missing "
                            f"(run stage=augment first, or pass data_dir=)")
    return storage.read_json(path)


def dataset_complete(data_dir: str) -> bool:
    return storage.exists(manifest_path(data_dir))


def clear_incomplete(data_dir: str) -> None:
    """Remove split folders left by an interrupted run (no manifest means nothing was published)."""
    for split in SPLITS:
        storage.remove(storage.join(data_dir, split))


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
    puzzles = np.unique(np.stack([groups, augs], axis=1), axis=0).shape[0] if len(groups) else 0
    return {
        "examples": int(table.num_rows),
        "puzzles": int(puzzles),
        "groups": int(np.unique(groups).size),
        "files": len(files),
        "bytes": int(sum(fs.size(p) for p in paths)),
    }


def arrow_table(columns: dict) -> pa.Table:
    """Rows of numpy columns as an Arrow table; 2-D columns become Ray tensor columns (as `map_batches`
    output would), so the Parquet files look the same whichever way a builder made them."""
    from ray.data.extensions import ArrowTensorArray
    return pa.table({k: ArrowTensorArray.from_numpy(v) if v.ndim > 1 else pa.array(v)
                     for k, v in columns.items()})


class ShardNames(FilenameProvider):
    """Ray Data filename provider: `part-<write task index>.parquet`, the same on every run.

    Ray's default names start with random UUIDs; with the order preserved (see `write_split`) the task
    index is the shard's place in the split, so equal builds give equal file names and bytes.
    """

    def get_filename_for_task(self, write_uuid: str, task_index: int) -> str:
        return f"part-{task_index:06d}.parquet"


def write_split(ds, data_dir: str, split: str, rows_per_file: int, parquet_options: dict | None = None) -> None:
    """Stream a Ray Dataset of example rows into `data_dir/<split>/` as zstd Parquet shards.

    Rows keep the dataset's order (its blocks in index order, not in the order Ray's tasks finish), so a
    split's files are a function of config and seed alone, whatever the load or the number of CPUs: the
    same command trains on the same stream. Shard boundaries are fixed too: the rows are cut into batches
    of exactly `rows_per_file` (the last shorter), one file each; Ray's own `min_rows_per_file` bundles
    whatever blocks are ready, so its boundaries move with the load. `rows_per_file=1` keeps one file
    per input block (ARC: one per unit). `parquet_options`: extra pyarrow writer options (e.g.
    `use_dictionary`) for a task's data.
    """
    ds.context.execution_options.preserve_order = True
    if rows_per_file > 1:
        ds = ds.map_batches(_same_rows, batch_size=rows_per_file, batch_format="pyarrow")
    ds.write_parquet(storage.join(data_dir, split), compression="zstd", filename_provider=ShardNames(),
                     mode="overwrite", **(parquet_options or {}))


def _same_rows(batch):
    return batch


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
    rows = [(s, v["examples"], v["puzzles"], v["groups"], v["files"], v["bytes"] / 1e6)
            for s, v in manifest["splits"].items()]
    lines = [f"dataset {manifest['task']} at {data_dir}",
             f"{'split':<6} {'examples':>10} {'puzzles':>9} {'groups':>8} {'files':>6} {'MB':>9}"]
    lines += [f"{s:<6} {e:>10,} {p:>9,} {g:>8,} {f:>6} {mb:>9.2f}" for s, e, p, g, f, mb in rows]
    lines.append(f"seq_len {manifest['seq_len']}, vocab {manifest['vocab_size']}, "
                 f"puzzle identifiers {manifest['num_puzzle_identifiers']:,}")
    print("\n".join(lines), flush=True)
