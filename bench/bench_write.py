"""The dataset write path: `dataset_format.write_split` (files a function of the rows) against Ray's plain
`Dataset.write_parquet` (files in task order), on a local Ray.

python bench/bench_write.py [--rows 200000] [--seq 81] [--blocks 40] [--cpus 2] [--repeats 3]

The rows are Sudoku-like: `inputs`/`labels` uint8 tensor columns of `--seq` tokens, group ids in a random
order cut into `--blocks` blocks (as a builder's map tasks hand them over), 4 copies per group. Each
write goes to a fresh temporary folder; the table gives the median wall time of `--repeats` writes and
rows/s, and the ratio of write_split's time to the baseline's (above 1: slower).
"""
import argparse
import statistics
import tempfile
import time

import numpy as np
import ray

from pipeline.data import dataset_format as fmt
from record import commit_label


def make_dataset(rows: int, seq: int, blocks: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    groups = rng.permutation(rows // 4).repeat(4)
    copies = np.tile(np.arange(4, dtype=np.int32), rows // 4)
    tokens = rng.integers(1, 11, size=(len(groups), seq), dtype=np.uint8)
    cuts = np.array_split(np.arange(len(groups)), blocks)
    tables = [fmt.arrow_table({"inputs": tokens[c], "labels": tokens[c], "group_id": groups[c].astype(np.int64),
                               "aug_index": copies[c], "puzzle_identifier": np.zeros(len(c), np.int32)})
              for c in cuts]
    return ray.data.from_arrow(tables).materialize()


def timed(write, repeats: int) -> float:
    walls = []
    for _ in range(repeats):
        with tempfile.TemporaryDirectory(prefix="trm-write-") as folder:
            start = time.perf_counter()
            write(folder)
            walls.append(time.perf_counter() - start)
    return statistics.median(walls)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--seq", type=int, default=81)
    parser.add_argument("--blocks", type=int, default=40)
    parser.add_argument("--cpus", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    ray.init(num_cpus=args.cpus, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    ray.data.DataContext.get_current().enable_progress_bars = False
    ds = make_dataset(args.rows, args.seq, args.blocks)
    per_file = fmt.groups_per_file(args.rows // 8, 4)           # 8 files
    cases = {
        "ray write_parquet (task order)": lambda d: ds.write_parquet(d, compression="zstd"),
        "write_split (sorted files)": lambda d: fmt.write_split(ds, d, "train", per_file),
    }
    timed(cases["write_split (sorted files)"], 1)                # warm the workers once
    print(f"# python bench/bench_write.py --rows {args.rows} --seq {args.seq} --blocks {args.blocks} "
          f"--cpus {args.cpus} (commit {commit_label()}, {time.strftime('%Y-%m-%d')})")
    print(f"{'write':<32} {'median s':>9} {'rows/s':>10} {'ratio':>6}")
    base = None
    for name, write in cases.items():
        wall = timed(write, args.repeats)
        base = base or wall
        print(f"{name:<32} {wall:>9.2f} {args.rows / wall:>10,.0f} {wall / base:>6.2f}", flush=True)


if __name__ == "__main__":
    main()
