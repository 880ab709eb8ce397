"""`stage=train`: train TRM on the dataset in `data_dir` with Ray Train, checkpointing to `run_dir`.

`python -m pipeline.run stage=train task=sudoku data_dir=... run_dir=... train.num_workers=2 model.hidden_size=64`

`run_dir` (local or `s3://bucket/prefix/name`) is Ray Train's run folder (storage_path = its parent,
name = its last part): checkpoints, `metrics.jsonl` and `curves.png` live there. Rerunning the same
command continues from the latest checkpoint (`train.resume=auto`); `train.init_from=` starts a fresh run
from another run's weights. How a run is resumed, resourced and reported is `pipeline.train.recipe`'s.
"""
from omegaconf import OmegaConf

from pipeline.checkpoints import checkpoint as ckpt
from pipeline.checkpoints import reference_data
from pipeline.checkpoints.checkpoint import Checkpoint
from pipeline.data import dataset_format as fmt
from pipeline.options import Options
from pipeline.results import report
from pipeline.train.recipe import TrainRecipe, fit


def _init_from(cfg, model_config) -> Checkpoint:
    """The checkpoint `train.init_from=` names (a reference run is converted in memory; an ARC one gets its table
    rows fitted to this dataset by name), checked to hold the configured model."""
    source = Options.of(cfg).train.init_from
    checkpoint = Checkpoint.open(source, "train.init_from", cfg.data_dir, cfg.task.get("identifiers"),
                                 require_test=False, given=reference_data.given(cfg))
    checkpoint.check_model(model_config, f"train.init_from={source}")
    return checkpoint


def run(cfg, then_evaluates: float | None = None) -> dict:
    """`then_evaluates`: the examples the evaluation after training will run (stage=all), for the run's ETA."""
    manifest = fmt.read_task_manifest(cfg)
    model_config = ckpt.model_config(OmegaConf.to_container(cfg.model, resolve=True), manifest)
    options = Options.of(cfg).train
    start = (lambda: _init_from(cfg, model_config)) if options.init_from else None
    summary = fit(TrainRecipe(cfg=cfg, options=options, section="train",
                              data_dir=cfg.data_dir, manifest=manifest, run_dir=cfg.run_dir,
                              model_config=model_config, start_weights=start, then_evaluates=then_evaluates))
    report.write_after_stage(cfg)
    return summary
