"""`stage=all`: augment, train, then evaluate (eval for Sudoku/Maze, eval_arc for ARC) in sequence.

A stage whose complete output already exists is skipped (the dataset manifest, the final checkpoint, the
evaluation metrics), so rerunning after an interruption picks up where the last run stopped.
"""
import logging
import time

from pipeline import dataset_format, storage

log = logging.getLogger(__name__)


def _eval_stage(cfg) -> str:
    return "eval_arc" if cfg.task.name == "arc" else "eval"


def stage_done(cfg, stage: str) -> bool:
    if stage == "augment":
        return dataset_format.dataset_complete(cfg.data_dir)
    if stage == "train":
        from pipeline.checkpoints import training_complete
        return training_complete(cfg.run_dir, int(cfg.train.steps))
    return storage.exists(storage.join(cfg.run_dir, stage, "metrics.json"))


def run(cfg) -> dict:
    import importlib
    results, timings = {}, {}
    for stage in ("augment", "train", _eval_stage(cfg)):
        if stage_done(cfg, stage):
            log.info("stage %s: complete output found, skipping", stage)
            timings[stage] = None
            continue
        start = time.perf_counter()
        results[stage] = importlib.import_module(f"pipeline.stages.{stage}").run(cfg)
        timings[stage] = time.perf_counter() - start
    results["timings"] = timings
    return results
