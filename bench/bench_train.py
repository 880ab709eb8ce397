"""Training throughput on CPU: Ray Train with 1 and 2 workers and 1 or 2 threads, against a plain torch loop;
with --compile, the eager against the compiled training step.

    python bench/bench_train.py [--steps 60] [--hidden 64] [--batch 32]
    python bench/bench_train.py --compile [--sizes demo sudoku_mlp arc] [--threads 1 2] [--modes default]

--compile: in one process, per size and thread count, the eager step and the compiled step of each torch.compile
mode (`trm.compile.SupervisionStep`: refill from a host copy of halted, forward + ACT loss, backward, both
optimisers, EMA), timed in interleaved rounds on the same model weights and data stream, with the compile time,
the operations per step that would make a GPU host wait (item(), nonzero, unique) and the shares of the step's
CPU time in matrix multiplies and in attention kernels (both counted by the profiler: the matrix multiplies
are the same BLAS calls compiled or not, so their share bounds what compiling can gain). Ratios are what this
shared machine can give; absolute times are not.

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
from pipeline.train.metrics_log import read_metrics
from pipeline.run import run_stage
from pipeline.data.split_reader import SplitFiles
from record import commit_label
from pipeline.data.examples import to_examples
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


# Sizes for --compile: the demo preset (6x6 Sudoku; demo_prefix4: with the 4 prefix positions it had before
# issue 28), the paper's Sudoku-Extreme MLP and ARC attention models.
DEMO = dict(seq_len=36, vocab_size=8, num_puzzle_identifiers=1, hidden_size=64, num_heads=2, H_cycles=2, L_cycles=2,
            halt_max_steps=4, puzzle_emb_len=1, halt_exploration_prob=0.5)
COMPILE_SIZES = {
    "demo": (DEMO, 64),
    "demo_prefix4": ({**DEMO, "puzzle_emb_len": 4}, 64),
    "sudoku_mlp": (dict(seq_len=81, vocab_size=11, num_puzzle_identifiers=1000, mlp_t=True, pos_encodings="none"), 8),
    "arc": (dict(seq_len=900, vocab_size=12, num_puzzle_identifiers=1000, L_cycles=4), 1),
}
SYNCING_OPS = ("aten::_local_scalar_dense", "aten::nonzero", "aten::_unique2", "aten::unique_dim",
               "aten::masked_select")
# Where a step's CPU time goes: the BLAS matrix multiplies (MKL/oneDNN, called by eager and compiled code
# alike) and the attention kernels; what is left is the elementwise and reduction work compiling can fuse.
MATMUL_OPS = ("aten::mm", "aten::addmm", "aten::bmm", "aten::baddbmm")


def profile_step(run, steps: int = 3) -> dict:
    """Of `steps` steps, profiled: operations per step that make a GPU host wait for the device (they need a
    value or a shape of a result: item()/int() on a tensor, nonzero (boolean indexing), unique,
    masked_select), and the shares of the operators' own CPU time spent in matrix multiplies and in
    attention."""
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as profile:
        for _ in range(steps):
            run.step()
    events = profile.key_averages()
    total = sum(e.self_cpu_time_total for e in events) or 1
    return {"syncs": sum(e.count for e in events if e.key in SYNCING_OPS) // steps,
            "matmul": sum(e.self_cpu_time_total for e in events if e.key in MATMUL_OPS) / total,
            "attention": sum(e.self_cpu_time_total for e in events if "scaled_dot_product" in e.key) / total}


class Trainer:
    """The training loop's step on synthetic data: halted slots take fresh random rows (a fixed stream)."""

    def __init__(self, config, batch: int, compiled: bool, mode: str = "default", device: str = "cpu"):
        from trm import EMA
        from trm.compile import SupervisionStep
        torch.manual_seed(0)
        self.config, self.model = config, TRM(config, verbose=False).to(device)
        self.optimizers = build_optimizers(self.model, lr=1e-4)
        self.ema = EMA(self.model)
        self.step_fn = SupervisionStep(self.model, loss=True, compiled=compiled, mode=mode)
        self.carry = self.model.empty_carry(batch)
        self.halted = self.carry.halted.clone()
        self.generator = torch.Generator().manual_seed(1)
        self.steps = 0

    def step(self) -> None:
        from trm.device import HostCopy
        c, k = self.config, int(self.halted.sum())
        rows = dict(inputs=torch.randint(1, c.vocab_size, (k, c.seq_len), generator=self.generator),
                    labels=torch.randint(1, c.vocab_size, (k, c.seq_len), generator=self.generator),
                    puzzle_identifiers=torch.randint(0, c.num_puzzle_identifiers, (k,), generator=self.generator))
        self.carry = refill(self.carry, rows, halted=self.halted)
        self.carry, _, loss, metrics = self.step_fn(self.carry)
        halted = HostCopy(self.carry.halted)
        loss.backward()
        self.steps += 1
        set_lr(self.optimizers, self.steps, warmup_steps=10, total_steps=10**6)
        for optimizer in self.optimizers:
            optimizer.step()
            optimizer.zero_grad()
        self.ema.update(self.model)
        HostCopy(torch.stack(list(metrics.values())))
        self.halted = halted.get()


def compare_compile(args) -> None:
    from trm import TRMConfig
    print(f"\n# python bench/bench_train.py --compile --sizes {' '.join(args.sizes)} --threads "
          f"{' '.join(map(str, args.threads))} --modes {' '.join(args.modes)} --rounds {args.rounds} --steps {args.steps}"
          f"{'' if args.paper_batch is None else f' --paper-batch {args.paper_batch}'} "
          f"(commit {commit_label()}, {os.cpu_count()} CPUs, torch {torch.__version__})")
    print("CPU, machine shared with other jobs: only the ratios (interleaved rounds, one process) are meaningful")
    print(f"{'size':<11} {'batch':>5} {'thr':>3} {'step':<30} {'compile s':>9} {'median ms/step':>15} "
          f"{'vs eager':>8} {'syncs/step':>10} {'matmul %':>8} {'attn %':>6}")
    for size in args.sizes:
        fields, batch = COMPILE_SIZES[size]
        batch = batch if size.startswith("demo") or args.paper_batch is None else args.paper_batch
        config = TRMConfig(**fields)
        for threads in args.threads:
            torch.set_num_threads(threads)
            runs = {"eager": Trainer(config, batch, compiled=False)}
            runs.update({f"compiled ({mode})": Trainer(config, batch, compiled=True, mode=mode) for mode in args.modes})
            compile_s, profiles = {}, {}
            for name, run in runs.items():
                began = time.perf_counter()
                run.step()                          # warm-up: compiles the compiled ones
                compile_s[name] = time.perf_counter() - began if name != "eager" else None
                profiles[name] = profile_step(run)
            times = {name: [] for name in runs}
            for _ in range(args.rounds):             # interleaved: the machine's load hits every variant alike
                for name, run in runs.items():
                    began = time.perf_counter()
                    for _ in range(args.steps):
                        run.step()
                    times[name].append((time.perf_counter() - began) / args.steps)
            eager = statistics.median(times["eager"])
            for name in runs:
                median = statistics.median(times[name])
                first = "-" if compile_s[name] is None else f"{compile_s[name]:.1f}"
                print(f"{size:<11} {batch:>5} {threads:>3} {name:<30} {first:>9} {1000 * median:>15.1f} "
                      f"{eager / median:>7.2f}x {profiles[name]['syncs']:>10} {100 * profiles[name]['matmul']:>8.0f} "
                      f"{100 * profiles[name]['attention']:>6.0f}", flush=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=60, help="steps per run (--compile: per round and variant)")
    parser.add_argument("--hidden", type=int, default=64)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--compile", action="store_true", help="eager vs compiled training step (see above)")
    parser.add_argument("--sizes", nargs="+", default=list(COMPILE_SIZES), choices=list(COMPILE_SIZES))
    parser.add_argument("--threads", nargs="+", type=int, default=[1, 2])
    parser.add_argument("--modes", nargs="+", default=["default"], help="torch.compile modes to try")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--paper-batch", type=int, default=None, help="batch of the sudoku_mlp and arc sizes "
                        "(default 8 and 1: a CPU step of a few seconds)")
    args = parser.parse_args()
    if args.compile:
        return compare_compile(args)
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    os.environ.setdefault("TQDM_DISABLE", "1")
    os.environ.setdefault("RAY_TRAIN_ENABLE_PREEMPTION_WATCHER", "0")
    os.environ.setdefault("RAY_DATA_DISABLE_PROGRESS_BARS", "1")
    ray.init(num_cpus=4, logging_level=logging.WARNING)
    work = tempfile.mkdtemp(prefix="bench-train-")
    data_dir = os.path.join(work, "data")
    run_stage(config("stage=augment", "task=sudoku", "preset=none", f"data_dir={data_dir}", "task.num_train=200",
                     "task.num_test=20", "task.num_aug=1"))

    from pipeline.data import dataset_format as fmt
    from pipeline.checkpoints.checkpoint import model_config
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
