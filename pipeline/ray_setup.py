"""Starting or joining Ray, in one place.

`ray.address` unset and no `RAY_ADDRESS`: start a local Ray in this process with the CPUs available.
`ray.address=auto` or an address, or `RAY_ADDRESS` set (as inside `ray job submit`): connect, passing no
local-only arguments (Ray refuses `num_cpus` and friends when connecting).

A local Ray is pinned to its own address: Ray's internal actors (Ray Train's placement-group cleaner,
state API calls) otherwise look the cluster up by scanning the machine, and stop with "Found multiple
active Ray instances" when any other Ray runs beside it (another user's, a test suite's).
"""
import contextlib
import logging
import os
import socket

import ray

from pipeline import PACKAGES_ROOT

log = logging.getLogger(__name__)

_started_address: str | None = None   # the RAY_ADDRESS this process set for the local Ray it started


def torch_threads(cpus: float) -> int:
    """Torch threads for a worker granted `cpus` Ray CPUs: whole CPUs, at least 1, never more than the cores
    this process may run on (a Ray started with more logical CPUs than the machine has would oversubscribe)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, min(int(cpus), cores))


def cluster_gpus() -> float:
    """The GPUs of the Ray cluster this process is connected to, the one place the pipeline looks for them:
    training workers (`train.use_gpu=auto`) and inference actors take one each where there are any."""
    return ray.cluster_resources().get("GPU", 0)


INDUCTOR_CACHE_PREFIX = "trm-"


def use_own_inductor_cache(name: str) -> str:
    """Point this process's torch inductor cache (compiled graphs' code, FX graph and AOTAutograd caches) at
    a folder of its own, `<base>/trm-<name>`, and return it. Processes compiling at once on one node race on a
    shared cache (pytorch issue 153791); a stable name (the rank) lets the same command's rerun read its
    compiled code back instead of compiling again. <base>: TORCHINDUCTOR_CACHE_DIR as set for the run, else
    torch's default (the temp folder's torchinductor_<user>)."""
    from torch._inductor.runtime.cache_dir_utils import default_cache_dir
    base = os.environ.get("TORCHINDUCTOR_CACHE_DIR") or default_cache_dir()
    if os.path.basename(base.rstrip("/")).startswith(INDUCTOR_CACHE_PREFIX):    # set earlier in this process
        base = os.path.dirname(base.rstrip("/"))
    folder = os.path.join(base, INDUCTOR_CACHE_PREFIX + name)
    os.environ["TORCHINDUCTOR_CACHE_DIR"] = folder
    return folder


# Ray's warnings that are expected here and alarm users for nothing: the evaluation stages' inference
# actors hold CPUs while their own Ray Data reads wait for one (not a hang), and the stages turn Ray Data's
# per-read bars off on purpose.
_EXPECTED_WARNINGS = ("does not have any available CPUs", "Progress bars disabled")


class _DropExpected(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not any(text in message for text in _EXPECTED_WARNINGS)


def quiet_expected_ray_warnings() -> None:
    """Drop `_EXPECTED_WARNINGS` in this process (the driver, and each training worker for its reads)."""
    for name in ("ray.data.dataset", "ray.data._internal.progress"):    # where Ray logs them (filters do
                                                                        # not apply to child loggers)
        target = logging.getLogger(name)
        if not any(isinstance(f, _DropExpected) for f in target.filters):
            target.addFilter(_DropExpected())


def apply_train_log_level(level: str) -> None:
    """In a training worker: hold Ray Train's per-report INFO line ("Reporting training result N: ...", one
    per checkpoint with every metric) to `train.ray_log_level`. Ray names that module's logger by its file
    path, so RunConfig's LoggingConfig, which filters the `ray.train` loggers, never reaches it."""
    from ray.train.v2._internal.execution import context
    logging.getLogger(context.__file__).setLevel(level.upper())


def in_input_order(ds):
    """`ds` (and every dataset derived from it, which copies its context) with Ray Data's `preserve_order`:
    blocks in index order rather than in the order Ray's tasks finish. An aid, not a guarantee: files and
    answers that must not depend on scheduling are made so by construction (`dataset_format.write_split`,
    `test_time.puzzle_hashes`)."""
    ds.context.execution_options.preserve_order = True
    return ds


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def _from_packages_root():
    """Run `ray.init` from the folder this project's packages are imported from, then come back.

    A driver's `ray.init` puts its working directory first on every worker's import path (Ray's
    `py_driver_sys_path`, skipped only for a job with a `working_dir`), and local workers start in it: from
    a run folder of the original code its `trm.py` / `losses.py`, from any folder a `trm/` or `pipeline.py`,
    would be imported by the workers in place of the real modules. The packages' own folder shadows nothing.
    Every path the stages use is absolute by then (`pipeline.config.resolve_config`)."""
    previous = os.getcwd()
    os.chdir(PACKAGES_ROOT)
    try:
        yield
    finally:
        os.chdir(previous)


def quiet_ray_data(verbose: bool) -> None:
    """Without `ray.verbose`, no Ray Data progress bars in the driver's terminal (a dozen bars per dataset
    written, their lines interleaved with Ray's warnings): the stages draw one progress line of their own."""
    from ray.data import DataContext
    DataContext.get_current().enable_progress_bars = verbose


def init_ray(ray_cfg) -> None:
    """Start or join Ray unless this process is already connected (tests share one local cluster).

    Without `ray.verbose=true` Ray's own output (its workers' log lines and warnings, Ray Data's bars) stays
    out of the terminal: it is in the session's log folder, named once at start."""
    global _started_address
    quiet_expected_ray_warnings()
    verbose = bool(ray_cfg.get("verbose", False))
    quiet_ray_data(verbose)
    if ray.is_initialized():
        return
    from_environment = os.environ.get("RAY_ADDRESS")
    if from_environment == _started_address:    # ours, from a local Ray this process started and shut down
        from_environment = None
    address = ray_cfg.get("address") or from_environment
    if address:
        log.info("joining the Ray cluster at %s", address)
        with _from_packages_root():
            _say_where_logs_are(ray.init(address=address, logging_level=logging.WARNING, log_to_driver=verbose),
                                verbose)
        return
    # A throw-away local cluster needs no token auth, and no watcher for cloud preemption notices (whose
    # start logs an error-level line); a user's explicit choice is kept.
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    os.environ.setdefault("RAY_TRAIN_ENABLE_PREEMPTION_WATCHER", "0")
    num_cpus = ray_cfg.get("num_cpus") or os.cpu_count()
    # address="local": always a new cluster, never one a `ray start` left running on this machine.
    kwargs = dict(address="local", num_cpus=num_cpus, include_dashboard=bool(ray_cfg.get("dashboard", True)),
                  logging_level=logging.WARNING, log_to_driver=verbose)
    if ray_cfg.get("object_store_memory"):
        kwargs["object_store_memory"] = int(ray_cfg.object_store_memory)
    # The GCS port is chosen here so that RAY_ADDRESS can name it before any Ray process starts: every
    # process of this cluster inherits it and never looks for another one.
    port = free_port()
    os.environ["RAY_GCS_SERVER_PORT"] = str(port)
    os.environ["RAY_ADDRESS"] = _started_address = f"127.0.0.1:{port}"
    log.info("starting a local Ray with %s CPUs", num_cpus)
    try:
        with _from_packages_root():
            _say_where_logs_are(ray.init(**kwargs), verbose)
    finally:   # read by the GCS it started; a later cluster (or `ray start`) of this process must not reuse it
        os.environ.pop("RAY_GCS_SERVER_PORT", None)


def _say_where_logs_are(context, verbose: bool) -> None:
    if not verbose:
        session = (getattr(context, "address_info", None) or {}).get("session_dir")
        log.info("Ray's own log lines: %s (ray.verbose=true shows them here)",
                 f"{session}/logs" if session else "the Ray session's logs folder")
