"""Full-size rehearsal of the ARC-AGI-1 preset on this machine, data and checkpoints on a loopback S3 server.

python bench/bench_scale.py [--steps 20] [--batch 2] [--fail-at 7] [--kill-after 10] [--eval-num-aug 0]
                            [--eval-steps 1 | --skip-eval] [--source ../shared/data/arc/arc-agi]

Runs the user's commands as subprocesses against a moto S3 server (its own process, so its memory is not
counted in theirs), in order:
1. `stage=augment preset=arc_agi_1` on the real ARC-AGI-1 files (num_aug 1000) into s3://scale/data;
2. `stage=train preset=arc_agi_1` (the 6.83M network and the 876k-row puzzle table) on 2 workers at a small
   global batch, checkpointing every 5 steps into s3://scale/run, with `train.fail_once_at_step` (one worker
   raises once: Ray Train restarts the group from the last checkpoint); once checkpoint `--kill-after` is
   complete the command's whole process tree is killed (SIGKILL, as a lost node);
3. the same train command again: it resumes from the newest checkpoint and finishes;
4. `stage=eval_arc` on all 400 evaluation tasks, versions aug_index <= `--eval-num-aug`, `eval.max_steps`
   supervision steps: one step of the full-size model costs 2.7 s per prediction on one CPU here (the 16
   steps of a real evaluation: 44 s), and a 2-CPU machine runs one inference actor (the reads need the other).
Per stage: wall time, peak RSS of the command's own process and of each training worker / inference actor,
time to the first training step; the checkpoint's size and its write / upload / resume-read times (from
metrics.jsonl); and whether every step 1..N was logged exactly once across the failure and the kill.
"""
import argparse
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

from pipeline import storage
from pipeline.ray_setup import free_port
from proc_memory import PeakMemory, _tree
from record import commit_label
from shared_data import SHARED_ARC

BUCKET = "scale"
ENV = {"AWS_ACCESS_KEY_ID": "bench-key-id", "AWS_SECRET_ACCESS_KEY": "bench-secret", "AWS_DEFAULT_REGION": "us-east-1"}


def start_s3() -> subprocess.Popen:
    """moto's S3 server on a loopback port, with the bucket made; sets AWS_ENDPOINT_URL for the commands."""
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    os.environ.update(ENV, AWS_ENDPOINT_URL=f"http://127.0.0.1:{port}")
    import boto3
    for _ in range(100):
        try:
            boto3.client("s3").create_bucket(Bucket=BUCKET)
            return server
        except Exception:       # not listening yet
            time.sleep(0.2)
    sys.exit("the moto S3 server did not start")


class Stage:
    """One command as a subprocess, its process tree sampled; `until(stop)` kills the tree when `stop()` is true."""

    def __init__(self, name: str, args: list, log_dir: Path):
        self.name, self.args = name, args
        self.log = log_dir / (name.replace(" ", "_").replace("(", "").replace(")", "") + ".log")

    def run(self, stop=None) -> dict:
        began, started_at = time.perf_counter(), time.time()
        with open(self.log, "w") as log:
            child = subprocess.Popen([sys.executable, "-m", "pipeline.run", *self.args], stdout=log,
                                     stderr=subprocess.STDOUT, start_new_session=True)
            sampler = PeakMemory(child.pid, interval=0.5, pss_every=1_000_000)
            sampler.start()
            killed = False
            while child.poll() is None:
                if stop is not None and stop():
                    for pid in _tree(child.pid):
                        try:
                            os.kill(pid, signal.SIGKILL)
                        except ProcessLookupError:
                            pass
                    killed = True
                    break
                time.sleep(1.0)
            child.wait()
            wall = time.perf_counter() - began
            sampler.stop()
        if child.returncode and not killed:
            sys.exit(f"{self.name} failed ({child.returncode}); its output: {self.log}\n"
                     f"{self.log.read_text()[-3000:]}")
        return {"stage": self.name, "wall_s": wall, "started": started_at, "killed": killed,
                "driver_gb": sampler.peak_by_pid.get(child.pid, 0) / 1e9, "tree_gb": sampler.peak_rss / 1e9,
                "largest": sorted(((peak / 1e9, sampler.names.get(pid, "?")) for pid, peak in sampler.peak_by_pid.items()
                                   if pid != child.pid), reverse=True)[:3]}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--batch", type=int, default=2, help="global batch (2 workers)")
    parser.add_argument("--fail-at", type=int, default=7, help="step at which one worker raises once")
    parser.add_argument("--kill-after", type=int, default=10, help="kill the command once this checkpoint is complete")
    parser.add_argument("--eval-num-aug", type=int, default=0)
    parser.add_argument("--eval-steps", type=int, default=1)
    parser.add_argument("--skip-eval", action="store_true", help="stop after training (the eval_arc part takes ~22 min)")
    parser.add_argument("--source", default=str(SHARED_ARC))
    parser.add_argument("--logs", default="/tmp/bench-scale", help="folder for each command's output")
    args = parser.parse_args()
    logs = Path(args.logs)
    logs.mkdir(parents=True, exist_ok=True)
    server = start_s3()
    data, run = f"s3://{BUCKET}/data", f"s3://{BUCKET}/run"
    common = ["preset=arc_agi_1", f"data_dir={data}", f"run_dir={run}"]
    train = ["stage=train", *common, "train.num_workers=2", f"train.global_batch_size={args.batch}",
             f"train.steps={args.steps}", "train.checkpoint_every=5", "train.eval_every=0",
             f"train.fail_once_at_step={args.fail_at}", "train.lr_warmup_steps=5"]
    fs = storage.filesystem(f"s3://{BUCKET}")[0]     # the endpoint from AWS_ENDPOINT_URL, as the stages
    folder = f"{BUCKET}/run/checkpoint_{args.kill_after:08d}"

    def checkpoint_done() -> bool:
        """Every file of the checkpoint is there (rank 0's meta.json lands before the other ranks' files)."""
        fs.invalidate_cache()
        return all(fs.exists(f"{folder}/{name}") for name in ("meta.json", "state.pt", "rank_0.pt", "rank_1.pt"))

    print(f"# python bench/bench_scale.py --steps {args.steps} --batch {args.batch} --fail-at {args.fail_at} "
          f"--kill-after {args.kill_after} " + ("--skip-eval" if args.skip_eval else
                                                f"--eval-num-aug {args.eval_num_aug} --eval-steps {args.eval_steps}") +
          f"   (commit {commit_label()}, {os.cpu_count()} CPUs)", flush=True)
    try:
        results = [Stage("augment", ["stage=augment", *common, f"task.source={args.source}"], logs).run()]
        results.append(Stage("train", train, logs).run(stop=checkpoint_done))
        results.append(Stage("train (resumed)", train, logs).run())
        if not args.skip_eval:
            results.append(Stage("eval_arc", ["stage=eval_arc", *common, f"eval_arc.num_aug={args.eval_num_aug}",
                                              f"eval.max_steps={args.eval_steps}", "eval.batch_size=8"], logs).run())
        report(results, fs, args)
    finally:
        server.kill()


def _metrics(fs) -> list:
    with fs.open(f"{BUCKET}/run/metrics.jsonl") as f:
        return [json.loads(line) for line in f.read().decode().splitlines() if line.strip()]


def report(results: list, fs, args) -> None:
    manifest = json.loads(fs.cat(f"{BUCKET}/data/dataset.json"))
    records = _metrics(fs)
    steps = [r["step"] for r in records]
    last = f"{BUCKET}/run/checkpoint_{args.steps:08d}"
    state_gb = fs.size(f"{last}/state.pt") / 1e9
    rank_mb = sum(fs.size(f"{last}/rank_{r}.pt") for r in range(2)) / 1e6
    train = results[1]
    first = records[0]["time"] - train["started"]
    print(f"ARC-AGI-1 x1000: train {manifest['splits']['train']['examples']:,} rows, "
          f"{manifest['num_puzzle_identifiers']:,} puzzle identifiers; data and checkpoints on loopback S3 (moto)")
    print(f"\n{'stage':<18} {'wall s':>8} {'driver GB':>10} {'sum GB':>8}  (peak RSS: the command's process, "
          f"the sum over its process tree)")
    for r in results:
        print(f"{r['stage']:<18} {r['wall_s']:>8.1f} {r['driver_gb']:>10.2f} {r['tree_gb']:>8.2f}"
              f"{'  killed once checkpoint ' + str(args.kill_after) + ' was complete' if r['killed'] else ''}")
        for gb, name in r["largest"]:
            print(f"{'':<20}{gb:6.2f} GB  {name[:80]}")
    resumed = re.findall(r"resumed from (\S+) at step (\d+)", (Path(args.logs) / "train_resumed.log").read_text())
    print(f"\nthe rerun resumed from: {resumed[0][0] if resumed else 'nothing'}")
    print(f"time to the first step: {first:.1f} s from the command's start")
    seconds = [r["train/samples_per_s"] for r in records if "train/samples_per_s" in r]
    print(f"samples/s per step (global batch {args.batch}): median {sorted(seconds)[len(seconds) // 2]:.3f}")
    for key in ("train/checkpoint_write_s", "train/checkpoint_report_s", "train/resume_load_s"):
        values = [r[key] for r in records if key in r]
        print(f"{key}: " + (", ".join(f"{v:.1f}" for v in values) if values else "-"))
    print(f"checkpoint: state.pt {state_gb:.2f} GB, rank files {rank_mb:.1f} MB")
    lost = sorted(set(range(1, args.steps + 1)) - set(steps))
    repeated = sorted({s for s in steps if steps.count(s) > 1})
    print(f"metrics.jsonl: steps {min(steps)}..{max(steps)}, {len(steps)} records; missing {lost or 'none'}, "
          f"repeated {repeated or 'none'}")
    if args.skip_eval:
        return
    name = f"steps{args.eval_steps}-aug{args.eval_num_aug}"     # pipeline.results.evaluations names eval_arc's folder
    metrics = json.loads(fs.cat(f"{BUCKET}/run/eval_arc/{name}/metrics.json"))
    passes = "  ".join(f"pass@{k} {metrics[f'pass@{k}']:.4f}" for k in (1, 2) if f"pass@{k}" in metrics)
    print(f"eval_arc: {metrics['tasks']} tasks, {metrics['test_inputs']} test inputs, {metrics['predictions']:,} "
          f"predictions (max_steps {args.eval_steps}); {passes} (20 steps of training: a rehearsal, not a result)")


if __name__ == "__main__":
    main()
