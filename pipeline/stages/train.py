"""`stage=train`: train TRM on the dataset in `data_dir` with Ray Train, checkpointing to `run_dir`.

`python -m pipeline.run stage=train task=sudoku data_dir=... run_dir=... train.num_workers=2 model.hidden_size=64`

`run_dir` (local or `s3://bucket/prefix/name`) is Ray Train's run folder (storage_path = its parent,
name = its last part): checkpoints, `metrics.jsonl` and `curves.png` live there. Rerunning the same
command continues from the latest checkpoint (`train.resume=auto`). The per-worker loop is
`pipeline.train_loop.train_loop`; the checkpoint layout is in `pipeline.checkpoints`.

Memory of the puzzle-embedding table (float32, replicated on every worker and saved in each
checkpoint): num_puzzle_identifiers x hidden_size x 4 bytes, e.g. ARC-AGI-1 aug-1000 876,406 x 512 x 4
= 1.8 GB (ARC-AGI-2 about the same per id), plus up to global_batch_size rows of gradient per step;
Sudoku and Maze use 1 row per puzzle (a few MB).
"""
import logging
import posixpath
from dataclasses import asdict

import ray
from omegaconf import OmegaConf

from pipeline import checkpoints as ckpt
from pipeline import dataset_format as fmt
from pipeline import fingerprint, reference_checkpoint, storage
from pipeline.errors import PipelineError
from pipeline.metrics_log import read_metrics, write_curves
from pipeline.progress import Board, DriverProgress
from pipeline.ray_setup import init_ray
from pipeline.train_loop import train_loop

log = logging.getLogger(__name__)


def _resume_mode(value) -> str:
    mode = {True: "true", False: "false"}.get(value, str(value).lower())
    if mode not in ("auto", "true", "false"):
        raise PipelineError(f"train.resume={value!r}: use auto, true or false")
    return mode


def _check_options(t) -> None:
    workers, batch = int(t.num_workers), int(t.global_batch_size)
    if workers < 1 or batch < 1 or int(t.steps) < 1:
        raise PipelineError("train.num_workers, train.global_batch_size and train.steps must be positive")
    if batch % workers:
        raise PipelineError(f"train.global_batch_size={batch} must be a multiple of train.num_workers={workers} "
                            f"(each worker holds an equal share of the batch)")


def _check_resumable(path: str, cfg, model_config, manifest: dict) -> int:
    """Check that the checkpoint fits this run, from its small JSON files (the weights are the workers' to
    read: at ARC scale state.pt holds 1.8 GB); return its step."""
    saved, saved_manifest, meta = (storage.read_json(storage.join(path, name))
                                   for name in (ckpt.CONFIG, ckpt.MANIFEST, ckpt.META))
    ckpt.check_fits(path, saved_manifest, manifest, f"data_dir={cfg.data_dir}")
    trained_on, here = saved_manifest.get("fingerprint"), manifest.get("fingerprint")
    changed = fingerprint.differences(trained_on, here) if trained_on and here else []
    if changed:
        raise PipelineError(f"checkpoint {path} was trained on another dataset than the one at {cfg.data_dir} "
                            f"({fingerprint.describe(changed)}); use another run_dir for this dataset, or the "
                            f"data_dir it was trained on")
    saved_model = ckpt.model_config(saved["model"], saved_manifest, source=f"checkpoint {path}: model")
    if saved_model != model_config:
        diff = {k: (v, getattr(model_config, k)) for k, v in asdict(saved_model).items()
                if getattr(model_config, k) != v}
        raise PipelineError(f"checkpoint {path} has a different model (saved, requested): {diff}; "
                            f"use another run_dir or the saved model.* values")
    for key in ("global_batch_size", "ema"):
        if saved["train"][key] != cfg.train[key]:
            raise PipelineError(f"checkpoint {path} was trained with train.{key}={saved['train'][key]}, "
                                f"not {cfg.train[key]}; resuming exactly needs the same value")
    if int(meta["world_size"]) != int(cfg.train.num_workers):
        raise PipelineError(f"checkpoint {path} was written by {meta['world_size']} workers; set "
                            f"train.num_workers={meta['world_size']} to resume it (each worker's carry and data "
                            f"position are saved)")
    return int(meta["step"])


def _init_from(cfg, model_config, manifest: dict) -> str:
    """The checkpoint folder `train.init_from=` names (a reference run is imported into run_dir first; an ARC one
    gets its table rows fitted to this dataset by name), checked to hold the configured model."""
    source = storage.to_absolute(str(cfg.train.init_from))
    path = reference_checkpoint.prepare(source, cfg.run_dir, cfg.data_dir, cfg.task.get("identifiers"),
                                        require_test=False)
    if not ckpt.is_complete(path, need_ranks=False):
        raise PipelineError(f"train.init_from={cfg.train.init_from}: neither a checkpoint folder ({ckpt.META} and "
                            f"{ckpt.STATE}) nor a reference run")
    saved = storage.read_json(storage.join(path, ckpt.CONFIG))
    saved_manifest = storage.read_json(storage.join(path, ckpt.MANIFEST))
    saved_model = ckpt.model_config(saved["model"], saved_manifest, source=f"train.init_from {path}: model")
    if saved_model != model_config:
        diff = {k: (v, getattr(model_config, k)) for k, v in asdict(saved_model).items() if getattr(model_config, k) != v}
        overrides = " ".join(f"model.{k}={v}" for k, (v, _) in diff.items() if k not in ckpt.MANIFEST_FIELDS)
        raise PipelineError(f"train.init_from={cfg.train.init_from} holds another model (its value, configured): "
                            f"{diff}; pass {overrides or 'data of the same shape (data_dir=)'}")
    return path


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


def _resources(t) -> tuple[bool, float]:
    use_gpu = t.use_gpu
    if str(use_gpu).lower() == "auto":
        use_gpu = ray.cluster_resources().get("GPU", 0) > 0
    cpus = t.cpus_per_worker
    if str(cpus).lower() == "auto":
        # Training reads its rows without Ray Data (pipeline.split_reader), so nothing else needs CPUs while it runs.
        nodes = [node["Resources"].get("CPU", 0) for node in ray.nodes() if node.get("Alive")]
        cpus = 1 if use_gpu else whole_cpus_per_worker(nodes, int(t.num_workers))
    return bool(use_gpu), float(cpus)


def whole_cpus_per_worker(node_cpus: list, workers: int) -> float:
    """The most whole CPUs c such that `workers` workers of c CPUs fit on nodes with these CPU counts; a share
    of a CPU when there are more workers than CPUs."""
    for c in range(int(max(node_cpus, default=1)), 0, -1):
        if sum(int(n // c) for n in node_cpus) >= workers:
            return float(c)
    return max(0.1, int(10 * sum(node_cpus) / workers) / 10)


def _check_splits(cfg, manifest: dict) -> bool:
    """Check the train split is there; return whether periodic evaluation runs (on the validation split)."""
    train_dir = storage.join(cfg.data_dir, "train")
    if not storage.list_files(train_dir, ".parquet"):
        raise PipelineError(f"no Parquet files under {train_dir}: rebuild the dataset with stage=augment")
    # Periodic evaluation (and best_) reads the validation split only: selecting on the test split would
    # select on the split stage=eval reports.
    if int(cfg.train.eval_every or 0) <= 0:
        return False
    if not manifest.get("splits", {}).get("val", {}).get("examples", 0):
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
    speeds = [r["train/samples_per_s"] for r in records[len(records) // 2:] if "train/samples_per_s" in r]
    return {
        "run_dir": run_dir, "step": last.get("step", 0), "lm_loss": last.get("train/lm_loss"),
        "eval_exact_accuracy": evals[-1]["eval/exact_accuracy"] if evals else None,
        "samples_per_s": sum(speeds) / len(speeds) if speeds else None,
        "latest_checkpoint": ckpt.latest_checkpoint(run_dir), "best_checkpoint": ckpt.best_checkpoint(run_dir),
    }


def _print_summary(summary: dict) -> None:
    fmt_value = lambda v: "-" if v is None else (f"{v:.4g}" if isinstance(v, float) else str(v))  # noqa: E731
    print("\n".join(f"{key:>20}: {fmt_value(value)}" for key, value in summary.items()), flush=True)


def run(cfg) -> dict:
    from ray.train import CheckpointConfig, FailureConfig, LoggingConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    from pipeline.config import saved_config

    manifest = fmt.read_task_manifest(cfg)
    t = cfg.train
    _check_options(t)
    model_config = ckpt.model_config(OmegaConf.to_container(cfg.model, resolve=True), manifest)
    mode = _resume_mode(t.resume)
    run_dir = cfg.run_dir
    latest, skipped = ckpt.resumable_checkpoint(run_dir)
    for path, reason in skipped:
        log.warning("skipping checkpoint %s: %s", path, reason)
    if latest and mode == "false":
        raise PipelineError(f"run_dir={run_dir} already holds checkpoints (latest {latest}) and train.resume=false; "
                            f"choose another run_dir or delete it")
    if not latest and mode == "true":
        unreadable = f" ({len(skipped)} unreadable: {skipped[0][0]}: {skipped[0][1]})" if skipped else ""
        raise PipelineError(f"train.resume=true but run_dir={run_dir} holds no complete checkpoint{unreadable}")
    step = 0
    if latest:
        step = _check_resumable(latest, cfg, model_config, manifest)
        if step >= int(t.steps):
            log.info("training in %s is complete (step %d); nothing to do", run_dir, step)
            summary = summarize(run_dir)
            _print_summary(summary)
            return summary
        log.info("resuming from %s (step %d of %d)%s", latest, step, int(t.steps),
                 f", the newest readable of {len(skipped) + 1}" if skipped else "")
    init_from = _init_from(cfg, model_config, manifest) if t.init_from and not latest else None

    init_ray(cfg.ray)
    use_gpu, cpus = _resources(t)
    storage_path, name = _storage(run_dir)
    has_eval = _check_splits(cfg, manifest)
    board = Board.remote()
    loop_config = {
        "train": OmegaConf.to_container(t, resolve=True), "model": asdict(model_config), "run_dir": run_dir,
        "seed": int(cfg.seed), "saved_config": saved_config(cfg), "manifest": manifest, "has_eval": has_eval,
        "logger": cfg.logger, "wandb_project": t.wandb_project, "init_from": init_from,
        "resume_from": latest, "skipped_checkpoints": [posixpath.basename(p.rstrip("/")) for p, _ in skipped],
        "progress_board": board, "data_dir": cfg.data_dir, "cpus": cpus,
    }
    trainer = TorchTrainer(
        train_loop, train_loop_config=loop_config,
        scaling_config=ScalingConfig(num_workers=int(t.num_workers), use_gpu=use_gpu,
                                     resources_per_worker={"CPU": cpus, **({"GPU": 1} if use_gpu else {})},
                                     placement_strategy=t.placement_strategy),
        run_config=RunConfig(name=name, storage_path=storage_path,
                             failure_config=FailureConfig(max_failures=int(t.max_failures)),
                             checkpoint_config=CheckpointConfig(num_to_keep=t.keep_last),
                             logging_config=LoggingConfig(log_level=str(t.ray_log_level).upper())),
    )
    network, table = model_size(model_config)
    log.info("training a TRM of %s network parameters (+ %s puzzle-embedding entries) for %d steps on %d "
             "worker(s) (%s, %.2g CPU each), batch %d, into %s", f"{network:,}", f"{table:,}", int(t.steps),
             int(t.num_workers), "GPU" if use_gpu else "CPU", cpus, int(t.global_batch_size), run_dir)
    try:
        with DriverProgress(board, int(t.steps), step):
            trainer.fit()
    except ray.train.TrainingFailedError:
        log.error("training failed; rerun the same command to continue from the latest checkpoint in %s", run_dir)
        raise
    write_curves(run_dir)
    summary = summarize(run_dir)
    _print_summary(summary)
    return summary
