"""This rank's training examples, epoch after epoch, read by a thread of their own.

Data order: the reference's sampler (`pipeline.data.sampling`): per epoch a seeded permutation of the groups,
one version of each drawn uniformly, all of its examples; rank r keeps the epoch's positions p with
p % world == r. The order each rank sees is thereby a pure function of (seed, epoch, rank, world): ranks
never overlap, and a restarted rank skips exactly the rows it had consumed. Rows are read straight from the
split's Parquet files (`pipeline.data.split_reader`), not through Ray Data, so training needs no CPU for read tasks.

Two ways to hold the rows, chosen by the split's size (`train.in_memory_mb`):
- in memory (Sudoku, Maze, small ARC builds): every rank reads the split once.
- streamed (ARC at aug 1000, 6.5 GB): every rank keeps the split's small index (group and version of each
  row: 12 bytes a row) and reads, for a window of upcoming epochs, only the row groups holding its rows of
  them (`train.stream_window_rows` rows held at a time, plus the row groups being read).
"""
import queue
import threading

import numpy as np

from pipeline.data.examples import COLUMNS, to_examples
from pipeline.data.sampling import GroupSampler
from pipeline.data.split_reader import SplitFiles


def split_fits_in_memory(in_memory_mb: float, manifest: dict) -> bool:
    """Whether each worker holds the train split in memory (tokens as uint8, one int64 id per row)."""
    examples = manifest.get("splits", {}).get("train", {}).get("examples", 0)
    return examples * (2 * int(manifest["seq_len"]) + 8) <= in_memory_mb * 2**20


class ExampleStream:
    """This rank's examples, epoch after epoch, from a position (epoch, rows of this rank consumed)."""

    def __init__(self, split: SplitFiles, sampler: GroupSampler, rank: int, world: int, chunk: int,
                 window_rows: int, epoch: int = 0, consumed: int = 0, in_memory: bool = False,
                 prefetch_chunks: int = 8):
        if sampler.min_epoch_rows <= rank:
            raise RuntimeError(f"rank {rank}: the train split of {split.split_dir} has {sampler.min_epoch_rows} "
                               f"examples in an epoch, fewer than the {world} workers")
        self.split, self.sampler, self.rank, self.world = split, sampler, rank, world
        self.chunk, self.in_memory, self.window_rows = chunk, in_memory, max(1, int(window_rows))
        self.epoch, self.consumed = epoch, consumed
        self._current: tuple[int, dict] | None = None   # (epoch, rows) read but not taken yet
        # A reader thread keeps chunks ready, so reading never stalls a step (at an epoch or window boundary).
        # The order does not depend on timing.
        self._queue: queue.Queue = queue.Queue(maxsize=prefetch_chunks)
        self._stop = threading.Event()
        self._reader = threading.Thread(target=self._read, args=(epoch, consumed), daemon=True,
                                        name=f"example-stream-{rank}")
        self._reader.start()

    def _read(self, epoch: int, skip: int) -> None:
        try:
            for item in self._iterate(epoch, skip):
                while not self._stop.is_set():
                    try:
                        self._queue.put(item, timeout=0.5)
                        break
                    except queue.Full:
                        continue
                if self._stop.is_set():
                    return
        except BaseException as err:  # handed to the training thread, which raises it
            self._queue.put(err)

    def close(self) -> None:
        self._stop.set()
        self._reader.join(timeout=5)

    def _windows(self, epoch: int, skip: int):
        """(epochs, their lengths for this rank, rows, where each position's row is in rows): consecutive
        epochs of about window_rows rows (one epoch at a time when the whole split is held)."""
        whole = self.split.read_columns(list(COLUMNS)) if self.in_memory else None
        while True:
            epochs, positions = [], []
            while not epochs or sum(map(len, positions)) < self.window_rows:
                positions.append(self.sampler.rank_epoch(epoch, self.rank, self.world)[skip:])
                epochs.append(epoch)
                epoch, skip = epoch + 1, 0
                if whole is not None:
                    break
            flat = np.concatenate(positions)
            rows, at = (whole, flat) if whole is not None else self.split.read_distinct(flat, list(COLUMNS))
            yield epochs, [len(p) for p in positions], rows, at

    def _iterate(self, epoch: int, skip: int):
        for epochs, lengths, rows, at in self._windows(epoch, skip):
            done = 0
            for epoch, length in zip(epochs, lengths):
                for start in range(done, done + length, self.chunk):
                    index = at[start:min(start + self.chunk, done + length)]
                    yield epoch, {k: v[index] for k, v in rows.items()}
                done += length

    def take(self, k: int) -> dict:
        """The next k examples as trm example tensors; advances (epoch, consumed)."""
        parts, have = [], 0
        while have < k:
            if self._current is None:
                item = self._queue.get()
                if isinstance(item, BaseException):
                    raise item
                self._current = item
            epoch, rows = self._current
            if epoch != self.epoch:
                self.epoch, self.consumed = epoch, 0
            n = min(k - have, len(rows["puzzle_identifier"]))
            parts.append({key: v[:n] for key, v in rows.items()})
            rest = {key: v[n:] for key, v in rows.items()}
            self._current = (epoch, rest) if len(rest["puzzle_identifier"]) else None
            have += n
            self.consumed += n
        if not parts:
            empty = np.zeros((0, 0), dtype=np.uint8)
            return to_examples({"inputs": empty, "labels": empty, "puzzle_identifier": np.zeros(0, np.int64)})
        return to_examples({key: np.concatenate([p[key] for p in parts]) for key in parts[0]})
