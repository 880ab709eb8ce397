"""Shared fixtures: the Hydra config, one local Ray cluster, a loopback S3 server (moto), offline libraries.

The environment is set at import, before anything starts Ray, so Ray's workers inherit it.
"""
import logging
import os
import tempfile
import uuid
from pathlib import Path

import pytest

SHARED = Path(__file__).resolve().parents[2] / "shared"
SHARED_DATA = Path(os.environ.get("TRM_SHARED_DATA", SHARED / "data"))

_SANDBOX = Path(tempfile.mkdtemp(prefix="trm-tests-"))
os.environ.update(
    HOME=str(_SANDBOX / "home"),              # no token, wandb or HF cache lands in the real home
    HF_HOME=str(_SANDBOX / "hf"),
    HF_DATASETS_OFFLINE="1",
    HF_HUB_OFFLINE="1",
    WANDB_MODE="offline",
    WANDB_SILENT="true",
    RAY_AUTH_MODE="disabled",
    RAY_DATA_DISABLE_PROGRESS_BARS="1",
    RAY_DATA_LOG_LEVEL="WARNING",
    RAY_TRAIN_ENABLE_PREEMPTION_WATCHER="0",
    RAY_USAGE_STATS_ENABLED="0",
    TQDM_DISABLE="1",
    AWS_ACCESS_KEY_ID="testing-key-id",
    AWS_SECRET_ACCESS_KEY="testing-secret-key",
    AWS_DEFAULT_REGION="us-east-1",
)
(_SANDBOX / "home").mkdir(exist_ok=True)


def _start_moto():
    from moto.server import ThreadedMotoServer
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    os.environ["AWS_ENDPOINT_URL"] = f"http://{host}:{port}"
    return server


_MOTO = _start_moto()   # before any Ray process starts, so workers see AWS_ENDPOINT_URL


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"shared data not found at {SHARED_DATA}: set TRM_SHARED_DATA=<folder with arc/, sudoku/>")
    return SHARED_DATA


@pytest.fixture(scope="session")
def s3_endpoint() -> str:
    return os.environ["AWS_ENDPOINT_URL"]


@pytest.fixture
def s3_bucket(s3_endpoint) -> str:
    """A fresh bucket on the loopback moto server, as an `s3://` URL."""
    import boto3
    name = f"trm-{uuid.uuid4().hex[:12]}"
    boto3.client("s3", endpoint_url=s3_endpoint).create_bucket(Bucket=name)
    return f"s3://{name}"


@pytest.fixture(scope="session")
def ray_local():
    """One local Ray for the session (4 logical CPUs so Train and Data never starve each other)."""
    import ray
    if not ray.is_initialized():
        ray.init(address="local", num_cpus=4, include_dashboard=True, logging_level=logging.WARNING,
                 object_store_memory=1024**3)
    yield ray
    ray.shutdown()


EAGER = ("train.compile=false", "eval.compile=false")


@pytest.fixture(scope="session")
def sudoku_run(ray_local, tmp_path_factory):
    """A tiny Sudoku checkpoint trained through stage=train (shared by test_eval and test_report: one training).
    A test that evaluates into it writes run_dir/eval; one that needs its own evaluation copies run_dir."""
    from pipeline.run import run_stage
    from tests.test_eval import TINY_MODEL, write_sudoku_dataset
    root = tmp_path_factory.mktemp("eval")
    paths = [f"data_dir={root / 'data'}", f"run_dir={root / 'run'}", "task=sudoku"]
    write_sudoku_dataset(str(root / "data"))
    run_stage(compose("stage=train", *paths, *TINY_MODEL, "train.num_workers=1", "train.global_batch_size=16",
                      "train.steps=4", "train.lr=3e-3", "train.lr_warmup_steps=1", "train.eval_every=0"))
    return root, paths


def compose(*overrides: str):
    """The pipeline's Hydra config with overrides, as the CLI would build it, but eager unless an override
    says otherwise: compiling a model costs 5-60 s on a CPU, once per test (tests/test_trm_compile.py and
    the tests naming train.compile or eval.compile cover the compiled path)."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_module
    eager = [o for o in EAGER if not any(given.lstrip("+").startswith(o.split("=")[0] + "=") for given in overrides)]
    with initialize_config_module(config_module="pipeline.conf", version_base=None):
        return hydra_compose(config_name="config", overrides=[*eager, *overrides])


@pytest.fixture
def make_cfg():
    return compose


def split_columns(data_dir, split: str) -> dict:
    """Every column of a written split as numpy (token columns [rows, seq_len]), in file order."""
    from pipeline import storage
    from pipeline.data import dataset_format as fmt
    table = fmt.read_columns(storage.join(str(data_dir), split), None)
    return {name: fmt.column_numpy(table.column(name)) for name in table.column_names}


def pytest_collection_modifyitems(items):
    """A test that starts Ray (the `ray_local` fixture, directly or through another) is `slow`: `pytest -m
    "not slow"` is the quick subset run between edits; tests that train or compile without Ray carry the
    mark themselves."""
    for item in items:
        if "ray_local" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.slow)
