"""A flaky object store (tests/fault_proxy.py in front of the loopback S3 server): the storage calls of the
driver (manifests, listings, metrics, checkpoint uploads) complete through retries, and a checkpoint whose
upload stopped midway is never taken as complete.

Retries are botocore's (s3fs's client; legacy mode, 5 attempts per call by default, set by AWS_RETRY_MODE /
AWS_MAX_ATTEMPTS or ~/.aws/config) plus s3fs's own for dropped connections.
"""
import os

import pytest
import s3fs
import torch

from pipeline import storage
from pipeline.checkpoints import checkpoint as ckpt
from tests.fault_proxy import FaultProxy


@pytest.fixture
def flaky(s3_endpoint, monkeypatch):
    """A proxy failing 30 % of requests (503, 500, reset in turn); this process's S3 calls go through it."""
    with FaultProxy(s3_endpoint, share=0.3, seed=0) as proxy:
        monkeypatch.setenv("AWS_ENDPOINT_URL", proxy.url)
        s3fs.S3FileSystem.clear_instance_cache()       # clients made before read the endpoint once
        yield proxy
    s3fs.S3FileSystem.clear_instance_cache()


def _checkpoint_files(folder, step: int) -> None:
    os.makedirs(folder, exist_ok=True)
    torch.save({"step": step, "weights": torch.arange(50_000.0)}, os.path.join(folder, ckpt.STATE))
    torch.save({"carry": step}, os.path.join(folder, ckpt.rank_file(0)))
    for name, obj in ((ckpt.CONFIG, {}), (ckpt.MANIFEST, {"task": "sudoku"}), (ckpt.META, {"step": step, "world_size": 1})):
        ckpt.write_json(os.path.join(folder, name), obj)


NAMES = [ckpt.STATE, ckpt.rank_file(0), ckpt.CONFIG, ckpt.MANIFEST, ckpt.META]     # meta.json last: it marks complete


def test_storage_calls_survive_a_third_of_requests_failing(flaky, s3_bucket, tmp_path):
    run_dir = f"{s3_bucket}/run"
    for step in (1, 2):
        storage.write_json_atomic(f"{run_dir}/progress_{step}.json", {"step": step})
        _checkpoint_files(tmp_path / str(step), step)
        ckpt.upload_files(str(tmp_path / str(step)), NAMES, f"{run_dir}/{ckpt.checkpoint_name(step)}")
    assert storage.read_json(f"{run_dir}/progress_2.json") == {"step": 2}
    assert [p.rsplit("/", 1)[1] for p in storage.list_files(run_dir, ".json")] == ["progress_1.json", "progress_2.json"]
    assert ckpt.latest_checkpoint(run_dir).endswith(ckpt.checkpoint_name(2))
    assert flaky.stats["503"] and flaky.stats["500"] and flaky.stats["reset"]       # the faults did happen


def test_upload_cut_midway_is_retried_or_never_taken_as_complete(flaky, s3_bucket, tmp_path):
    run_dir = f"{s3_bucket}/run"
    _checkpoint_files(tmp_path / "1", 1)
    ckpt.upload_files(str(tmp_path / "1"), NAMES, f"{run_dir}/{ckpt.checkpoint_name(1)}")
    # a cut upload is sent again whole: the object store never shows a partial object
    flaky.cut_next_upload(f"{ckpt.checkpoint_name(2)}/{ckpt.STATE}")
    _checkpoint_files(tmp_path / "2", 2)
    ckpt.upload_files(str(tmp_path / "2"), NAMES, f"{run_dir}/{ckpt.checkpoint_name(2)}")
    assert flaky.stats["cut"] == 1
    assert ckpt.unreadable_reason(f"{run_dir}/{ckpt.checkpoint_name(2)}") is None
    # an upload that stops for good (the process killed, the store down past every retry) leaves a folder
    # without meta.json
    _checkpoint_files(tmp_path / "3", 3)
    ckpt.upload_files(str(tmp_path / "3"), NAMES[:2], f"{run_dir}/{ckpt.checkpoint_name(3)}")
    assert ckpt.latest_checkpoint(run_dir).endswith(ckpt.checkpoint_name(2))    # a resume takes the previous one
