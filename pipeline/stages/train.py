"""`stage=train`: train TRM on the dataset in `data_dir` with Ray Train, checkpointing to `run_dir`.

`python -m pipeline.run stage=train task=sudoku data_dir=... run_dir=... train.num_workers=2 model.hidden_size=64`

`run_dir` (local or `s3://bucket/prefix/name`) is Ray Train's run folder (storage_path = its parent,
name = its last part): checkpoints, `metrics.jsonl` and `curves.png` live there. Rerunning the same
command continues from the latest checkpoint (`train.resume=auto`); `train.init_from=` starts a fresh run
from another run's weights. How a run is resumed, resourced and reported is `pipeline.train.recipe`'s.
"""
from omegaconf import OmegaConf

from pipeline.checkpoints import checkpoint as ckpt
from pipeline.checkpoints.checkpoint import Checkpoint
from pipeline.data import dataset_format as fmt
from pipeline.checkpoints import reference_data
from pipeline.results import report
from pipeline.train.recipe import TrainRecipe, fit


def _init_from(cfg, model_config) -> Checkpoint:
    """The checkpoint `train.init_from=` names (a reference run is converted in memory; an ARC one gets its table
    rows fitted to this dataset by name), checked to hold the configured model."""
    checkpoint = Checkpoint.open(cfg.train.init_from, "train.init_from", cfg.data_dir, cfg.task.get("identifiers"),
                                 require_test=False, given=reference_data.given(cfg))
    checkpoint.check_model(model_config, f"train.init_from={cfg.train.init_from}")
    return checkpoint


def run(cfg) -> dict:
    manifest = fmt.read_task_manifest(cfg)
    model_config = ckpt.model_config(OmegaConf.to_container(cfg.model, resolve=True), manifest)
    start = (lambda: _init_from(cfg, model_config)) if cfg.train.init_from else None
    summary = fit(TrainRecipe(cfg=cfg, options=OmegaConf.to_container(cfg.train, resolve=True), section="train",
                              data_dir=cfg.data_dir, manifest=manifest, run_dir=cfg.run_dir,
                              model_config=model_config, start_weights=start))
    report.write_after_stage(cfg)
    return summary
