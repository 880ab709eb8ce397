"""One command per output folder (`pipeline.run_lock`): the second refuses naming the first; dead locks are taken over."""
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time

import pytest

from pipeline import run_lock, storage
from pipeline.config import resolve_config
from pipeline.errors import PipelineError
from pipeline.run import run_stage
from tests.conftest import compose


def _cfg(stage, data_dir, run_dir):
    return resolve_config(compose(f"stage={stage}", f"data_dir={data_dir}", f"run_dir={run_dir}"))


def test_second_command_on_a_folder_refuses_naming_the_first(tmp_path):
    cfg = _cfg("train", tmp_path / "data", tmp_path / "run")
    with run_lock.hold(cfg):
        with pytest.raises(PipelineError) as err:     # the CLI's path: refused before the stage starts
            run_stage(compose("stage=all", f"data_dir={tmp_path / 'other'}", f"run_dir={tmp_path / 'run'}"))
        message = str(err.value)
        assert f"run_dir={tmp_path / 'run'} is in use" in message
        assert f"pid {os.getpid()} on host {socket.gethostname()}" in message and "started 20" in message
        assert str(tmp_path / "run.lock") in message
        # another run on the same data, and an evaluation of this run while it trains, are allowed
        with run_lock.hold(_cfg("train", tmp_path / "data", tmp_path / "run2")), \
                run_lock.hold(_cfg("eval", tmp_path / "data", tmp_path / "run")):
            pass
    assert not (tmp_path / "run.lock").exists()          # released, also after an error
    with pytest.raises(ValueError), run_lock.hold(cfg):
        raise ValueError
    with run_lock.hold(cfg):
        pass


def test_lock_of_a_killed_command_is_taken_over_with_a_warning(tmp_path, caplog):
    cfg = _cfg("augment", tmp_path / "data", tmp_path / "run")
    code = ("import sys, time\nfrom pipeline import run_lock\nfrom pipeline.config import resolve_config\n"
            "from tests.conftest import compose\n"
            f"cfg = resolve_config(compose('stage=augment', 'data_dir={tmp_path / 'data'}'))\n"
            "with run_lock.hold(cfg):\n    print('held', flush=True)\n    time.sleep(60)\n")
    holder = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True,
                              cwd=os.path.dirname(os.path.dirname(__file__)))
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(PipelineError, match=f"data_dir=.* in use by another command: pid {holder.pid} "):
            run_lock.hold(cfg).__enter__()
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=30)
    assert json.loads((tmp_path / "data.lock").read_text())["pid"] == holder.pid   # left behind by the kill
    with caplog.at_level(logging.WARNING, logger="pipeline.run_lock"), run_lock.hold(cfg):
        assert json.loads((tmp_path / "data.lock").read_text())["pid"] == os.getpid()
    assert f"left by pid {holder.pid} on host" in caplog.text


def test_object_store_lock_refuses_then_expires_without_heartbeat(s3_bucket, tmp_path, caplog):
    cfg = _cfg("augment", f"{s3_bucket}/data", tmp_path / "run")
    lock = f"{s3_bucket}/data.lock"
    with run_lock.hold(cfg):
        assert storage.read_json(lock)["pid"] == os.getpid()
        with pytest.raises(PipelineError, match=f"data_dir={s3_bucket}/data is in use .* pid {os.getpid()}"):
            run_lock.hold(cfg).__enter__()
    assert not storage.exists(lock)
    abandoned = {"host": "node-7", "pid": 4242, "started": "2026-01-01T00:00:00+00:00", "command": "x",
                 "heartbeat": time.time() - cfg.lock.stale_s - 1, "token": "t"}
    storage.write_json_atomic(lock, abandoned)
    with caplog.at_level(logging.WARNING, logger="pipeline.run_lock"), run_lock.hold(cfg):
        assert storage.read_json(lock)["pid"] == os.getpid()
    assert "left by pid 4242 on host node-7" in caplog.text and "no heartbeat for" in caplog.text
    storage.write_json_atomic(lock, {**abandoned, "heartbeat": time.time()})     # a live command elsewhere
    with pytest.raises(PipelineError, match="pid 4242 on host node-7"):
        run_lock.hold(cfg).__enter__()
