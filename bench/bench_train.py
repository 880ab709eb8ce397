"""Training throughput on CPU: Ray Train with 1 and 2 workers and 1 or 2 threads, against a plain torch loop.

    python bench/bench_train.py [--steps 60] [--hidden 64] [--batch 32]

Builds a small 9x9 Sudoku dataset (stage=augment), then times the same model and data three ways:
- plain: one process, no Ray, the examples in memory, the same persistent-carry step as the trainer;
- ray1 / ray2: `stage=train` with 1 / 2 workers of 1 CPU (one torch thread; checkpoints every 20 steps, no
  evaluation), the split held in memory (the default for a split this small);
- ray1, 2 threads: 1 worker of 2 CPUs (what `train.cpus_per_worker=auto` gives one worker on 2 cores);
- ray1 streamed: 1 worker with `train.in_memory_mb=0`, reading windows of epochs' rows from the files.
Step times of a Ray run are the gaps between the wall-clock stamps of consecutive logged steps (the
first 5 dropped): the median is the loop's steady per-step cost, the mean also carries checkpoints and
epoch starts. Neither includes Ray's start-up. The overhead compares ray1 with plain at the same thread
count (a 1-CPU worker trains on one thread).
"""
import argparse
import logging
import os
import statistics
import sys
import tempfile
import time

import numpy as np
import ray
import torch
from hydra import compose, initialize_config_module

from pipeline import storage
from pipeline.metrics_log import read_metrics
from pipeline.run import run_stage
from pipeline.split_reader import SplitFiles
from record import commit_label
from pipeline.train_loop import to_examples
from trm import TRM, act_loss, build_optimizers, refill, set_lr


def config(*overrides):
    with initialize_config_module(config_module="pipeline.conf", version_base=None):
        return compose(config_name="config", overrides=list(overrides))


def model_overrides(args) -> list[str]:
    return [f"model.hidden_size={args.hidden}", "model.num_heads=4", "model.H_cycles=2", "model.L_cycles=2",
            "model.halt_max_steps=4", "model.puzzle_emb_len=4", f"train.global_batch_size={args.batch}",
            f"train.steps={args.steps}", "train.lr_warmup_steps=10", "train.checkpoint_every=20", "train.eval_every=0"]


def ray_step_seconds(run_dir: str) -> tuple[float, float]:
    """(median, mean) seconds per step; the mean includes checkpoints and epoch starts."""
    times = [r["time"] for r in read_metrics(run_dir)]
    gaps = np.diff(times)[5:]   # the first steps pay for the data pipeline's start
    return float(np.median(gaps)), float(np.mean(gaps))


def plain_step_seconds(data_dir: str, model_config, args) -> float:
    """The trainer's step (refill, forward, ACT loss, backward, both optimisers) in one process."""
    columns = SplitFiles(storage.join(data_dir, "train")).read_columns(["inputs", "labels", "puzzle_identifier"])
    examples = to_examples(columns)
    torch.manual_seed(0)
    model = TRM(model_config, verbose=False)
    optimizers = build_optimizers(model)
    carry = model.empty_carry(args.batch)
    cursor, times = 0, []
    for step in range(1, args.steps + 1):
        began = time.perf_counter()
        need = int(carry.halted.sum())
        index = torch.arange(cursor, cursor + need) % len(examples["inputs"])
        cursor += need
        carry = refill(carry, {k: v[index] for k, v in examples.items()})
        carry, out = model(carry)
        loss, metrics = act_loss(out, carry, model_config)
        loss.backward()
        set_lr(optimizers, step, warmup_steps=10, total_steps=args.steps)
        for optimizer in optimizers:
            optimizer.step()
            optimizer.zero_grad()
        float(metrics["count"])   # the trainer reads its metrics every step too
        times.append(time.perf_counter() - began)
    return statistics.median(times[5:]), statistics.mean(times[5:])


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--hidden", type=int, default=64)
    parser.add_argument("--batch", type=int, default=32)
    args = parser.parse_args()
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    os.environ.setdefault("TQDM_DISABLE", "1")
    os.environ.setdefault("RAY_TRAIN_ENABLE_PREEMPTION_WATCHER", "0")
    os.environ.setdefault("RAY_DATA_DISABLE_PROGRESS_BARS", "1")
    ray.init(num_cpus=4, logging_level=logging.WARNING)
    work = tempfile.mkdtemp(prefix="bench-train-")
    data_dir = os.path.join(work, "data")
    run_stage(config("stage=augment", "task=sudoku", "preset=none", f"data_dir={data_dir}", "task.num_train=200",
                     "task.num_test=20", "task.num_aug=1"))

    from pipeline import dataset_format as fmt
    from pipeline.checkpoints import model_config
    from omegaconf import OmegaConf
    cfg = config("stage=train", f"data_dir={data_dir}", *model_overrides(args))
    trm_config = model_config(OmegaConf.to_container(cfg.model), fmt.read_manifest(data_dir))

    torch.set_num_threads(1)
    plain = plain_step_seconds(data_dir, trm_config, args)
    results = {"plain (1 process, 1 thread)": plain}
    for name, workers, cpus, extra in (("ray train, 1 worker(s)", 1, 1, []), ("ray train, 2 worker(s)", 2, 1, []),
                                       ("ray train, 1 worker, 2 threads", 1, 2, []),
                                       ("ray train, 1 worker, streamed", 1, 1, ["train.in_memory_mb=0"])):
        run_dir = os.path.join(work, f"run{len(results)}")
        run_stage(config("stage=train", f"data_dir={data_dir}", f"run_dir={run_dir}", *model_overrides(args),
                         f"train.num_workers={workers}", f"train.cpus_per_worker={cpus}", *extra))
        results[name] = ray_step_seconds(run_dir)
    print(f"\n# python bench/bench_train.py --steps {args.steps} --hidden {args.hidden} --batch {args.batch} "
          f"(commit {commit_label()}, {os.cpu_count()} CPUs)")
    print(f"TRM hidden {args.hidden}, batch {args.batch} (global), seq_len {trm_config.seq_len}, "
          f"{args.steps} steps; CPU, shared machine (noisy)")
    print(f"{'loop':<30} {'median ms/step':>15} {'mean ms/step':>13} {'samples/s (mean)':>17}")
    for name, (median, mean) in results.items():
        print(f"{name:<30} {1000 * median:>15.1f} {1000 * mean:>13.1f} {args.batch / mean:>17.0f}")
    ray1, ray2 = results["ray train, 1 worker(s)"], results["ray train, 2 worker(s)"]
    for i, kind in enumerate(("median", "mean")):
        print(f"Ray Train overhead per step, 1 worker vs plain ({kind}): {100 * (ray1[i] / plain[i] - 1):+.1f} % "
              f"(target < 10 %)")
    print(f"2 workers vs 1: {ray1[1] / ray2[1]:.2f}x samples/s")
    print(f"1 worker, 2 threads vs 1 thread: {ray1[1] / results['ray train, 1 worker, 2 threads'][1]:.2f}x samples/s")
    streamed = results["ray train, 1 worker, streamed"]
    print(f"reading windows from the files instead of holding the split: {100 * (streamed[1] / ray1[1] - 1):+.1f} % "
          f"per step (mean)")
    ray.shutdown()


if __name__ == "__main__":
    sys.exit(main())
