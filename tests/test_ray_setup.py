"""init_ray: a local Ray started by the pipeline is found by its own processes even beside another Ray."""
import os
import subprocess
import sys

# Run in a fresh process while this test session's Ray (ray_local) is alive: two instances on one machine.
# The remote task resolves the cluster address the way Ray's internal actors do (no address given).
PROBE = """
import ray
from omegaconf import OmegaConf
from pipeline.ray_setup import init_ray
init_ray(OmegaConf.create({"address": None, "num_cpus": 1, "dashboard": False}))

@ray.remote
def lookup():
    from ray._private.services import canonicalize_bootstrap_address_or_die
    return canonicalize_bootstrap_address_or_die(None)

found = ray.get(lookup.remote())
assert found == ray.get_runtime_context().gcs_address, (found, ray.get_runtime_context().gcs_address)
print("ok", found)
"""


def test_local_ray_is_found_by_its_own_workers_beside_another_ray(ray_local):
    env_free = {k: v for k, v in __import__("os").environ.items() if k not in ("RAY_ADDRESS", "RAY_GCS_SERVER_PORT")}
    done = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=180, env=env_free)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.startswith("ok")


def test_train_log_level_reaches_ray_trains_report_logger():
    """Ray Train logs "Reporting training result ..." with every metric at each checkpoint through a logger named
    by its file path, which RunConfig's LoggingConfig does not filter; train.ray_log_level must hold it back."""
    import logging

    from ray.train.v2._internal.execution import context

    from pipeline.ray_setup import apply_train_log_level
    before = context.logger.level
    try:
        apply_train_log_level("warning")
        assert not context.logger.isEnabledFor(logging.INFO)
        apply_train_log_level("INFO")
        assert context.logger.isEnabledFor(logging.INFO)
    finally:
        context.logger.setLevel(before)


def test_each_process_compiles_into_its_own_stable_inductor_cache(monkeypatch, tmp_path):
    """Ranks on one node get separate folders (a shared one races: pytorch issue 153791); the same name gets
    the same folder again (a rerun reads its cache back), however often it is set in one process."""
    from pipeline.ray_setup import use_own_inductor_cache
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path))
    assert use_own_inductor_cache("rank1") == str(tmp_path / "trm-rank1") == os.environ["TORCHINDUCTOR_CACHE_DIR"]
    assert use_own_inductor_cache("rank0") == str(tmp_path / "trm-rank0")
    monkeypatch.delenv("TORCHINDUCTOR_CACHE_DIR")
    assert os.path.basename(use_own_inductor_cache("rank0")) == "trm-rank0"
