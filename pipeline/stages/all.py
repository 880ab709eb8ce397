"""`stage=all`: augment, train, then evaluate (eval for Sudoku/Maze, eval_arc for ARC) in sequence.

A stage whose complete output exists and was made from this command's inputs is skipped (the dataset
with the same fingerprint, the final checkpoint of `train.steps`, the metrics of the same checkpoint and
options), so rerunning after an interruption picks up where the last run stopped, and a changed input
reruns exactly the stages it affects. The run
ends with a summary read back from what the stages wrote, so it also describes skipped stages.
"""
import importlib
import posixpath
import time

from pipeline import progress, storage, tasks
from pipeline.data import dataset_format, fingerprint
from pipeline.options import Options
from pipeline.results import evaluations as eval_results
from pipeline.results import report


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
        return checkpoints.training_complete(cfg.run_dir, Options.of(cfg).train.steps)
    metrics_path = eval_results.metrics_path(_eval_dir(cfg, stage))
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
    metrics = storage.read_json(eval_results.metrics_path(_eval_dir(cfg, stage)))
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


def evaluation_examples(cfg, stage: str) -> float | None:
    """The evaluation stage's work in the periodic evaluation's unit (one example through N_sup supervision
    steps): its test examples (ARC: the versions `eval_arc.num_aug` keeps, as a share of the versions built),
    times test-time versions, copies and supervision steps over N_sup. None for an `eval.source=` file
    (its size is not known before it is read)."""
    options = Options.of(cfg)
    e = options.eval
    if stage == "eval" and e.source:
        return None
    manifest = dataset_format.read_manifest(cfg.data_dir)
    examples = float(manifest["splits"]["test"]["examples"])
    n_sup = int(cfg.model.halt_max_steps)
    steps = (e.max_steps if e.max_steps is not None else n_sup) / n_sup
    if stage == "eval":
        limited = min(examples, e.limit) if e.limit else examples
        return limited * e.tta * e.trajectories * steps
    num_aug = options.eval_arc.num_aug
    kept = 1.0 if num_aug is None else min(1.0, (num_aug + 1) / (int(manifest.get("num_aug") or 0) + 1))
    return examples * kept * steps


def evaluation_estimate(records: list, examples: float | None) -> float | None:
    """Seconds the evaluation stage will take (`progress.evaluation_stage_seconds`) from the training's records:
    `examples` at the last periodic evaluation's seconds per example, plus its compile seconds."""
    timed = [r for r in records if progress.evaluation_seconds_per_example(r) is not None]
    compiled = [r["eval/compile_s"] for r in records if "eval/compile_s" in r]
    return progress.evaluation_stage_seconds(progress.evaluation_seconds_per_example(timed[-1]) if timed else None,
                                             compiled[-1] if compiled else 0.0, examples)


def stage_line(position: int, count: int, stage: str, event: str, run_s: float, left_s: float | None = None) -> str:
    """`[all 3/3] eval started; run 5 min 12 s so far, about 40 s left (plus start-up)`: one line as each stage
    starts or ends (`left_s`: `evaluation_estimate`, which leaves Ray's start-up out)."""
    line = f"[all {position}/{count}] {stage} {event}; run {progress.duration(run_s)} so far"
    return line + (f", about {progress.duration(left_s)} left (plus start-up)" if left_s is not None else "")


def run(cfg) -> dict:
    """Each stage's start and end print a line (`stage_line`) with the run's time so far. The time left is
    shown where it can be estimated: while training, on the training line (`progress.DriverProgress`: the
    training's ETA plus the evaluation stage's estimate); when the evaluation stage starts, its estimate
    (`evaluation_estimate`). Nothing is guessed before training has timed its steps."""
    from pipeline.train.metrics_log import read_metrics
    timings, began = {}, time.perf_counter()
    stages = ("augment", "train", _eval_stage(cfg))
    elapsed = lambda: time.perf_counter() - began  # noqa: E731
    for position, stage in enumerate(stages, 1):
        if stage_done(cfg, stage):
            print(stage_line(position, len(stages), stage, "skipped (complete output found)", elapsed()), flush=True)
            timings[stage] = None
            continue
        options, left = {}, None
        if stage == "train":
            options["then_evaluates"] = evaluation_examples(cfg, stages[-1])
        elif stage == stages[-1]:
            left = evaluation_estimate(read_metrics(cfg.run_dir), evaluation_examples(cfg, stage))
        print(stage_line(position, len(stages), stage, "started", elapsed(), left), flush=True)
        start = time.perf_counter()
        importlib.import_module(f"pipeline.stages.{stage}").run(cfg, **options)
        timings[stage] = time.perf_counter() - start
        print(stage_line(position, len(stages), stage, f"done in {progress.duration(timings[stage])}", elapsed()),
              flush=True)
    print("\n".join(summary_lines(cfg, timings)), flush=True)
    return {"timings": timings}
