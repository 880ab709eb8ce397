"""Entry point: `trm-pipeline stage=augment|train|eval|eval_arc|all|import|export|adapt|solve|report task=sudoku|maze|arc
...` (the console script the install adds), or `python -m pipeline.run ...` (see `pipeline/__init__.py` for what
each form protects against).

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
from pipeline.next_steps import next_line
from pipeline.options_check import check_command_line, check_task_source

log = logging.getLogger("pipeline")

STAGES = ("augment", "train", "eval", "eval_arc", "all", "import", "export", "adapt", "solve", "report")


def run_stage(cfg: DictConfig):
    """Resolve paths, then call `pipeline.stages.<stage>.run(cfg)`; what tests call instead of the CLI."""
    if cfg.stage not in STAGES:
        raise PipelineError(f"stage={cfg.stage!r} is not one of {', '.join(STAGES)}")
    # the options that choose folders, as the user gave them: the next command repeats them
    given = {key: cfg[key] for key in ("data_dir", "run_dir") if cfg.get(key)}
    if cfg.task.name != "sudoku":
        given = {"task": cfg.task.name, **given}
    cfg = resolve_config(cfg)
    check_task_source(cfg)
    module = importlib.import_module(f"pipeline.stages.{cfg.stage}")
    with disk_space.reported(cfg), run_lock.hold(cfg):     # a full disk as one line; one command per folder
        result = module.run(cfg)
    line = next_line(cfg, given)
    if line:
        print(line, flush=True)
    return result


@hydra.main(config_path="conf", config_name="config", version_base=None)
def main(cfg: DictConfig) -> None:
    try:
        run_stage(cfg)
    except PipelineError as err:
        log.error("error: %s", err)
        sys.exit(2)


if __name__ == "__main__":
    try:
        check_command_line(sys.argv[1:])   # before Hydra, which would accept `+train.step=3` and ignore it
    except PipelineError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
    main()
