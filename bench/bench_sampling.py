"""The training sampler against the reference's, on a built dataset (ARC-AGI-1 at num_aug 1000 for the record).

    python -m pipeline.run stage=augment preset=arc_agi_1 task.source=../shared/data/arc/arc-agi data_dir=DIR
    python bench/bench_sampling.py --data_dir DIR [--epochs 100] [--batch 768] [--rows 200000]

Mixing, from the train split's (group_id, aug_index) columns:
- reference: a re-implementation, inside this bench, of the reference's sampler (docs trm_reference.md §3.2):
  concatenated per-epoch permutations of the groups, one version per group drawn uniformly, all of its
  examples in random order, the last puzzle of a global batch truncated to fit, an incomplete last batch
  dropped;
- project: `pipeline.data.sampling.GroupSampler`, consecutive `--batch` positions of its epochs as a global batch
  (its in-memory and streamed paths hand out the same rows: tests/test_train.py);
- uniform rows: a permutation of all rows per epoch (the project's order before this sampler).
Figures: distinct groups per global batch (mean, min) and the max/min ratio of the groups' visit counts
(a visit = one version of the group taken) over `--epochs` reference epochs of examples.

Throughput: `pipeline.train.stream.ExampleStream` on the streamed path (world 1, the default window) taking global
batches for `--rows` rows, reading local files, then the same files from a loopback S3 server (moto),
with the process's peak resident memory before the S3 part (moto holds its copy of the files in-process).
"""
import argparse
import os
import resource
import time

import numpy as np
from omegaconf import OmegaConf

from pipeline import storage
from pipeline.data.sampling import GroupSampler
from pipeline.data.split_reader import SplitFiles
from record import commit_label


def reference_batches(group_id, aug_index, epochs: int, batch: int, seed: int = 0) -> list[np.ndarray]:
    """The reference's global batches (row positions) over `epochs` epochs, in its layout: rows sorted by
    (group, version), `puzzle_indices` / `group_indices` as boundaries."""
    order = np.lexsort((aug_index, group_id))
    g, a = group_id[order], aug_index[order]
    puzzle_indices = np.r_[np.flatnonzero(np.r_[True, (g[1:] != g[:-1]) | (a[1:] != a[:-1])]), len(g)]
    puzzle_group = g[puzzle_indices[:-1]]
    group_indices = np.r_[np.flatnonzero(np.r_[True, puzzle_group[1:] != puzzle_group[:-1]]), len(puzzle_group)]
    rng = np.random.Generator(np.random.Philox(seed=seed + 1))
    legacy = np.random.RandomState(seed)
    group_order = np.concatenate([rng.permutation(len(group_indices) - 1) for _ in range(epochs)])
    batches, at = [], 0
    while at < len(group_order):
        parts, size = [], 0
        while at < len(group_order) and size < batch:
            group = group_order[at]
            puzzle = rng.integers(group_indices[group], group_indices[group + 1])
            at += 1
            start, count = puzzle_indices[puzzle], puzzle_indices[puzzle + 1] - puzzle_indices[puzzle]
            take = min(count, batch - size)
            parts.append(start + legacy.choice(count, take, replace=False))
            size += take
        if size < batch:
            break
        batches.append(order[np.concatenate(parts)])
    return batches


def project_batches(sampler: GroupSampler, rows_wanted: int, batch: int) -> list[np.ndarray]:
    positions, epoch, have = [], 0, 0
    while have < rows_wanted:
        positions.append(sampler.epoch(epoch))
        have += len(positions[-1])
        epoch += 1
    flat = np.concatenate(positions)[:rows_wanted]
    return [flat[i:i + batch] for i in range(0, len(flat) - batch + 1, batch)]


def uniform_batches(rows: int, rows_wanted: int, batch: int, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    flat = np.concatenate([rng.permutation(rows) for _ in range(-(-rows_wanted // rows))])[:rows_wanted]
    return [flat[i:i + batch] for i in range(0, len(flat) - batch + 1, batch)]


def mixing(batches: list[np.ndarray], group_id, aug_index) -> tuple[float, int, float]:
    """(mean, min distinct groups per batch, max/min visits per group); a visit is a run of one puzzle."""
    distinct = [len(np.unique(group_id[b])) for b in batches]
    flat = np.concatenate(batches)
    g, a = group_id[flat], aug_index[flat]
    starts = np.r_[True, (g[1:] != g[:-1]) | (a[1:] != a[:-1])]
    visits = np.bincount(np.unique(g[starts], return_inverse=True)[1])
    everyone = len(np.unique(group_id))
    low = visits.min() if len(visits) == everyone else 0
    return float(np.mean(distinct)), int(np.min(distinct)), visits.max() / low if low else float("inf")


def stream_rate(split_dir: str, sampler: GroupSampler, rows: int, batch: int, window: int) -> float:
    """Examples/s of ExampleStream on the streamed path, world 1 (the first batch, which waits for the first
    window, not counted)."""
    from pipeline.train.stream import ExampleStream
    split = SplitFiles(split_dir)
    stream = ExampleStream(split, sampler, rank=0, world=1, chunk=batch, in_memory=False,
                           window_rows=window)
    stream.take(batch)
    start, taken = time.perf_counter(), batch
    while taken < rows:
        stream.take(batch)
        taken += batch
    seconds = time.perf_counter() - start
    stream.close()
    return (taken - batch) / seconds


def upload_to_moto(split_dir: str) -> str:
    import boto3
    from moto.server import ThreadedMotoServer
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    os.environ.update(AWS_ENDPOINT_URL=f"http://{host}:{port}", AWS_ACCESS_KEY_ID="bench",
                      AWS_SECRET_ACCESS_KEY="bench", AWS_DEFAULT_REGION="us-east-1")
    boto3.client("s3").create_bucket(Bucket="bench")
    fs, _ = storage.filesystem("s3://bench/train")
    for path in storage.list_files(split_dir, ".parquet"):
        fs.put(path, f"bench/train/{os.path.basename(path)}")
    return "s3://bench/train"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data_dir", required=True)
    parser.add_argument("--epochs", type=int, default=100)
    parser.add_argument("--batch", type=int, default=768)
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--window", type=int, help="train.stream_window_rows (default: the config's)")
    parser.add_argument("--skip_s3", action="store_true")
    args = parser.parse_args()
    if args.window is None:
        defaults = os.path.join(os.path.dirname(__file__), "..", "pipeline", "conf", "train", "default.yaml")
        args.window = int(OmegaConf.load(defaults).stream_window_rows)
    split_dir = storage.join(storage.to_absolute(args.data_dir), "train")
    split = SplitFiles(split_dir)
    index = split.read_columns(["group_id", "aug_index"])
    g, a = index["group_id"], index["aug_index"]
    sampler = GroupSampler(g, a, seed=0)
    print(f"# python bench/bench_sampling.py --data_dir {args.data_dir} --epochs {args.epochs} --batch {args.batch} "
          f"--rows {args.rows} --window {args.window}   (commit {commit_label()}, {os.cpu_count()} CPUs)")
    print(f"train split: {split.rows:,} rows in {len(split.files)} files, {sampler.groups} groups, "
          f"{len(np.unique(np.stack([g, a]), axis=1).T):,} puzzles")

    reference = reference_batches(g, a, args.epochs, args.batch)
    wanted = len(reference) * args.batch
    table = {"reference sampler (re-implemented)": mixing(reference, g, a),
             "project GroupSampler": mixing(project_batches(sampler, wanted, args.batch), g, a),
             "uniform over rows (previous order)": mixing(uniform_batches(len(g), wanted, args.batch), g, a)}
    print(f"\nmixing over {args.epochs} reference epochs ({len(reference):,} global batches of {args.batch})")
    print(f"{'sampler':<38} {'groups/batch mean':>18} {'min':>6} {'visits max/min':>15}")
    for name, (mean, low, ratio) in table.items():
        print(f"{name:<38} {mean:>18.1f} {low:>6} {ratio:>15.2f}")
    ref, ours = table["reference sampler (re-implemented)"], table["project GroupSampler"]
    print(f"project / reference: groups per batch mean {ours[0] / ref[0]:.3f}, min {ours[1] / ref[1]:.3f}, "
          f"visit ratio {ours[2] / ref[2]:.3f} (target: each within 10 %)")

    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    rate = stream_rate(split_dir, sampler, args.rows, args.batch, args.window)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    print(f"\n{'streamed ExampleStream, world 1':<38} {'examples/s':>12}")
    print(f"{'local files':<38} {rate:>12,.0f}   (peak resident memory {before:.2f} GB before streaming, "
          f"{peak:.2f} GB after)")
    if not args.skip_s3:
        began = time.perf_counter()
        remote = upload_to_moto(split_dir)
        uploaded = time.perf_counter() - began
        print(f"{'loopback S3 (moto, in this process)':<38} {stream_rate(remote, sampler, args.rows, args.batch, args.window):>12,.0f}"
              f"   (upload {uploaded:.0f} s)")
    print("target: above 5,000 examples/s per worker")


if __name__ == "__main__":
    main()
