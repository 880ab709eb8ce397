"""Entry point: `python -m pipeline.run stage=augment|train|eval|eval_arc|all|import|export|adapt task=sudoku|maze|arc ...`.

With no arguments it runs the CPU demo (stage=all on a small generated Sudoku).
"""
import importlib
import logging
import os
import sys

# Without a terminal Ray Data logs every operator's progress at INFO; the stages print their own
# progress and summaries. Read when ray.data is first imported, and inherited by local Ray workers.
os.environ.setdefault("RAY_DATA_LOG_LEVEL", "WARNING")

import hydra
from omegaconf import DictConfig

from pipeline import disk_space, run_lock
from pipeline.config import resolve_config
from pipeline.errors import PipelineError

log = logging.getLogger("pipeline")

STAGES = ("augment", "train", "eval", "eval_arc", "all", "import", "export", "adapt")


def run_stage(cfg: DictConfig):
    """Resolve paths, then call `pipeline.stages.<stage>.run(cfg)`; what tests call instead of the CLI."""
    if cfg.stage not in STAGES:
        raise PipelineError(f"stage={cfg.stage!r} is not one of {', '.join(STAGES)}")
    cfg = resolve_config(cfg)
    module = importlib.import_module(f"pipeline.stages.{cfg.stage}")
    with disk_space.reported(cfg), run_lock.hold(cfg):     # a full disk as one line; one command per folder
        return module.run(cfg)


@hydra.main(config_path="conf", config_name="config", version_base=None)
def main(cfg: DictConfig) -> None:
    try:
        run_stage(cfg)
    except PipelineError as err:
        log.error("error: %s", err)
        sys.exit(2)


if __name__ == "__main__":
    main()
