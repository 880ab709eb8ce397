"""The CLI as a Ray job: a real head (`ray start --head`), `ray job submit --working-dir <repo>`, a dataset.

The head is this test's own (loopback, free ports, its own temp dir) so it never meets the session's
`ray_local` cluster, and this process never calls `ray.init`. Teardown kills only what it started: the
head's process group, then any process whose command line names its temp dir (never `ray stop`).
"""
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest

from pipeline.data import dataset_format as fmt

pytestmark = pytest.mark.slow   # compiles, trains or starts Ray: not in the quick subset

REPO = Path(__file__).resolve().parents[1]
RAY = str(Path(sys.executable).with_name("ray"))


def _free_ports(n):
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def _kill_tree(proc, temp_dir):
    for sig in (signal.SIGTERM, signal.SIGKILL):   # the head's own session: only what it started
        try:
            os.killpg(proc.pid, sig)
            proc.wait(timeout=5)
            break
        except (ProcessLookupError, subprocess.TimeoutExpired):
            pass
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):   # anything of ours outside the group
        try:
            if temp_dir.encode() in cmdline.read_bytes():
                os.kill(int(cmdline.parent.name), signal.SIGKILL)
        except OSError:
            pass


@pytest.fixture
def ray_head():
    # A short temp dir: Ray's unix socket paths under it must stay below ~107 characters.
    temp_dir = tempfile.mkdtemp(prefix="trm-rayjob-", dir="/tmp")
    gcs, dashboard, client, agent, agent_grpc, metrics, runtime_env, node_manager, object_manager = \
        _free_ports(9)
    env = dict(os.environ, RAY_AUTH_MODE="disabled",   # the same on the head and the client below
               PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    env.pop("RAY_ADDRESS", None)
    log = open(Path(temp_dir) / "head.log", "w")
    proc = subprocess.Popen(
        [RAY, "start", "--head", "--block", "--node-ip-address=127.0.0.1", f"--port={gcs}",
         "--dashboard-host=127.0.0.1", f"--dashboard-port={dashboard}", f"--ray-client-server-port={client}",
         f"--dashboard-agent-listen-port={agent}", f"--dashboard-agent-grpc-port={agent_grpc}",
         f"--metrics-export-port={metrics}", f"--runtime-env-agent-port={runtime_env}",
         f"--node-manager-port={node_manager}", f"--object-manager-port={object_manager}",
         "--num-cpus=2", f"--object-store-memory={512 * 1024**2}", f"--temp-dir={temp_dir}",
         "--disable-usage-stats"],
        env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    address = f"http://127.0.0.1:{dashboard}"
    try:
        deadline = time.monotonic() + 120           # a guard against hanging, not a speed assertion
        while True:
            if proc.poll() is not None:
                pytest.fail(f"ray start exited {proc.returncode}:\n{Path(temp_dir, 'head.log').read_text()}")
            try:
                urllib.request.urlopen(f"{address}/api/version", timeout=2)
                break
            except OSError:
                if time.monotonic() > deadline:
                    pytest.fail("the head's job server did not come up")
                time.sleep(1)
        yield address, env, Path(temp_dir)
    finally:
        _kill_tree(proc, temp_dir)
        log.close()
        shutil.rmtree(temp_dir, ignore_errors=True)


def _job(address, env, *args):
    return subprocess.run([RAY, "job", *args, "--address", address], env=env, capture_output=True,
                          text=True, timeout=60)


def test_augment_stage_runs_as_a_submitted_job(ray_head, tmp_path):
    address, env, temp_dir = ray_head
    data_dir = tmp_path / "data"
    submitted = subprocess.run(
        [RAY, "job", "submit", "--address", address, "--submission-id", "trm-augment-test",
         "--working-dir", str(REPO), "--no-wait",
         "--runtime-env-json", json.dumps({"env_vars": {"RAY_DATA_LOG_LEVEL": "WARNING"}}),
         "--", "python", "-m", "pipeline.run", "stage=augment", "task=sudoku", "task.size=4", "task.max_blanks=null",
         "task.num_train=20", "task.num_val=4", "task.num_test=10", "task.num_aug=1", f"data_dir={data_dir}"],
        env=env, capture_output=True, text=True, timeout=120)
    assert submitted.returncode == 0, submitted.stderr
    deadline = time.monotonic() + 240
    while True:
        status = _job(address, env, "status", "trm-augment-test").stdout.lower()
        if any(f"job 'trm-augment-test' {end}" in status for end in ("succeeded", "failed", "stopped")) \
                or time.monotonic() > deadline:
            break
        time.sleep(2)
    logs = _job(address, env, "logs", "trm-augment-test").stdout
    assert "job 'trm-augment-test' succeeded" in status, f"{status}\n{logs}"
    manifest = fmt.read_manifest(str(data_dir))
    assert manifest["seq_len"] == 16
    assert set(manifest["splits"]) == {"train", "val", "test"}
    assert manifest["splits"]["val"]["examples"] + manifest["dropped_equivalent_val"] == 4
    # The uploaded package left out the ignored folders, and Hydra wrote nothing into it (no run dir,
    # no .hydra) that would vanish with it.
    packages = [p for p in temp_dir.glob("session_latest/runtime_resources/working_dir_files/*") if p.is_dir()]
    assert packages and all((p / "pipeline" / "run.py").is_file() for p in packages), packages
    for package in packages:
        assert not {".git", ".venv", "outputs", "wandb", ".hydra"} & {p.name for p in package.iterdir()}
