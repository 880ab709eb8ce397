"""pipeline.train.metrics_log: truncation on resume, append, S3, wandb offline, the curves PNG."""
import os

import pytest

from pipeline.train.metrics_log import CURVES, MetricsLog, read_metrics, wandb_mode, write_curves


def record(step: int) -> dict:
    return {"step": step, "train/lm_loss": 1.0 / step, "train/accuracy": step / 10}


@pytest.mark.parametrize("remote", [False, True])
def test_resume_truncates_to_checkpoint_step(tmp_path, s3_bucket, remote):
    run_dir = f"{s3_bucket}/run" if remote else str(tmp_path)
    first = MetricsLog(run_dir, upto_step=0)
    for step in range(1, 5):
        first.log(record(step))
    first.flush()
    first.log(record(5))   # never flushed: the run died before its next checkpoint
    resumed = MetricsLog(run_dir, upto_step=2)
    assert [r["step"] for r in read_metrics(run_dir)] == [1, 2]
    for step in range(3, 7):
        resumed.log(record(step))
    resumed.close()
    assert [r["step"] for r in read_metrics(run_dir)] == [1, 2, 3, 4, 5, 6]


def test_wandb_offline_without_key(tmp_path, monkeypatch):
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    assert wandb_mode() == "offline"
    monkeypatch.setenv("WANDB_MODE", "offline")
    log = MetricsLog(str(tmp_path), upto_step=0, logger="wandb", config={"seed": 0})
    assert log.wandb_run is not None
    log.log(record(1))
    log.close()
    runs = [d for d in os.listdir(tmp_path / "wandb") if d.startswith("offline-run-")]
    assert len(runs) == 1 and any(f.endswith(".wandb") for f in os.listdir(tmp_path / "wandb" / runs[0]))


def test_curves_png(tmp_path):
    log = MetricsLog(str(tmp_path), upto_step=0)
    for step in range(1, 4):
        log.log({**record(step), **({"eval/exact_accuracy": 0.5} if step == 3 else {})})
    log.close()
    path = write_curves(str(tmp_path))
    with open(path, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    assert path.endswith(CURVES)
    assert write_curves(str(tmp_path / "empty")) is None
