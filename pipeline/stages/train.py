"""`stage=train`: train TRM on the dataset in `data_dir` with Ray Train, checkpointing to `run_dir`.

`python -m pipeline.run stage=train task=sudoku data_dir=... run_dir=... train.num_workers=2 model.hidden_size=64`

`run_dir` (local or `s3://bucket/prefix/name`) is Ray Train's run folder (storage_path = its parent,
name = its last part): checkpoints, `metrics.jsonl` and `curves.png` live there. Rerunning the same
command continues from the latest checkpoint (`train.resume=auto`); `train.init_from=` starts a fresh run
from another run's weights. How a run is resumed, resourced and reported is `pipeline.train.recipe`'s.
"""
from dataclasses import asdict

from omegaconf import OmegaConf

from pipeline.checkpoints import checkpoint as ckpt
from pipeline.data import dataset_format as fmt
from pipeline import storage
from pipeline.checkpoints import reference as reference_checkpoint
from pipeline.checkpoints import reference_data
from pipeline.results import report
from pipeline.errors import PipelineError
from pipeline.options import Options
from pipeline.train.recipe import TrainRecipe, fit


def _init_from(cfg, model_config, manifest: dict) -> str:
    """The checkpoint folder `train.init_from=` names (a reference run is imported into run_dir first; an ARC one
    gets its table rows fitted to this dataset by name), checked to hold the configured model."""
    source = storage.to_absolute(str(cfg.train.init_from))
    path = reference_checkpoint.prepare(source, cfg.run_dir, cfg.data_dir, cfg.task.get("identifiers"),
                                        require_test=False, given=reference_data.given(cfg))
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


def run(cfg, then_evaluates: float | None = None) -> dict:
    """`then_evaluates`: the examples the evaluation after training will run (stage=all), for the run's ETA."""
    manifest = fmt.read_task_manifest(cfg)
    model_config = ckpt.model_config(OmegaConf.to_container(cfg.model, resolve=True), manifest)
    options = Options.of(cfg).train
    start = (lambda: _init_from(cfg, model_config, manifest)) if options.init_from else None
    summary = fit(TrainRecipe(cfg=cfg, options=options, section="train",
                              data_dir=cfg.data_dir, manifest=manifest, run_dir=cfg.run_dir,
                              model_config=model_config, start_weights=start, then_evaluates=then_evaluates))
    report.write_after_stage(cfg)
    return summary
