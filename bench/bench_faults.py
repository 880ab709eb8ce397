"""The heavy fault and scale cases of issue #31, each as the user's command in a subprocess, measured from /proc.

    python bench/bench_faults.py voting [--versions 100 1000 4000]   # re-scoring at ARC-AGI-1 size
    python bench/bench_faults.py flaky [--shares 0.1 0.3 0.5]         # the driver's S3 calls through a flaky store
    python bench/bench_faults.py lost-node [--steps 60]               # a worker node removed mid-run
    python bench/bench_faults.py flaky-stages [--shares 0.05 0.1 0.2]  # whole stages through a flaky store

voting: `stage=eval_arc eval_arc.predictions=<folder>` on a synthetic predictions folder of ARC-AGI-1's size
(400 tasks, 419 test inputs, each answered under V versions; answers up to 30x30 = 900 cells): 10 % of the
versions give the true grid, 5 % one wrong grid, the rest distinct random grids (the most distinct answers
to rank, the worst case for voting). Wall time and peak memory (RSS and PSS summed over the command's
process tree, Ray's workers included) per V: bounded as V grows when both grow about linearly in the rows.

flaky: the driver's object-store calls of a run (write a JSON file, read it back, list the folder, upload a
3 MiB checkpoint with meta.json last) through tests/fault_proxy.py failing a share of requests (503 SlowDown,
500, connection reset in turn), with the clients' default retries (botocore legacy mode, 5 attempts; s3fs's
own for dropped connections): rounds completed, requests failed, seconds per round against a share of 0.

flaky-stages: the user's commands, each in a subprocess with its own local Ray, every S3 client of it (s3fs in
the driver, pyarrow in Ray Data's reads and writes and in Ray Train's checkpoint uploads) sent through the
faulty proxy: stage=augment (a 4x4 Sudoku dataset), stage=train (20 steps, 2 workers, checkpoints every 5),
stage=eval, each on data and run_dir in the loopback S3 server. Per share of failed requests: each stage's
exit code and last line, requests and failures seen, and whether training logged every step once.

lost-node: a local 3-node Ray cluster (`ray.cluster_utils.Cluster`: a head without CPUs, two 1-CPU worker
nodes), data and run_dir on the loopback S3 server, `stage=train` with 2 workers (STRICT_SPREAD: one per
worker node) as the user's command in a subprocess joining that cluster. Three runs of the same training:
uninterrupted; a worker node removed (its raylet and objects gone) once the first checkpoint is complete,
then a replacement node added; the same removal with no replacement (`train.node_wait_s`). Reported: steps
logged once, final weights equal to the uninterrupted run's, seconds from the loss to the first step
after it, and the no-replacement run's last line and time to stop.

Timings from a shared 2-core machine are only comparable within one run of this script.
"""
import argparse
import json
import os
import posixpath
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
from proc_memory import PeakMemory  # noqa: E402
from record import commit_label  # noqa: E402

TASKS, TEST_INPUTS, MAX_SIDE = 400, 419, 30
ROWS_PER_FILE = 200_000


def _environment() -> dict:
    return {**os.environ, "RAY_AUTH_MODE": "disabled", "RAY_DATA_DISABLE_PROGRESS_BARS": "1",
            "RAY_USAGE_STATS_ENABLED": "0", "TQDM_DISABLE": "1"}


def run_measured(command: list) -> tuple[float, PeakMemory, str]:
    """(wall seconds, peak-memory sampler, stderr tail) of a command run to its end."""
    start = time.perf_counter()
    child = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=ROOT,
                             env=_environment())
    sampler = PeakMemory(child.pid)
    sampler.start()
    output, _ = child.communicate()
    sampler.stop()
    if child.returncode:
        raise RuntimeError(f"{' '.join(command)} exited {child.returncode}:\n{output[-3000:]}")
    return time.perf_counter() - start, sampler, output


# ---------------------------------------------------------------------------------------------------
# Voting at full scale

def synthetic_arc_dataset(data_dir: Path, rng) -> list:
    """The two files stage=eval_arc reads when re-scoring: dataset.json and test_puzzles.json (true outputs);
    returns [(task_id, example, true grid)] for the 419 test inputs."""
    data_dir.mkdir(parents=True)
    inputs_per_task = np.ones(TASKS, dtype=int)
    inputs_per_task[rng.choice(TASKS, TEST_INPUTS - TASKS, replace=False)] = 2
    tasks, inputs = {}, []
    for t, count in enumerate(inputs_per_task):
        task_id = f"{t:08x}"
        pairs = []
        for example in range(count):
            grid = rng.integers(0, 10, tuple(rng.integers(1, MAX_SIDE + 1, 2)), dtype=np.uint8)
            pairs.append({"input": [[0]], "output": grid.tolist()})
            inputs.append((task_id, example, grid))
        tasks[task_id] = {"train": [], "test": pairs}
    (data_dir / "test_puzzles.json").write_text(json.dumps(tasks))
    (data_dir / "dataset.json").write_text(json.dumps({"task": "arc", "test_puzzles_file": "test_puzzles.json",
                                                        "seq_len": MAX_SIDE * MAX_SIDE, "vocab_size": 12,
                                                        "num_puzzle_identifiers": 1}))
    return inputs


def synthetic_predictions(folder: Path, inputs: list, versions: int, rng) -> int:
    """V predictions per test input in Parquet files of ROWS_PER_FILE rows, shuffled; returns the row count."""
    from pipeline.tasks.arc import voting as arc_voting
    folder.mkdir(parents=True)
    n_correct, n_decoy = round(0.10 * versions), round(0.05 * versions)
    n_random = versions - n_correct - n_decoy
    task_ids, examples, hashes, heights, widths, answers, q_halt = [], [], [], [], [], [], []
    for task_id, example, true in inputs:
        decoy = true.copy()
        decoy[0, 0] = (decoy[0, 0] + 1) % 10
        shapes = rng.integers(1, MAX_SIDE + 1, (n_random, 2))
        sizes = shapes.prod(axis=1)
        cells = rng.integers(0, 10, int(sizes.sum()), dtype=np.uint8)
        offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int32)
        random_answers = pa.BinaryArray.from_buffers(pa.binary(), n_random, [None, pa.py_buffer(offsets),
                                                                             pa.py_buffer(cells)])
        task_ids.append(np.full(versions, task_id, dtype=object))
        examples.append(np.full(versions, example, dtype=np.int16))
        # distinct random grids get distinct hashes (a collision among random 30x30 grids is as rare as sha256's)
        hashes.append(np.concatenate([[arc_voting.grid_hash(true)] * n_correct, [arc_voting.grid_hash(decoy)] * n_decoy,
                                      np.char.mod("%032x", rng.integers(0, 2**62, n_random)).astype(object)]))
        heights.append(np.concatenate([[true.shape[0]] * (n_correct + n_decoy), shapes[:, 0]]).astype(np.int8))
        widths.append(np.concatenate([[true.shape[1]] * (n_correct + n_decoy), shapes[:, 1]]).astype(np.int8))
        answers.append(pa.concat_arrays([pa.array([true.tobytes()] * n_correct + [decoy.tobytes()] * n_decoy,
                                                  pa.binary()), random_answers]))
        q_halt.append(rng.normal(-1, 1, versions).astype(np.float32))
    answer = pa.concat_arrays(answers)
    order = rng.permutation(len(answer))          # arrival order must not matter
    table = pa.table({"task_id": np.concatenate(task_ids), "example_index": np.concatenate(examples),
                      "answer_hash": np.concatenate(hashes), "height": np.concatenate(heights),
                      "width": np.concatenate(widths), "answer": answer, "q_halt": np.concatenate(q_halt)}).take(order)
    for i, start in enumerate(range(0, table.num_rows, ROWS_PER_FILE)):
        pq.write_table(table.slice(start, ROWS_PER_FILE), folder / f"part-{i:04d}.parquet", compression="zstd")
    return table.num_rows


def bench_voting(versions_list: list) -> None:
    print(f"# python bench/bench_faults.py voting --versions {' '.join(map(str, versions_list))}   (commit "
          f"{commit_label()}, {os.cpu_count()} CPUs, a shared machine: timings comparable within this run only)")
    print(f"{TASKS} tasks, {TEST_INPUTS} test inputs, answers up to {MAX_SIDE}x{MAX_SIDE}; 10 % true, 5 % one decoy, "
          f"85 % distinct random grids per input")
    print(f"{'versions':>9} {'predictions':>12} {'Parquet MB':>11} {'wall s':>8} {'us/prediction':>14} "
          f"{'peak RSS GB':>12} {'peak PSS GB':>12}  pass@1 pass@2")
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        inputs = synthetic_arc_dataset(Path(tmp) / "data", rng)
        for versions in versions_list:
            folder = Path(tmp) / f"predictions_{versions}"
            rows = synthetic_predictions(folder, inputs, versions, rng)
            megabytes = sum(f.stat().st_size for f in folder.iterdir()) / 2**20
            command = [sys.executable, "-m", "pipeline.run", "stage=eval_arc", "task=arc", "preset=none",
                       f"data_dir={tmp}/data", f"run_dir={tmp}/run_{versions}", f"eval_arc.predictions={folder}",
                       "eval_arc.pass_ks=[1,2]"]
            seconds, memory, _ = run_measured(command)
            metrics = json.loads((Path(tmp) / f"run_{versions}" / "eval_arc" / "metrics.json").read_text())
            assert metrics["predictions"] == rows and metrics["test_inputs"] == TEST_INPUTS, metrics
            print(f"{versions:>9,} {rows:>12,} {megabytes:>11.0f} {seconds:>8.1f} {1e6 * seconds / rows:>14.1f} "
                  f"{memory.peak_rss / 2**30:>12.2f} {memory.peak_pss / 2**30:>12.2f}  {metrics['pass@1']:.3f}  "
                  f"{metrics['pass@2']:.3f}", flush=True)
            for leftover in folder.iterdir():
                leftover.unlink()


# ---------------------------------------------------------------------------------------------------
# A flaky object store

def bench_flaky(shares: list, rounds: int) -> None:
    import tests.conftest  # noqa: F401  (starts the loopback S3 server, sets the test credentials)
    import boto3
    import s3fs

    from pipeline.checkpoints import checkpoint as ckpt
    from pipeline import storage
    from tests.fault_proxy import FaultProxy
    print(f"# python bench/bench_faults.py flaky --shares {' '.join(map(str, shares))} --rounds {rounds}   (commit "
          f"{commit_label()}, {os.cpu_count()} CPUs, a shared machine: timings comparable within this run only)")
    print(f"{'share failed':>12} {'rounds ok':>10} {'requests':>9} {'failed 503/500/reset':>21} {'s/round':>8}")
    moto = os.environ["AWS_ENDPOINT_URL"]
    with tempfile.TemporaryDirectory() as local:
        (Path(local) / ckpt.STATE).write_bytes(os.urandom(3 * 2**20))
        (Path(local) / ckpt.META).write_text("{}")
        for share in [0.0, *shares]:
            bucket = f"flaky-{int(share * 100):03d}"
            boto3.client("s3", endpoint_url=moto).create_bucket(Bucket=bucket)
            with FaultProxy(moto, share=share, seed=1) as proxy:
                os.environ["AWS_ENDPOINT_URL"] = proxy.url
                s3fs.S3FileSystem.clear_instance_cache()
                ok, start = 0, time.perf_counter()
                for i in range(rounds):
                    try:
                        storage.write_json_atomic(f"s3://{bucket}/run/m{i}.json", {"i": i})
                        assert storage.read_json(f"s3://{bucket}/run/m{i}.json") == {"i": i}
                        storage.list_files(f"s3://{bucket}/run")
                        ckpt.upload_files(local, [ckpt.STATE, ckpt.META], f"s3://{bucket}/run/{ckpt.checkpoint_name(i)}")
                        ok += 1
                    except Exception as err:    # what a stage would see: counted, and shown
                        print(f"  round {i}: {type(err).__name__}: {err}")
                seconds = (time.perf_counter() - start) / rounds
                os.environ["AWS_ENDPOINT_URL"] = moto
            st = proxy.stats
            print(f"{share:>12.0%} {ok:>6} / {rounds:<3} {st['requests']:>9} {st['503']:>9}/{st['500']}/{st['reset']:<9} "
                  f"{seconds:>8.2f}", flush=True)


# A lost node

def _train_command(address: str, data_dir: str, run_dir: str, steps: int, every: int, wait_s: float) -> list:
    return [sys.executable, "-m", "pipeline.run", "stage=train", "task=sudoku", f"data_dir={data_dir}",
            f"run_dir={run_dir}", f"ray.address={address}", "model.hidden_size=32", "model.num_heads=2",
            "model.L_layers=1", "model.H_cycles=2", "model.L_cycles=2", "model.halt_max_steps=4",
            "train.num_workers=2", "train.cpus_per_worker=1", "train.placement_strategy=STRICT_SPREAD",
            "train.global_batch_size=32", f"train.steps={steps}", f"train.checkpoint_every={every}",
            "train.eval_every=0", "train.compile=false", "train.max_failures=2", f"train.node_wait_s={wait_s}"]


def _wait_for(predicate, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out after {timeout_s:.0f} s waiting for {what}")
        time.sleep(0.2)


def bench_lost_node(steps: int, every: int, wait_s: float, replace_after_s: float) -> None:
    import tests.conftest  # noqa: F401  (starts the loopback S3 server, sets the test credentials)
    import boto3
    import torch
    from ray.cluster_utils import Cluster

    from pipeline.checkpoints import checkpoint as ckpt
    from pipeline.train.metrics_log import read_metrics
    print(f"# python bench/bench_faults.py lost-node --steps {steps} --every {every} --wait {wait_s:g} "
          f"--replace-after {replace_after_s:g}   (commit {commit_label()}, {os.cpu_count()} CPUs, a shared machine: "
          f"timings comparable within this run only)")
    bucket = "lost-node"
    boto3.client("s3", endpoint_url=os.environ["AWS_ENDPOINT_URL"]).create_bucket(Bucket=bucket)
    data_dir = f"s3://{bucket}/data"
    import ray
    env = _environment()
    with socket.socket() as free:       # the dashboard (Ray Train needs its State API) on a port no other Ray holds
        free.bind(("127.0.0.1", 0))
        port = free.getsockname()[1]
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0, "dashboard_port": port})
    workers = [cluster.add_node(num_cpus=1) for _ in range(2)]
    ray.init(address=cluster.address, logging_level="WARNING")    # this process only watches: it asks for nothing
    cluster.wait_for_nodes()
    try:
        built = subprocess.run([sys.executable, "-m", "pipeline.run", "stage=augment", "task=sudoku", "task.size=4",
                                "task.num_train=64", "task.num_test=8", "task.num_val=0", "task.num_aug=4", "task.max_blanks=null",
                                f"data_dir={data_dir}", f"ray.address={cluster.address}"],
                               cwd=ROOT, env=env, capture_output=True, text=True)
        if built.returncode:
            raise RuntimeError(f"stage=augment exited {built.returncode}:\n{(built.stdout + built.stderr)[-3000:]}")
        runs = {}
        for case in ("uninterrupted", "replaced", "not replaced"):
            run_dir = f"s3://{bucket}/{case.replace(' ', '_')}"
            first = f"{run_dir}/{ckpt.checkpoint_name(every)}"
            child = subprocess.Popen(_train_command(cluster.address, data_dir, run_dir, steps, every, wait_s),
                                     cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            lost_at = stopped = None
            if case != "uninterrupted":
                _wait_for(lambda: ckpt.is_complete(first), 600, f"{first}")
                lost_at = time.time()
                cluster.remove_node(workers.pop())            # the raylet, its worker process and objects go
                if case == "replaced":
                    time.sleep(replace_after_s)
                    workers.append(cluster.add_node(num_cpus=1))
            output, _ = child.communicate()
            stopped = time.time()
            if case == "not replaced":
                workers.append(cluster.add_node(num_cpus=1))   # the cluster back as it was
            lines = [line for line in output.strip().splitlines() if line.strip()]
            records = read_metrics(run_dir)
            logged = [r["step"] for r in records if "train/lm_loss" in r]
            after = [r["time"] for r in records if lost_at and r["time"] > lost_at]
            newest = ckpt.latest_checkpoint(run_dir)
            runs[case] = dict(code=child.returncode, last=lines[-1] if lines else "", logged=logged,
                              newest=posixpath.basename(newest) if newest else
                              "none of " + ", ".join(posixpath.basename(p) for _, p in ckpt.folders(run_dir, "checkpoint")),
                              lost_at=lost_at, first_after=after[0] if after else None, stopped=stopped,
                              weights=(ckpt.load_checkpoint(ckpt.latest_checkpoint(run_dir))[0]["model"]
                                       if child.returncode == 0 else None))
        base = runs["uninterrupted"]["weights"]
        print(f"{'run':>14} {'exit':>4} {'steps logged once':>17} {'same weights':>12} {'loss -> next step s':>19} "
              f"{'loss -> exit s':>14}")
        for case, r in runs.items():
            once = r["logged"] == list(range(1, len(r["logged"]) + 1))
            same = "-" if r["weights"] is None else str(all(torch.equal(r["weights"][k], v) for k, v in base.items()))
            to_step = f"{r['first_after'] - r['lost_at']:.1f}" if r["first_after"] else "-"
            to_exit = f"{r['stopped'] - r['lost_at']:.1f}" if r["lost_at"] else "-"
            steps_logged = f"{once} ({len(r['logged'])})"
            print(f"{case:>14} {r['code']:>4} {steps_logged:>17} {same:>12} {to_step:>19} {to_exit:>14}")
        print(f"not replaced, its last line: {runs['not replaced']['last']}")
        print("newest complete checkpoint after each run: " + ", ".join(f"{c}: {r['newest']}" for c, r in runs.items()))
    finally:
        ray.shutdown()
        cluster.shutdown()


# Whole stages through a flaky object store

def bench_flaky_stages(shares: list) -> None:
    import tests.conftest  # noqa: F401  (starts the loopback S3 server, sets the test credentials)
    import boto3

    from pipeline.train.metrics_log import read_metrics
    from tests.fault_proxy import FaultProxy
    print(f"# python bench/bench_faults.py flaky-stages --shares {' '.join(map(str, shares))}   (commit "
          f"{commit_label()}, {os.cpu_count()} CPUs, a shared machine: timings comparable within this run only)")
    print(f"{'share failed':>12} {'stage':>8} {'exit':>4} {'s':>6} {'requests':>9} {'failed 503/500/reset':>21}  last line")
    moto = os.environ["AWS_ENDPOINT_URL"]
    tiny = ["task=sudoku", "task.size=4", "task.num_train=64", "task.num_test=16", "task.num_val=0", "task.num_aug=4",
            "task.max_blanks=null", "model.hidden_size=32", "model.num_heads=2", "model.L_layers=1",
            "model.H_cycles=2", "model.L_cycles=2", "model.halt_max_steps=4", "train.num_workers=2",
            "train.global_batch_size=32", "train.steps=20", "train.checkpoint_every=5", "train.eval_every=0",
            "train.compile=false", "eval.compile=false", "eval.render=0", "report.enabled=false", "ray.num_cpus=4"]
    for share in [0.0, *shares]:
        bucket = f"flaky-stages-{int(share * 100):03d}"
        boto3.client("s3", endpoint_url=moto).create_bucket(Bucket=bucket)
        paths = [f"data_dir=s3://{bucket}/data", f"run_dir=s3://{bucket}/run"]
        for stage in ("augment", "train", "eval"):
            with FaultProxy(moto, share=share, seed=1) as proxy:
                env = {**_environment(), "AWS_ENDPOINT_URL": proxy.url}
                start = time.perf_counter()
                done = subprocess.run([sys.executable, "-m", "pipeline.run", f"stage={stage}", *paths, *tiny],
                                      cwd=ROOT, env=env, capture_output=True, text=True)
                seconds = time.perf_counter() - start
            st = proxy.stats
            # the command's own last line: its error, else its last line on stdout (Ray's core workers and
            # Hydra write to the same streams)
            errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
            lines = errors or [line for line in done.stdout.splitlines() if line.strip() and not line.startswith("[")]
            last = lines[-1][:200] if lines else ""
            print(f"{share:>12.0%} {stage:>8} {done.returncode:>4} {seconds:>6.0f} {st['requests']:>9} "
                  f"{st['503']:>9}/{st['500']}/{st['reset']:<9}  {last}", flush=True)
            if done.returncode:
                break
        else:
            logged = [r["step"] for r in read_metrics(f"s3://{bucket}/run") if "train/lm_loss" in r]
            once = "1..20, each once" if logged == list(range(1, 21)) else str(logged)
            print(f"{'':>12} training logged steps {once}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="case", required=True)
    voting = sub.add_parser("voting")
    voting.add_argument("--versions", type=int, nargs="+", default=[100, 1000, 4000])
    flaky = sub.add_parser("flaky")
    flaky.add_argument("--shares", type=float, nargs="+", default=[0.1, 0.3, 0.5])
    flaky.add_argument("--rounds", type=int, default=20)
    stages = sub.add_parser("flaky-stages")
    stages.add_argument("--shares", type=float, nargs="+", default=[0.05, 0.1, 0.2])
    lost = sub.add_parser("lost-node")
    lost.add_argument("--steps", type=int, default=60)
    lost.add_argument("--every", type=int, default=10, help="train.checkpoint_every")
    lost.add_argument("--wait", type=float, default=30, help="train.node_wait_s")
    lost.add_argument("--replace-after", type=float, default=5, help="seconds before the replacement node joins")
    args = parser.parse_args()
    if args.case == "voting":
        bench_voting(args.versions)
    elif args.case == "flaky":
        bench_flaky(args.shares, args.rounds)
    elif args.case == "flaky-stages":
        bench_flaky_stages(args.shares)
    else:
        bench_lost_node(args.steps, args.every, args.wait, args.replace_after)


if __name__ == "__main__":
    main()
