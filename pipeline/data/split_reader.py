"""Rows of one written split by position, straight from its Parquet files (local or `s3://`), without Ray Data.

A split's rows are numbered in file-name order, then in file order: the positions `sampling.GroupSampler`
hands out. Training reads either the whole split once (`read_columns`) or, for a split larger than memory, the
rows a window of upcoming epochs needs (`read_rows`, which reads only the row groups holding them).
"""
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from pipeline import storage
from pipeline.data.dataset_format import column_numpy, read_columns


class SplitFiles:
    """The Parquet files of `split_dir` with their row counts (from the footers)."""

    def __init__(self, split_dir: str):
        self.split_dir = split_dir
        self.files = storage.list_files(split_dir, ".parquet")
        self._fs = storage.filesystem(split_dir)[0] if self.files else None
        self._row_groups = []          # per file: rows of each row group
        for path in self.files:
            with self._fs.open(storage.filesystem(path)[1], "rb") as f:
                meta = pq.ParquetFile(f).metadata
            self._row_groups.append(np.array([meta.row_group(i).num_rows for i in range(meta.num_row_groups)],
                                             dtype=np.int64))
        per_file = np.array([g.sum() for g in self._row_groups], dtype=np.int64)
        self._file_start = np.r_[0, np.cumsum(per_file)].astype(np.int64)
        self.rows = int(self._file_start[-1])

    def read_columns(self, columns: list) -> dict:
        """Whole columns, as numpy arrays."""
        if not self.files:
            return {c: np.zeros(0, np.int64) for c in columns}
        table = read_columns(self.split_dir, columns, self.files)
        return {c: column_numpy(table.column(c)) for c in columns}

    def read_rows(self, positions: np.ndarray, columns: list) -> dict:
        """The rows at `positions` (any order, repeats allowed), in that order."""
        unique, at = self.read_distinct(positions, columns)
        return {c: v[at] for c, v in unique.items()}

    def read_distinct(self, positions: np.ndarray, columns: list) -> tuple[dict, np.ndarray]:
        """(each distinct row of `positions` once, in position order; where each position's row is in it):
        reads only the row groups holding one of them, file by file, into one array per column."""
        positions = np.asarray(positions, np.int64)
        wanted = np.unique(positions)                    # sorted: each file's rows are one slice of it
        unique = {}
        file_of = np.searchsorted(self._file_start, wanted, side="right") - 1
        cuts = np.r_[0, np.flatnonzero(np.diff(file_of)) + 1, len(wanted)]
        for lo, hi in zip(cuts[:-1], cuts[1:]):
            if lo == hi:
                continue
            index = file_of[lo]
            rows = wanted[lo:hi] - self._file_start[index]
            bounds = np.r_[0, np.cumsum(self._row_groups[index])]
            group_of_row = np.searchsorted(bounds, rows, side="right") - 1
            groups = np.unique(group_of_row)
            with self._fs.open(storage.filesystem(self.files[index])[1], "rb") as f:
                table = pq.ParquetFile(f).read_row_groups(groups.tolist(), columns=columns)
            # Row r of the file sits at its offset inside the concatenation of the row groups read.
            offsets = np.r_[0, np.cumsum(self._row_groups[index][groups])]
            local = offsets[np.searchsorted(groups, group_of_row)] + rows - bounds[group_of_row]
            for c in columns:
                values = column_numpy(table.column(c).take(pa.array(local)))
                if c not in unique:
                    unique[c] = np.empty((len(wanted),) + values.shape[1:], values.dtype)
                unique[c][lo:hi] = values
            del table
        for c in columns:
            unique.setdefault(c, np.zeros(0, np.int64))
        return unique, np.searchsorted(wanted, positions)
