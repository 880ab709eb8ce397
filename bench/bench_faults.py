"""The heavy fault and scale cases of issue #31, each as the user's command in a subprocess, measured from /proc.

    python bench/bench_faults.py voting [--versions 100 1000 4000]   # re-scoring at ARC-AGI-1 size
    python bench/bench_faults.py flaky [--shares 0.1 0.3 0.5]         # the driver's S3 calls through a flaky store

voting: `stage=eval_arc eval_arc.predictions=<folder>` on a synthetic predictions folder of ARC-AGI-1's size
(400 tasks, 419 test inputs, each answered under V versions; answers up to 30x30 = 900 cells): 10 % of the
versions give the true grid, 5 % one wrong grid, the rest distinct random grids (the most distinct answers
to rank, the worst case for voting). Wall time and peak memory (RSS and PSS summed over the command's
process tree, Ray's workers included) per V: bounded as V grows when both grow about linearly in the rows.

flaky: the driver's object-store calls of a run (write a JSON file, read it back, list the folder, upload a
3 MiB checkpoint with meta.json last) through tests/fault_proxy.py failing a share of requests (503 SlowDown,
500, connection reset in turn), with the clients' default retries (botocore legacy mode, 5 attempts; s3fs's
own for dropped connections): rounds completed, requests failed, seconds per round against a share of 0.

Timings from a shared 2-core machine are only comparable within one run of this script.
"""
import argparse
import json
import os
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="case", required=True)
    voting = sub.add_parser("voting")
    voting.add_argument("--versions", type=int, nargs="+", default=[100, 1000, 4000])
    flaky = sub.add_parser("flaky")
    flaky.add_argument("--shares", type=float, nargs="+", default=[0.1, 0.3, 0.5])
    flaky.add_argument("--rounds", type=int, default=20)
    args = parser.parse_args()
    if args.case == "voting":
        bench_voting(args.versions)
    else:
        bench_flaky(args.shares, args.rounds)


if __name__ == "__main__":
    main()
