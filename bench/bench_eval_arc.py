"""Benchmark stage=eval_arc: predictions per second on CPU for a small model, and the voting/scoring time
for synthetic predictions at ARC-AGI-1 scale (400 tasks x 1000 augmentations; target under 60 s).

    python bench/bench_eval_arc.py [--tasks 400] [--augs 1000] [--arc-tasks 8] [--arc-augs 64]

Voting runs on Ray Data (groupby + map_groups, nothing gathered); the baseline groups the same rows in
one process with a dict (the reference's gather-to-rank-0 approach), using the same vote function.
"""
import argparse
import json
import logging
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("RAY_DATA_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("RAY_DATA_LOG_LEVEL", "WARNING")
os.environ.setdefault("RAY_TRAIN_ENABLE_PREEMPTION_WATCHER", "0")

from pipeline.tasks.arc import voting as arc_voting  # noqa: E402
from tests.test_arc_voting import synthetic_predictions  # noqa: E402


def bench_voting(tmp: Path, tasks: int, augs: int) -> None:
    import ray

    from pipeline.stages.eval_arc import ROWS_PER_VOTE_PARTITION, score, vote
    t0 = time.perf_counter()
    predictions, counts, truth = synthetic_predictions(np.random.default_rng(0), tasks, augs, 0.1, 0.05)
    rows = len(predictions["q_halt"])
    folder = tmp / "predictions"
    folder.mkdir()
    for i, start in enumerate(range(0, rows, 100_000)):
        part = {k: v[start:start + 100_000] for k, v in predictions.items()}
        pq.write_table(pa.table({k: pa.array(list(v)) if v.dtype == object else pa.array(v) for k, v in part.items()}),
                       str(folder / f"part{i}.parquet"))
    print(f"synthetic predictions: {rows:,} rows for {len(truth)} test inputs ({time.perf_counter() - t0:.1f} s to make)")

    t0 = time.perf_counter()
    ds = ray.data.read_parquet(str(folder))
    votes_dir = str(tmp / "votes")
    vote(ds, truth, keep=1000, partitions=1 + rows // ROWS_PER_VOTE_PARTITION).write_parquet(votes_dir)
    metrics, _ = score(votes_dir, counts, truth, [1, 2, 10, 100, 1000])
    ray_s = time.perf_counter() - t0

    t0 = time.perf_counter()
    table = pq.read_table(str(folder))
    columns = {k: table.column(k).to_numpy(zero_copy_only=False) for k in table.column_names}
    groups = {}
    for i, key in enumerate(zip(columns["task_id"], columns["example_index"])):
        groups.setdefault(key, []).append(i)
    correct = ([], [], [])
    for idx in groups.values():
        votes = arc_voting.vote_group({k: v[idx] for k, v in columns.items()}, truth, keep=1000)
        hit = np.flatnonzero(votes["correct"])
        if hit.size:
            for lst, value in zip(correct, (votes["task_id"][0], votes["example_index"][0], votes["rank"][hit[0]])):
                lst.append(value)
    baseline = arc_voting.pass_at_k(counts, *correct, ks=[1, 2, 10, 100, 1000])
    one_process_s = time.perf_counter() - t0
    assert all(abs(baseline[k] - metrics[k]) < 1e-12 for k in baseline), (baseline, metrics)
    print(f"voting + scoring on Ray Data: {ray_s:.1f} s ({rows / ray_s:,.0f} predictions/s), pass@1 "
          f"{metrics['pass@1']:.3f}; one process with a dict: {one_process_s:.1f} s; ratio {ray_s / one_process_s:.2f}")


def bench_predictions(tmp: Path, shared: Path, arc_tasks: int, arc_augs: int) -> None:
    from pipeline.run import run_stage
    from tests.conftest import compose
    challenges = json.loads((shared / "arc" / "arc-agi_evaluation_challenges.json").read_text())
    training = json.loads((shared / "arc" / "arc-agi_training_challenges.json").read_text())
    ids = sorted(challenges)[:arc_tasks] + sorted(training)[:2]
    paths = [f"data_dir={tmp / 'data'}", f"run_dir={tmp / 'run'}", "task=arc", "preset=none",
             f"task.source={shared / 'arc' / 'arc-agi'}", "task.subsets=[training,evaluation]",
             f"task.task_ids=[{','.join(ids)}]", f"task.num_aug={arc_augs}"]
    run_stage(compose("stage=augment", *paths))
    run_stage(compose("stage=train", *paths, "model.hidden_size=64", "model.num_heads=2", "model.L_layers=2",
                      "model.H_cycles=2", "model.L_cycles=2", "model.halt_max_steps=4", "model.puzzle_emb_len=4",
                      "train.num_workers=1", "train.global_batch_size=16", "train.steps=1", "train.eval_every=0"))
    t0 = time.perf_counter()
    metrics = run_stage(compose("stage=eval_arc", *paths, "eval.batch_size=64"))
    seconds = time.perf_counter() - t0
    print(f"stage=eval_arc on CPU (hidden 64, 2 layers, T=2 n=2, N_sup=4, 900 tokens): {metrics['predictions']:,} "
          f"predictions in {seconds:.1f} s = {metrics['predictions'] / seconds:.1f} predictions/s (whole stage, "
          f"actor start and voting included)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", type=int, default=400)
    parser.add_argument("--augs", type=int, default=1000)
    parser.add_argument("--arc-tasks", type=int, default=8)
    parser.add_argument("--arc-augs", type=int, default=64)
    parser.add_argument("--shared", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--skip-model", action="store_true", help="voting only")
    args = parser.parse_args()
    import ray
    ray.init(num_cpus=os.cpu_count(), include_dashboard=True, logging_level=logging.WARNING)
    with tempfile.TemporaryDirectory() as tmp:
        bench_voting(Path(tmp), args.tasks, args.augs)
        if not args.skip_model:
            bench_predictions(Path(tmp), args.shared, args.arc_tasks, args.arc_augs)


if __name__ == "__main__":
    main()
