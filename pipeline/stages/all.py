"""`stage=all`: augment, train, then evaluate (eval for Sudoku/Maze, eval_arc for ARC) in sequence.

A stage whose complete output exists and was made from this command's inputs is skipped (the dataset
with the same fingerprint, the final checkpoint of `train.steps`, the metrics of the same checkpoint and
options), so rerunning after an interruption picks up where the last run stopped, and a changed input
reruns exactly the stages it affects. The run
ends with a summary read back from what the stages wrote, so it also describes skipped stages.
"""
import importlib
import logging
import posixpath
import time

from pipeline import storage, tasks

from pipeline.data import dataset_format

from pipeline.results import evaluations as eval_results

from pipeline.data import fingerprint

from pipeline.results import report

log = logging.getLogger(__name__)


def _eval_stage(cfg) -> str:
    return tasks.get(cfg.task.name).EVAL_STAGE


def _eval_dir(cfg, stage: str) -> str:
    """Where the evaluation stage writes: run_dir/eval/<name>/ or run_dir/eval_arc/<name>/."""
    return eval_results.output_dir(cfg, stage)


def stage_done(cfg, stage: str) -> bool:
    """Complete *and* made from this command's inputs. A stage that is not done runs; its own checks then
    stop with the differences named where its output would otherwise be replaced or mixed (a dataset
    made from another config without overwrite=true, checkpoints trained on another dataset)."""
    if stage == "augment":
        from pipeline.stages import augment
        return not cfg.overwrite and augment.changes_from_existing(cfg, fingerprint.dataset_fingerprint(cfg)) == []
    from pipeline.checkpoints import checkpoint as checkpoints
    from pipeline.infer import predictor
    if stage == "train":
        return checkpoints.training_complete(cfg.run_dir, int(cfg.train.steps))
    metrics_path = storage.join(_eval_dir(cfg, stage), "metrics.json")
    if not storage.exists(metrics_path):
        return False
    checkpoint = predictor.resolve_checkpoint(cfg.checkpoint, cfg.run_dir)
    wanted = fingerprint.evaluation_fingerprint(cfg, stage, checkpoint.path, checkpoint.step,
                                                dataset_format.read_manifest(cfg.data_dir))
    return storage.read_json(metrics_path).get("fingerprint") == wanted


def summary_lines(cfg, timings: dict) -> list:
    """What a user wants after the demo: data made, training, held-out accuracy per step, where files are."""
    from pipeline.train.recipe import summarize
    manifest = dataset_format.read_manifest(cfg.data_dir)
    trained = summarize(cfg.run_dir)
    stage = _eval_stage(cfg)
    metrics = storage.read_json(storage.join(_eval_dir(cfg, stage), "metrics.json"))
    took = lambda s: "skipped (already complete)" if timings.get(s) is None else f"{timings[s]:.0f} s"  # noqa: E731
    splits = manifest["splits"]
    lines = ["", "=" * 72, f"TRM pipeline summary ({cfg.task.name})",
             f"data      {splits['train']['examples']:,} training / {splits.get('val', {}).get('examples', 0):,} "
             f"validation / {splits['test']['examples']:,} test examples at {cfg.data_dir}   [{took('augment')}]",
             f"training  {trained['step']:,} steps, final lm loss {trained['lm_loss'] or float('nan'):.4f}, "
             f"{trained['samples_per_s'] or 0:.0f} samples/s (mean of the second half of training), {trained['tokens_per_s'] or 0:,.0f} tokens/s"
             + (f", MFU {trained['mfu']:.1%}" if trained["mfu"] is not None else "")
             + (f", compiled in {trained['compile_s']:.0f} s" if trained["compile_s"] is not None else "")
             + f"   [{took('train')}]"]
    if stage == "eval":
        per_step = "  ".join(f"{i + 1}:{v:.1%}" for i, v in enumerate(metrics["exact_accuracy_per_step"]))
        lines += [f"held-out  exact accuracy {metrics['exact_accuracy']:.1%} on {metrics['count']:,} puzzles "
                  f"[{took('eval')}]", f"          after each supervision step: {per_step}"]
    else:
        from pipeline.stages.eval_arc import shown_ks
        passes = "  ".join(f"pass@{k}: {metrics[f'pass@{k}']:.1%}" for k in shown_ks(metrics)[0])
        lines.append(f"ARC       {passes}   [{took('eval_arc')}]")
    page = storage.join(cfg.run_dir, report.PAGE)
    if storage.exists(page):
        lines.append(f"report    open in a browser: {page}")
    lines += [f"files     checkpoints, metrics.jsonl: {cfg.run_dir}",
              f"          training curves: {storage.join(cfg.run_dir, 'curves.png')}",
              f"          evaluation metrics and predictions: {_eval_dir(cfg, stage)}"]
    if metrics.get("rendered"):
        lines.append(f"          puzzle PNGs (answer after each step): {posixpath.dirname(metrics['rendered'][0])}")
    results = eval_results.read_results(cfg.run_dir, stage)
    if len(results) > 1:
        lines += [f"evaluations kept in run_dir/{stage}/ (plain and each test-time setting, per checkpoint):",
                  *("          " + line for line in eval_results.table_lines(results, stage))]
    lines += [f"wall time {sum(t for t in timings.values() if t):.0f} s", "=" * 72]
    return lines


def run(cfg) -> dict:
    timings = {}
    for stage in ("augment", "train", _eval_stage(cfg)):
        if stage_done(cfg, stage):
            log.info("stage %s: complete output found, skipping", stage)
            timings[stage] = None
            continue
        start = time.perf_counter()
        importlib.import_module(f"pipeline.stages.{stage}").run(cfg)
        timings[stage] = time.perf_counter() - start
    print("\n".join(summary_lines(cfg, timings)), flush=True)
    return {"timings": timings}
