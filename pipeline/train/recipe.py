"""What every training stage shares (torchtune's recipe idea): a stage says what to train as a `TrainRecipe`,
`fit` runs it the same way for all.

`stage=train` is one such stage (`pipeline/stages/train.py`); a fine-tuning or adaptation stage is another:
it builds its dataset and its starting weights (a checkpoint folder), names its options section, and calls
`fit`. `fit` owns the rest: the options' checks, whether run_dir's newest readable checkpoint is resumed
(`<section>.resume`) and fits this run (dataset fingerprint, model, batch, EMA, world size), the starting
weights of a fresh run, CPUs / GPUs per worker, Ray Train's storage, failure restarts and checkpoint
retention, the live progress line, the curves and the summary. The per-worker loop is
`pipeline.train.loop.train_loop`, the same for every stage; the checkpoint layout is `pipeline.checkpoints.checkpoint`'.

Memory of the puzzle-embedding table (float32, replicated on every worker and saved in each
checkpoint): num_puzzle_identifiers x hidden_size x 4 bytes, e.g. ARC-AGI-1 aug-1000 876,406 x 512 x 4
= 1.8 GB (ARC-AGI-2 about the same per id), plus up to global_batch_size rows of gradient per step;
Sudoku and Maze use 1 row per puzzle (a few MB).
"""
import contextlib
import logging
import os
import posixpath
from dataclasses import asdict, dataclass
from typing import Callable

import ray

from pipeline import storage
from pipeline.checkpoints import checkpoint as ckpt
from pipeline.checkpoints.checkpoint import Checkpoint
from pipeline.errors import PipelineError
from pipeline.options import TrainOptions
from pipeline.progress import Board, DriverProgress
from pipeline.ray_setup import cluster_gpus, init_ray
from pipeline.train.loop import LoopConfig, train_loop
from pipeline.train.metrics_log import read_metrics, write_curves

log = logging.getLogger(__name__)

WORKER_GROUP_START_TIMEOUT_ENV = "RAY_TRAIN_WORKER_GROUP_START_TIMEOUT_S"


@dataclass(frozen=True)
class TrainRecipe:
    """One training run as a stage describes it.

    cfg: the resolved config (seed, ray, logger; saved into every checkpoint);
    options: the loop's options (`conf/train/default.yaml`'s keys, typed; a stage may set its own values);
    section: the config section the options came from, as the errors name them (`train`);
    data_dir / manifest: the dataset trained on; run_dir: where checkpoints and metrics go;
    model_config: the network (`trm.TRMConfig`);
    start_weights: for a fresh run only, returns the checkpoint (a `Checkpoint`, or a checkpoint folder's path)
    whose (EMA) weights it starts from, or None to start from the seed's initialisation; not called when
    run_dir is resumed;
    then_evaluates: the examples the evaluation after training will run (stage=all), for the run's ETA.
    """
    cfg: object
    options: TrainOptions
    section: str
    data_dir: str
    manifest: dict
    run_dir: str
    model_config: object
    start_weights: Callable[[], Checkpoint | str | None] | None = None
    then_evaluates: float | None = None


def _check_resumable(path: str, recipe: "TrainRecipe") -> int:
    """Check that the checkpoint fits this run, from its small JSON files (the weights are the workers' to
    read: at ARC scale state.pt holds 1.8 GB); return its step."""
    options, section = recipe.options, recipe.section
    checkpoint = Checkpoint.read(path)
    if section not in checkpoint.config:
        raise PipelineError(f"checkpoint {path} was not written by a {section} run; use another run_dir")
    checkpoint.check_fits(recipe.manifest, f"data_dir={recipe.data_dir}", same_dataset=True)
    checkpoint.check_model(recipe.model_config, f"checkpoint {path}")
    for key in ("global_batch_size", "ema"):
        saved_value = checkpoint.config[section][key]
        if saved_value != getattr(options, key):
            raise PipelineError(f"checkpoint {path} was trained with {section}.{key}={saved_value}, "
                                f"not {getattr(options, key)}; resuming exactly needs the same value")
    if checkpoint.world_size != options.num_workers:
        raise PipelineError(f"checkpoint {path} was written by {checkpoint.world_size} workers; set "
                            f"{section}.num_workers={checkpoint.world_size} to resume it (each worker's carry and "
                            f"data position are saved)")
    return checkpoint.step


def _storage(run_dir: str) -> tuple[str, str]:
    """(storage_path, name) for Ray Train's RunConfig."""
    if storage.is_remote(run_dir):
        scheme, rest = run_dir.split("://", 1)
        if "/" not in rest.strip("/"):
            raise PipelineError(f"run_dir={run_dir} needs a folder inside the bucket, e.g. {run_dir}/run")
        parent, name = posixpath.split(rest.rstrip("/"))
        return f"{scheme}://{parent}", name
    parent, name = posixpath.split(run_dir.rstrip("/"))
    return parent, name


def _resources(t: TrainOptions) -> tuple[bool, float]:
    use_gpu = t.use_gpu
    if use_gpu == "auto":
        use_gpu = cluster_gpus() > 0
    cpus = t.cpus_per_worker
    if cpus == "auto":
        # Training reads its rows without Ray Data (pipeline.data.split_reader), so nothing else needs CPUs while it runs.
        nodes = [node["Resources"].get("CPU", 0) for node in ray.nodes() if node.get("Alive")]
        cpus = 1 if use_gpu else whole_cpus_per_worker(nodes, t.num_workers)
    return use_gpu, float(cpus)


def whole_cpus_per_worker(node_cpus: list, workers: int) -> float:
    """The most whole CPUs c such that `workers` workers of c CPUs fit on nodes with these CPU counts; a share
    of a CPU when there are more workers than CPUs."""
    for c in range(int(max(node_cpus, default=1)), 0, -1):
        if sum(int(n // c) for n in node_cpus) >= workers:
            return float(c)
    return max(0.1, int(10 * sum(node_cpus) / workers) / 10)


def _check_splits(recipe: "TrainRecipe") -> bool:
    """Check the train split is there; return whether periodic evaluation runs (on the validation split)."""
    train_dir = storage.join(recipe.data_dir, "train")
    if not storage.list_files(train_dir, ".parquet"):
        raise PipelineError(f"no Parquet files under {train_dir}: rebuild the dataset with stage=augment")
    # Periodic evaluation (and best_) reads the validation split only: selecting on the test split would
    # select on the split stage=eval reports.
    if not recipe.options.eval_every:
        return False
    if not recipe.manifest.get("splits", {}).get("val", {}).get("examples", 0):
        log.info("the dataset has no validation split (task.num_val=0): no periodic evaluation, no best_")
        return False
    return True


def model_size(model_config) -> tuple[int, int]:
    """(network parameters, puzzle-embedding entries), counted on a model built without memory."""
    import torch

    from trm import TRM
    with torch.device("meta"):
        return TRM(model_config, verbose=False).num_params()


def summarize(run_dir: str) -> dict:
    records = read_metrics(run_dir)
    last = records[-1] if records else {}
    evals = [r for r in records if "eval/exact_accuracy" in r]
    later = records[len(records) // 2:]     # past the start (compiling, warm-up)
    mean = lambda key: (sum(r[key] for r in later if key in r) / n  # noqa: E731
                        if (n := sum(key in r for r in later)) else None)
    compiled = [r["train/compile_s"] for r in records if "train/compile_s" in r]
    return {
        "run_dir": run_dir, "step": last.get("step", 0), "lm_loss": last.get("train/lm_loss"),
        "eval_exact_accuracy": evals[-1]["eval/exact_accuracy"] if evals else None,
        "samples_per_s": mean("train/samples_per_s"), "tokens_per_s": mean("train/tokens_per_s"),
        "mfu": mean("train/mfu"), "compile_s": compiled[-1] if compiled else None,
        "latest_checkpoint": ckpt.latest_checkpoint(run_dir), "best_checkpoint": ckpt.best_checkpoint(run_dir),
    }


@contextlib.contextmanager
def _worker_start_timeout(seconds: float):
    """Ray Train's wait for a worker group's resources (its controller reads this variable from the driver's
    environment), at the start and after a worker group failed, e.g. with a lost node."""
    before = os.environ.get(WORKER_GROUP_START_TIMEOUT_ENV)
    os.environ[WORKER_GROUP_START_TIMEOUT_ENV] = str(seconds)
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(WORKER_GROUP_START_TIMEOUT_ENV, None)
        else:
            os.environ[WORKER_GROUP_START_TIMEOUT_ENV] = before


def _workers_never_started(err: Exception) -> bool:
    """Whether Ray Train gave up waiting for its workers' resources (its controller's startup timeout)."""
    from ray.train.v2._internal.exceptions import WorkerGroupStartupTimeoutError
    return isinstance(getattr(err, "controller_failure", None), WorkerGroupStartupTimeoutError)


def _cause(err: Exception) -> str:
    """The first worker's (or the controller's) exception as one line: its type and the last line it says."""
    failures = getattr(err, "worker_failures", None) or {}
    first = next(iter(failures.values()), None) or getattr(err, "controller_failure", None) or err
    said = [line.strip() for line in str(first).splitlines() if line.strip()]
    return (said[-1] if said else type(first).__name__)[:300]


def _print_summary(summary: dict) -> None:
    fmt_value = lambda v: "-" if v is None else (f"{v:.4g}" if isinstance(v, float) else str(v))  # noqa: E731
    print("\n".join(f"{key:>20}: {fmt_value(value)}" for key, value in summary.items()), flush=True)


def fit(recipe: TrainRecipe) -> dict:
    """Train as `recipe` says on Ray Train: resume from run_dir's newest readable checkpoint (as
    `<section>.resume` allows) or start from `recipe.start_weights()`; returns the run's summary."""
    from ray.train import CheckpointConfig, FailureConfig, LoggingConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    from pipeline.config import redact, saved_config

    cfg, t, section, run_dir = recipe.cfg, recipe.options, recipe.section, recipe.run_dir
    mode = t.resume
    latest, skipped = ckpt.resumable_checkpoint(run_dir)
    for path, reason in skipped:
        log.warning("skipping checkpoint %s: %s", path, reason)
    if latest and mode is False:
        raise PipelineError(f"run_dir={run_dir} already holds checkpoints (latest {latest}) and {section}.resume=false; "
                            f"choose another run_dir or delete it")
    if not latest and mode is True:
        unreadable = f" ({len(skipped)} unreadable: {skipped[0][0]}: {skipped[0][1]})" if skipped else ""
        raise PipelineError(f"{section}.resume=true but run_dir={run_dir} holds no complete checkpoint{unreadable}")
    step = 0
    if latest:
        step = _check_resumable(latest, recipe)
        if step >= t.steps:
            log.info("training in %s is complete (step %d); nothing to do", run_dir, step)
            summary = summarize(run_dir)
            _print_summary(summary)
            return summary
        log.info("resuming from %s (step %d of %d)%s", latest, step, t.steps,
                 f", the newest readable of {len(skipped) + 1}" if skipped else "")
    init_from = recipe.start_weights() if recipe.start_weights and not latest else None
    if isinstance(init_from, str):
        init_from = Checkpoint.read(init_from)

    init_ray(cfg.ray)
    use_gpu, cpus = _resources(t)
    storage_path, name = _storage(run_dir)
    has_eval = _check_splits(recipe)
    board = Board.remote()
    loop_config = LoopConfig(
        train=t, model=asdict(recipe.model_config), run_dir=run_dir, data_dir=recipe.data_dir,
        manifest=recipe.manifest, seed=int(cfg.seed), saved_config={**saved_config(cfg), section: redact(asdict(t))},
        has_eval=has_eval, logger=cfg.logger, resume_from=latest,
        skipped_checkpoints=tuple(posixpath.basename(p.rstrip("/")) for p, _ in skipped),
        init_from=init_from.shared() if init_from else None,
        cpus=cpus, progress_board=board)
    trainer = TorchTrainer(
        train_loop, train_loop_config={"loop": loop_config},
        scaling_config=ScalingConfig(num_workers=t.num_workers, use_gpu=use_gpu,
                                     resources_per_worker={"CPU": cpus, **({"GPU": 1} if use_gpu else {})},
                                     placement_strategy=t.placement_strategy),
        run_config=RunConfig(name=name, storage_path=storage_path,
                             # a worker group that cannot start within node_wait_s is not retried: it stops the run
                             failure_config=FailureConfig(max_failures=t.max_failures, controller_failure_limit=0),
                             checkpoint_config=CheckpointConfig(num_to_keep=t.keep_last),
                             logging_config=LoggingConfig(log_level=t.ray_log_level)),
    )
    network, table = model_size(recipe.model_config)
    log.info("training a TRM of %s network parameters (+ %s puzzle-embedding entries) for %d steps on %d "
             "worker(s) (%s, %.2g CPU each), batch %d, into %s", f"{network:,}", f"{table:,}", t.steps,
             t.num_workers, "GPU" if use_gpu else "CPU", cpus, t.global_batch_size, run_dir)
    try:
        with DriverProgress(board, t.steps, step, then_evaluates=recipe.then_evaluates), \
                _worker_start_timeout(t.node_wait_s):
            trainer.fit()
    except ray.train.TrainingFailedError as err:
        log.debug("training failed", exc_info=err)          # the whole traceback, in the log file only
        newest = ckpt.latest_checkpoint(run_dir)
        then = (f"rerun the same command to resume from {newest}" if newest else
                "rerun the same command to start again (no complete checkpoint yet)")
        if _workers_never_started(err):
            raise PipelineError(f"training stopped: its {t.num_workers} worker(s) found no room on the cluster within "
                                f"{section}.node_wait_s={t.node_wait_s:g} s (a lost node not replaced?); {then}") from None
        raise PipelineError(f"training failed after {t.max_failures} restart(s) ({section}.max_failures): "
                            f"{_cause(err)}; {then}") from None
    write_curves(run_dir)
    summary = summarize(run_dir)
    _print_summary(summary)
    return summary
