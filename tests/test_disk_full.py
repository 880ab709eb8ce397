"""A full disk (a small tmpfs, mounted as root): one line naming the folder and the space, nothing half-published."""
import os
import subprocess

import pytest

from pipeline import disk_space
from pipeline.config import resolve_config
from pipeline.data import dataset_format as fmt
from pipeline.errors import PipelineError
from pipeline.run import run_stage
from tests.conftest import compose


@pytest.fixture
def small_disk(tmp_path):
    """A 256 KiB file system at tmp_path/small (tmpfs; needs root)."""
    mount = tmp_path / "small"
    mount.mkdir()
    if os.geteuid() != 0:
        pytest.skip("a small file system needs root (mount -t tmpfs)")
    made = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mount)], capture_output=True, text=True)
    if made.returncode:
        pytest.skip(f"cannot mount a tmpfs here: {made.stderr.strip()}")
    yield mount
    subprocess.run(["umount", str(mount)], check=True)


def test_no_space_in_a_stage_is_one_line_naming_the_folder_and_its_partial_output_goes(small_disk, tmp_path):
    cfg = resolve_config(compose("stage=eval", f"data_dir={tmp_path / 'data'}", f"run_dir={small_disk / 'run'}"))
    kept = small_disk / "run" / "eval" / "tta8"                          # an earlier evaluation, kept apart
    kept.mkdir(parents=True)
    (kept / "metrics.json").write_text("{}")
    partial = small_disk / "run" / "eval" / "plain" / "predictions"
    with pytest.raises(PipelineError) as err, disk_space.reported(cfg):
        partial.mkdir(parents=True)
        (partial / "part-000000.parquet").write_bytes(b"x" * 2**20)      # more than the disk holds
    message = str(err.value)
    assert "\n" not in message and message.startswith("no space left on device writing run_dir=")
    assert f"{small_disk / 'run'} (eval/): 252.0 KiB free of 256.0 KiB" in message      # the kept one's page
    assert not (small_disk / "run" / "eval" / "plain").exists()          # nothing half-written is left
    assert (kept / "metrics.json").exists()                               # and the other evaluations stay


def test_augment_filling_the_disk_keeps_the_previous_dataset(small_disk, ray_local):
    data_dir = small_disk / "data"
    options = ["stage=augment", "task=sudoku", "preset=none", "task.size=4", "task.num_train=100", "task.num_test=20",
               "task.num_val=0", "task.chunk_size=50", f"data_dir={data_dir}"]
    before = run_stage(compose(*options, "task.num_aug=1"))
    with pytest.raises(PipelineError) as err:
        run_stage(compose(*options, "task.num_aug=600", "overwrite=true"))
    message = str(err.value)
    assert f"no space left on device writing data_dir={data_dir}:" in message and "KiB free of 256.0 KiB" in message
    assert fmt.read_manifest(str(data_dir)) == before                   # the previous dataset, still published
    assert sorted(os.listdir(small_disk)) == ["data"]                     # no rebuild folder, no lock left


def test_checkpoint_cut_short_by_a_full_disk_is_removed_and_the_previous_kept(tmp_path):
    import torch

    from pipeline.checkpoints import checkpoint as ckpt
    run_dir = tmp_path / "run"
    for step in (4, 8):
        folder = run_dir / ckpt.checkpoint_name(step)
        folder.mkdir(parents=True)
        for name in (ckpt.STATE, ckpt.rank_file(0)):
            torch.save({"step": step, "weights": torch.zeros(1000)}, folder / name)
        for name, obj in ((ckpt.CONFIG, {}), (ckpt.MANIFEST, {}), (ckpt.META, {"step": step, "world_size": 1})):
            ckpt.write_json(str(folder / name), obj)
    state = run_dir / ckpt.checkpoint_name(8) / ckpt.STATE        # Ray Train's copy stopped by ENOSPC
    state.write_bytes(state.read_bytes()[:300])
    (run_dir / ckpt.best_name(8)).mkdir()                          # _keep_best stopped before meta.json
    cfg = resolve_config(compose("stage=train", f"data_dir={tmp_path / 'data'}", f"run_dir={run_dir}"))
    assert disk_space.remove_partial(cfg) == [str(run_dir / ckpt.checkpoint_name(8)), str(run_dir / ckpt.best_name(8))]
    assert sorted(os.listdir(run_dir)) == [ckpt.checkpoint_name(4)]
    assert "each checkpoint takes" in disk_space.message(cfg, OSError(28, "No space left on device"))


def test_no_space_is_found_in_ray_trains_worker_text_and_nowhere_else():
    # Ray Train hands a worker's error on as text only (ray.train.WorkerGroupError), as a full run_dir showed
    text = ("Training failed due to worker errors:\n[Rank 0,1 Error Snippet]:\n  File \"pyarrow/_fs.pyx\", line 1649\n"
            "OSError: [Errno 28] Error writing bytes to file. Detail: [errno 28] No space left on device\n")
    assert disk_space.no_space_cause(RuntimeError(text)).startswith("OSError: [Errno 28]")
    try:
        raise ValueError("wrapper") from OSError(28, "No space left on device", "/x/state.pt")
    except ValueError as err:
        assert disk_space.no_space_cause(err).filename == "/x/state.pt"
    assert disk_space.no_space_cause(RuntimeError("OSError: [Errno 2] No such file")) is None
