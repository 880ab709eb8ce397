"""stage=train on Ray Train: 2 workers, exact resume, a worker failure, S3, two nodes, bad input.

One uninterrupted 2-worker run (module fixture) is the reference the other runs must reproduce bitwise:
on CPU every op is deterministic for a fixed thread count and gloo's 2-rank sum is order-free, and the
data order, carries and RNG states are restored exactly, so no tolerance is needed.
"""
import json
import logging
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch

from pipeline import storage
from pipeline.checkpoints import checkpoint as ckpt
from pipeline.data import dataset_format as fmt
from pipeline.errors import PipelineError
from pipeline.run import run_stage
from pipeline.train.metrics_log import read_metrics
from tests import tiny
from tests.conftest import compose

SEQ_LEN, VOCAB, IDS = 16, 6, 9
STEPS = 12


def write_tiny_dataset(data_dir: str, num_train: int = 256, num_test: int = 64, num_val: int = 24) -> dict:
    """A valid 4x4 fill-in dataset (tokens 1..5, blank 1 -> label 5) written through the dataset contract."""
    import ray

    def rows(batch, seed):
        ids = batch["id"]
        rng = np.random.default_rng(seed + int(ids[0]))
        inputs = rng.integers(1, VOCAB, size=(len(ids), SEQ_LEN), dtype=np.uint8)
        return {"inputs": inputs, "labels": np.where(inputs == 1, 5, inputs).astype(np.uint8),
                "puzzle_identifier": (1 + ids % (IDS - 1)).astype(np.int32), "group_id": ids.astype(np.int64),
                "aug_index": np.zeros(len(ids), np.int32)}

    for split, n, seed in (("train", num_train, 0), ("test", num_test, 10_000), ("val", num_val, 20_000)):
        ds = ray.data.range(n, override_num_blocks=2).map_batches(rows, fn_kwargs={"seed": seed})
        fmt.write_split(ds, data_dir, split, groups_per_file=max(n, 1))
    return fmt.publish_manifest(compose("task=sudoku"), data_dir,
                                {"seq_len": SEQ_LEN, "vocab_size": VOCAB, "num_puzzle_identifiers": IDS})


def tiny_overrides() -> list[str]:
    return [*tiny.model_overrides(L_cycles=2, halt_max_steps=4), "train.num_workers=2", "train.global_batch_size=16",
            f"train.steps={STEPS}", "train.lr=3e-3", "train.lr_warmup_steps=2", "train.checkpoint_every=4",
            "train.eval_every=6", "train.eval_examples=32", "train.keep_last=2", "train.stream_window_rows=40"]


def train(data_dir, run_dir, *extra):
    return run_stage(compose("stage=train", f"data_dir={data_dir}", f"run_dir={run_dir}", *tiny_overrides(), *extra))


def final_state(run_dir: str) -> dict:
    return ckpt.Checkpoint.read(ckpt.latest_checkpoint(run_dir)).state()


def assert_same_state(a: dict, b: dict) -> None:
    assert a["step"] == b["step"]
    for part in ("model",):
        for key in a[part]:
            assert torch.equal(a[part][key], b[part][key]), f"{part}.{key} differs"
    for key in a["ema"]["shadow"]:
        assert torch.equal(a["ema"]["shadow"][key], b["ema"]["shadow"][key]), f"ema.{key} differs"
    for saved_a, saved_b in zip(a["optimizers"], b["optimizers"]):
        for slot, values in saved_a["state"].items():
            for key, value in values.items():
                assert torch.equal(torch.as_tensor(value), torch.as_tensor(saved_b["state"][slot][key]))


def logged_steps(run_dir: str) -> list[int]:
    return [r["step"] for r in read_metrics(run_dir)]


@pytest.fixture(scope="module")
def tiny_data(ray_local, tmp_path_factory):
    data_dir = str(tmp_path_factory.mktemp("tiny") / "data")
    write_tiny_dataset(data_dir)
    return data_dir


@pytest.fixture(scope="module")
def baseline(tiny_data, tmp_path_factory):
    run_dir = str(tmp_path_factory.mktemp("baseline") / "run")
    summary = train(tiny_data, run_dir)
    return run_dir, summary


@pytest.mark.parametrize("in_memory", [True, False], ids=["in_memory", "streamed"])
def test_example_stream_partitions_ranks_and_resumes_exactly(tiny_data, in_memory):
    from pipeline.data.sampling import GroupSampler
    from pipeline.data.split_reader import SplitFiles
    from pipeline.train.stream import ExampleStream
    split = SplitFiles(os.path.join(tiny_data, "train"))
    index = split.read_columns(["group_id", "aug_index"])
    sampler = GroupSampler(index["group_id"], index["aug_index"], seed=3)

    def rows(stream, n):
        taken = stream.take(n)
        return [tuple(row.tolist()) + (int(i),) for row, i in zip(taken["inputs"], taken["puzzle_identifiers"])]

    def stream(rank, world, **position):
        return ExampleStream(split, sampler, rank=rank, world=world, chunk=32, in_memory=in_memory,
                             window_rows=40, **position)

    streams = [stream(r, 2) for r in range(2)]
    epoch0 = [rows(s, 128) for s in streams]   # 256 rows, 2 ranks: exactly one epoch each
    assert len(set(epoch0[0]) | set(epoch0[1])) == len(set(epoch0[0])) + len(set(epoch0[1]))
    whole = stream(0, 1)
    assert sorted(epoch0[0] + epoch0[1]) == sorted(rows(whole, 256))
    ahead = rows(streams[1], 50)               # into epoch 1: a new shuffle of the same rows
    assert streams[1].epoch == 1 and streams[1].consumed == 50 and ahead != epoch0[1][:50]
    resumed = stream(1, 2, epoch=1, consumed=20)
    assert rows(resumed, 30) == ahead[20:]
    for opened in streams + [whole, resumed]:
        opened.close()


def test_streamed_and_in_memory_streams_hand_out_the_same_rows(tiny_data):
    """Both paths follow the sampler's positions: a window of epochs read by row group equals the split held."""
    from pipeline.data.sampling import GroupSampler
    from pipeline.data.split_reader import SplitFiles
    from pipeline.train.stream import ExampleStream
    split = SplitFiles(os.path.join(tiny_data, "train"))
    index = split.read_columns(["group_id", "aug_index"])
    sampler = GroupSampler(index["group_id"], index["aug_index"], seed=5)
    taken = []
    for in_memory in (True, False):
        stream = ExampleStream(split, sampler, rank=1, world=2, chunk=48, window_rows=100, in_memory=in_memory,
                               epoch=2, consumed=7)
        taken.append(stream.take(400))    # several epochs and windows
        stream.close()
    assert all(torch.equal(taken[0][k], taken[1][k]) for k in taken[0])


def test_two_workers_complete_and_loss_falls(baseline):
    run_dir, summary = baseline
    records = read_metrics(run_dir)
    assert logged_steps(run_dir) == list(range(1, STEPS + 1))
    losses = [r["train/lm_loss"] for r in records]
    assert np.mean(losses[-3:]) < 0.8 * np.mean(losses[:3])
    evals = [r for r in records if "eval/exact_accuracy" in r]
    # The periodic evaluation reads the 24 validation rows (train.eval_examples=32 caps it), not the test split.
    assert [r["step"] for r in evals] == [6, 12] and all(r["eval/count"] == 24 for r in evals)
    assert len([k for k in evals[0] if k.startswith("eval/exact_accuracy_step")]) == 4
    # Keep-last-2 of the periodic checkpoints (4, 6, 8, 12), each with both ranks' carries; best kept apart.
    assert [s for s, _ in ckpt.folders(run_dir, "checkpoint")] == [8, 12]
    latest = ckpt.latest_checkpoint(run_dir)
    assert latest.endswith("checkpoint_00000012") and ckpt.training_complete(run_dir, STEPS)
    assert not ckpt.training_complete(run_dir, STEPS + 1)
    assert {ckpt.rank_file(0), ckpt.rank_file(1)} <= set(os.listdir(latest))
    assert ckpt.Checkpoint.read(latest).rank_state(1)["carry"]["halted"].shape == (8,)
    assert ckpt.best_checkpoint(run_dir) is not None
    checkpoint = ckpt.Checkpoint.read(latest)
    state, config, manifest = checkpoint.state(), checkpoint.config, checkpoint.manifest
    assert state["step"] == STEPS and manifest["seq_len"] == SEQ_LEN and config["train"]["steps"] == STEPS
    assert "testing-secret-key" not in open(os.path.join(latest, ckpt.CONFIG)).read()
    assert os.path.getsize(os.path.join(run_dir, "curves.png")) > 1000
    assert summary["step"] == STEPS and summary["samples_per_s"] > 0
    # Throughput: tokens/s from samples/s; no MFU on a CPU (no peak to divide by); eager here (no compile time).
    assert all(r["train/tokens_per_s"] == r["train/samples_per_s"] * SEQ_LEN for r in records)
    assert not any("train/mfu" in r or "train/compile_s" in r for r in records) and summary["mfu"] is None


def test_rerun_of_complete_run_does_nothing(baseline, tiny_data):
    run_dir, _ = baseline
    before = os.path.getmtime(os.path.join(run_dir, "metrics.jsonl"))
    assert train(tiny_data, run_dir)["step"] == STEPS
    assert os.path.getmtime(os.path.join(run_dir, "metrics.jsonl")) == before


def test_worker_failure_restarts_from_checkpoint_exactly(baseline, tiny_data, tmp_path):
    run_dir = str(tmp_path / "run")
    train(tiny_data, run_dir, "train.fail_once_at_step=7", "train.max_failures=1")
    assert os.path.exists(os.path.join(run_dir, ".chaos_failed_once"))   # it did fail once
    assert logged_steps(run_dir) == list(range(1, STEPS + 1))           # no step lost or repeated
    assert_same_state(final_state(run_dir), final_state(baseline[0]))


def test_worker_failure_on_s3_restarts_from_checkpoint_exactly(baseline, tiny_data, s3_bucket):
    # the checkpoint Ray Train hands the restarted worker is read from run_dir on S3 by its name
    run_dir = f"{s3_bucket}/runs/restarted"
    train(tiny_data, run_dir, "train.fail_once_at_step=7", "train.max_failures=1")
    assert storage.exists(storage.join(run_dir, ".chaos_failed_once"))
    assert logged_steps(run_dir) == list(range(1, STEPS + 1))
    assert_same_state(final_state(run_dir), final_state(baseline[0]))


def test_stop_and_resume_on_s3_equals_uninterrupted(baseline, tiny_data, s3_bucket):
    run_dir = f"{s3_bucket}/runs/tiny"
    with pytest.raises(PipelineError, match=r"^training failed after 0 restart\(s\) \(train.max_failures\): "
                                            r".*chaos: train.fail_once_at_step=7 \(rank 1\); rerun the same "
                                            r"command to resume from .*checkpoint_00000006$"):
        train(tiny_data, run_dir, "train.fail_once_at_step=7", "train.max_failures=0")
    assert ckpt.latest_checkpoint(run_dir).endswith("checkpoint_00000006")
    assert logged_steps(run_dir) == list(range(1, 7))
    train(tiny_data, run_dir)   # resume=auto: continues from step 6
    assert logged_steps(run_dir) == list(range(1, STEPS + 1))
    assert_same_state(final_state(run_dir), final_state(baseline[0]))


def test_workers_without_room_stop_the_run_naming_the_checkpoint_to_resume(baseline, tiny_data, tmp_path):
    """What a lost node that is never replaced leaves: the restarted workers find no room within
    train.node_wait_s (here 6 CPUs asked of a 4-CPU Ray), and the run stops in one line naming the newest
    checkpoint (bench/bench_faults.py lost-node removes a real node, with and without a replacement)."""
    run_dir = str(tmp_path / "run")
    shutil.copytree(baseline[0], run_dir)
    newest = ckpt.latest_checkpoint(run_dir)
    with pytest.raises(PipelineError, match=r"found no room on the cluster within train.node_wait_s=2 s .*"
                                            rf"resume from {newest}$"):
        train(tiny_data, run_dir, f"train.steps={STEPS + 4}", "train.cpus_per_worker=3", "train.node_wait_s=2")


def test_missing_data_dir(tmp_path):
    with pytest.raises(PipelineError, match="dataset.json is missing"):
        train(tmp_path / "nothing", tmp_path / "run")


def test_manifest_not_fitting_model(tiny_data, tmp_path):
    with pytest.raises(PipelineError, match="model.seq_len=81 does not fit"):
        train(tiny_data, tmp_path / "run", "+model.seq_len=81")


def test_bad_model_config(tiny_data, tmp_path):
    with pytest.raises(PipelineError, match="not a multiple of num_heads"):
        train(tiny_data, tmp_path / "run", "model.num_heads=3")


def truncate(path: str) -> None:
    with open(path, "r+b") as f:
        f.truncate(os.path.getsize(path) // 2)


def test_unreadable_checkpoint_falls_back_to_the_newest_readable(baseline, tiny_data, tmp_path, caplog):
    """A truncated rank file in the newest checkpoint: resume from the one before, named in the log, and
    end exactly where the uninterrupted run ended (the final checkpoint is written again)."""
    run_dir = str(tmp_path / "run")
    shutil.copytree(baseline[0], run_dir)
    newest = ckpt.latest_checkpoint(run_dir)
    truncate(os.path.join(newest, ckpt.rank_file(1)))
    assert "rank_1.pt is unreadable" in ckpt.unreadable_reason(newest)
    assert not ckpt.training_complete(run_dir, STEPS)
    with caplog.at_level(logging.WARNING, logger="pipeline.train.recipe"):
        train(tiny_data, run_dir)
    assert f"skipping checkpoint {newest}: rank_1.pt is unreadable" in caplog.text
    assert ckpt.unreadable_reason(newest) is None and ckpt.training_complete(run_dir, STEPS)
    assert_same_state(final_state(run_dir), final_state(baseline[0]))
    assert logged_steps(run_dir) == list(range(1, STEPS + 1))


def test_no_readable_checkpoint_with_resume_true(baseline, tiny_data, tmp_path):
    run_dir = str(tmp_path / "run")
    shutil.copytree(baseline[0], run_dir)
    for _, path in ckpt.folders(run_dir, "checkpoint"):
        truncate(os.path.join(path, ckpt.STATE))
    with pytest.raises(PipelineError, match="holds no complete checkpoint"):
        train(tiny_data, run_dir, "train.resume=true")


def test_checkpoint_of_other_model_is_refused(baseline, tiny_data, tmp_path):
    run_dir = str(tmp_path / "run")
    shutil.copytree(baseline[0], run_dir)
    with pytest.raises(PipelineError, match="different model"):
        train(tiny_data, run_dir, f"train.steps={STEPS + 4}", "model.hidden_size=64")


def test_dataset_of_another_task_is_refused(tiny_data, tmp_path):
    with pytest.raises(PipelineError, match=r"holds a sudoku dataset, but task=maze; pass task=sudoku"):
        train(tiny_data, tmp_path / "run", "task=maze")


def test_checkpoint_trained_on_another_dataset_is_refused(baseline, tiny_data, tmp_path):
    """Same shapes, other data (its fingerprint differs): resuming would mix two datasets in one run."""
    data_dir, run_dir = tmp_path / "data", tmp_path / "run"
    shutil.copytree(tiny_data, data_dir)
    shutil.copytree(baseline[0], run_dir)
    manifest = json.loads((data_dir / fmt.MANIFEST).read_text())
    (data_dir / fmt.MANIFEST).write_text(json.dumps({**manifest, "fingerprint": {"seed": 1}}))
    for _, path in ckpt.folders(str(run_dir), "checkpoint"):
        saved = json.loads(open(os.path.join(path, ckpt.MANIFEST)).read())
        open(os.path.join(path, ckpt.MANIFEST), "w").write(json.dumps({**saved, "fingerprint": {"seed": 0}}))
    with pytest.raises(PipelineError, match=r"trained on another dataset .*\(seed: 0 there, 1 here\); use another run_dir"):
        train(data_dir, run_dir, f"train.steps={STEPS + 4}")


@pytest.mark.slow
def test_cli_exit_code_on_missing_data(tmp_path):
    result = subprocess.run([sys.executable, "-m", "pipeline.run", "stage=train", f"data_dir={tmp_path}/none",
                             f"run_dir={tmp_path}/run"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert "dataset.json is missing" in result.stdout + result.stderr


def test_auto_cpus_give_each_worker_the_most_whole_cpus_that_fit():
    from pipeline.ray_setup import torch_threads
    from pipeline.train.recipe import whole_cpus_per_worker
    assert whole_cpus_per_worker([2], 1) == 2          # a laptop's one worker trains on every core
    assert whole_cpus_per_worker([8, 8], 3) == 4       # 4 + 4 on one node, 4 on the other
    assert whole_cpus_per_worker([2], 4) == 0.5        # more workers than CPUs: a share each
    assert torch_threads(0.5) == 1 and torch_threads(10_000) == len(os.sched_getaffinity(0))


def test_two_nodes_one_worker_each(tiny_data, tmp_path):
    """Runs last in this file: it replaces the session's Ray with a 2-node cluster, then restores it.
    It also reads the train split a window of epochs at a time (the path of splits over train.in_memory_mb)."""
    import ray
    from ray.cluster_utils import Cluster
    ray.shutdown()
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 2})
    cluster.add_node(num_cpus=2)
    try:
        ray.init(address=cluster.address, logging_level=logging.WARNING)
        cluster.wait_for_nodes()
        run_dir = str(tmp_path / "run")
        train(tiny_data, run_dir, "train.placement_strategy=STRICT_SPREAD", "train.eval_every=0",
              "train.in_memory_mb=0")
        assert logged_steps(run_dir) == list(range(1, STEPS + 1))
        assert ckpt.training_complete(run_dir, STEPS)
    finally:
        ray.shutdown()
        cluster.shutdown()
        # the ray_local fixture's settings, for the tests that run after this one
        ray.init(num_cpus=4, include_dashboard=True, logging_level=logging.WARNING, object_store_memory=1024**3)

