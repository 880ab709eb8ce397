"""`stage=eval`: exact and token accuracy of one checkpoint on Sudoku or maze test puzzles.

`python -m pipeline.run stage=eval task=sudoku [checkpoint=best|latest|<folder>] [eval.source=<csv>] [eval.render=4]`

One checkpoint in, `run_dir/eval/<name>/` out, `<name>` naming the settings that differ from the plain pass
(`pipeline.results.evaluations`: `plain`, `tta8`, `best-k8-noise0.1`...; the folder of the same name is replaced, the
others kept), and a row in the results table `run_dir/eval/results.json`: `predictions/part-<k>.parquet` (one row
per puzzle, in the test split's (group_id, aug_index) order: tokens, prediction, halt logit, steps, correctness;
with `eval.record_steps`, every copy's answer and q_halt after every step), `render/*.png` with `eval.render=N`, and
`metrics.json`, written last. The puzzles are `data_dir/test`, or with `eval.source=` any
Sudoku-Extreme / Maze-Hard style CSV (a file, a folder's `test.csv`, `s3://`, `hf:`), encoded as the
data stage does for the checkpoint's grid size.

Test-time compute (`pipeline.infer.test_time`): `eval.max_steps` supervision steps instead of N_sup,
`eval.trajectories` copies with latent noise `eval.noise`, `eval.tta` transformed versions, and the
selectors `eval.select` (a name or a list, all scored from the same copies, the first writing `preds`).
metrics.json has one entry per selector under `settings` (exact accuracy, oracle rate: some copy was right
at some step, and inference seconds per puzzle); per-step metrics are means over all copies.
"""
import logging
import time

import numpy as np
import ray

from pipeline import storage, tasks
from pipeline.checkpoints import reference_data
from pipeline.checkpoints.checkpoint import Checkpoint
from pipeline.data import dataset_format as fmt
from pipeline.data import fingerprint, sources
from pipeline.errors import PipelineError
from pipeline.infer import predictor, test_time
from pipeline.options import EvalOptions, Options
from pipeline.ray_setup import in_input_order, init_ray
from pipeline.results import evaluations, render, report

log = logging.getLogger(__name__)

INPUT_COLUMNS = ["inputs", "labels", "puzzle_identifier", "group_id", "aug_index"]
CSV_CHUNK = 4096
PREDICTIONS_PER_FILE = 100_000   # puzzles per predictions file, in (group_id, aug_index) order


def run(cfg) -> dict:
    e = Options.of(cfg).eval
    checkpoint = predictor.resolve_checkpoint(cfg.checkpoint, cfg.run_dir, given=reference_data.given(cfg))
    saved_manifest, path = checkpoint.manifest, checkpoint.path
    task = saved_manifest.get("task")
    module = tasks.get(task)
    if module.EVAL_STAGE != "eval":
        raise PipelineError(f"checkpoint {path} is a {task!r} model, which stage={module.EVAL_STAGE} scores; "
                            f"stage=eval scores {', '.join(t for t in tasks.names() if tasks.get(t).EVAL_STAGE == 'eval')}")
    settings = test_time.settings_from_options(e, cfg.seed, task)
    init_ray(cfg.ray)
    data_manifest = {}
    if e.source:
        source = e.source
        ds = csv_dataset(source, module, saved_manifest)
    else:
        source = storage.join(cfg.data_dir, "test")
        data_manifest = fmt.read_task_manifest(cfg)
        checkpoint.check_fits(data_manifest, f"data_dir={cfg.data_dir}")
        if not storage.list_files(source, ".parquet"):
            raise PipelineError(f"no test puzzles under {source}: rebuild the dataset with stage=augment")
        ds = fmt.read_ray(source, INPUT_COLUMNS)
    if e.limit:
        ds = ds.limit(e.limit)
    ds = in_input_order(ds)      # the same batches on every run: the same float rounding

    name = evaluations.evaluation_name(cfg)
    out_dir = evaluations.output_dir(cfg)
    storage.remove(out_dir)   # nothing from an earlier evaluation with these settings survives; others are kept
    start = time.perf_counter()
    predicted = predictor.predict(ds, checkpoint, e, passthrough=INPUT_COLUMNS, settings=settings, task=task,
                                  size=int(saved_manifest["size"]), record_steps=e.record_steps)
    if module.EXTRA_RATES:
        predicted = predicted.map_batches(module.score_batch, batch_format="numpy",
                                          fn_kwargs=dict(size=int(saved_manifest["size"])))
    predicted = predicted.materialize()
    wall_seconds = time.perf_counter() - start
    fmt.write_split(predicted.drop_columns([*predictor.STEP_SUMS, predictor.SECONDS]), out_dir, "predictions",
                    groups_per_file=PREDICTIONS_PER_FILE)
    metrics = summarize(_totals(predicted, settings.select, module.EXTRA_RATES), module.EXTRA_RATES, settings)
    metrics.update(task=task, checkpoint=path, checkpoint_step=checkpoint.step, source=source,
                   ema=e.ema, halt_on_q=e.halt_on_q, wall_seconds=wall_seconds,
                   fingerprint=fingerprint.evaluation_fingerprint(cfg, "eval", path, checkpoint.step, data_manifest))
    if e.render:
        metrics["rendered"] = render_puzzles(ds, checkpoint, e, task, out_dir)
    metrics["name"] = name
    storage.write_json_atomic(evaluations.metrics_path(out_dir), metrics)
    print_table(metrics, module.EXTRA_RATES)
    results = evaluations.record(cfg.run_dir, name, metrics)
    print("\n".join([f"results table ({evaluations.results_path(cfg.run_dir)}):", *evaluations.table_lines(results),
                     f"this evaluation: {out_dir}"]), flush=True)
    report.write_after_stage(cfg)
    return metrics


# ---------------------------------------------------------------------------------------------------
# Puzzles from a CSV file

def csv_dataset(source: str, module, saved_manifest: dict):
    """Rows of a Sudoku-Extreme / Maze-Hard CSV encoded for the checkpoint's grid size, validated first."""
    size, task = int(saved_manifest["size"]), saved_manifest["task"]
    loaded = sources.read_puzzle_source(storage.to_absolute(source))
    rows = loaded["test"] if "test" in loaded else loaded["all"]
    # a row with an empty answer is answered, not scored (its labels stay 0: nothing to score against)
    unanswered = np.array([not a.strip() for a in rows.answer], dtype=bool)
    answered = np.flatnonzero(~unanswered)
    reasons = np.full(len(rows), "", dtype=object)
    if answered.size:
        reasons[answered] = module.csv_reasons(rows.take(answered), size)
    if unanswered.any():
        reasons[unanswered] = module.question_reasons([q for q, u in zip(rows.question, unanswered) if u], size)
    sources.raise_first_bad(rows, reasons, option="eval.source: ", note=f" (the checkpoint's {task} size is {size})")
    if not len(rows):
        raise PipelineError(f"eval.source: {rows.origin} holds no puzzles")
    inputs = np.zeros((len(rows), size * size), np.uint8)
    labels = np.zeros_like(inputs)
    if answered.size:
        inputs[answered], labels[answered] = module.encode_csv(rows.take(answered), size)
    if unanswered.any():
        inputs[unanswered] = module.encode_questions([q for q, u in zip(rows.question, unanswered) if u], size)
        log.info("eval.source: %d of %d puzzles have no answer: they are answered (predictions/), not scored",
                 unanswered.sum(), len(rows))
    tables = []
    for start in range(0, len(rows), CSV_CHUNK):
        part = slice(start, start + CSV_CHUNK)
        n = len(inputs[part])
        tables.append(fmt.arrow_table({
            "inputs": inputs[part], "labels": labels[part], "puzzle_identifier": np.zeros(n, np.int32),
            "group_id": np.arange(start, start + n, dtype=np.int64),   # row of the file, from 0
            "aug_index": np.zeros(n, np.int32)}))
    log.info("eval.source: %d %s puzzle%s from %s", len(rows), task, "s" * (len(rows) != 1), rows.origin)
    return ray.data.from_arrow(tables)


# ---------------------------------------------------------------------------------------------------
# Metrics

def _batch_totals(batch, *, select: tuple, rates: tuple) -> dict:
    """One row of sums per batch; the driver adds up these few rows."""
    labelled = np.asarray(batch["has_labels"], dtype=bool)
    out = {"rows": [len(labelled)], "count": [labelled.sum()],
           "exact": [np.asarray(batch["exact"]).sum()], "token_accuracy": [np.asarray(batch["token_accuracy"]).sum()],
           "halt_step": [np.asarray(batch["halt_step"], dtype=np.float64).sum()],
           "answer_step": [np.asarray(batch["answer_step"], dtype=np.float64).sum()],
           "oracle": [np.asarray(batch["oracle"]).sum()], "seconds": [np.asarray(batch[predictor.SECONDS]).sum()],
           **{f"exact_{name}": [np.asarray(batch[f"exact_{name}"]).sum()] for name in select}}
    for column in rates:
        out[column] = [np.asarray(batch[column]).sum()]
    for column in predictor.STEP_SUMS:
        out[column] = np.asarray(batch[column]).sum(axis=0, keepdims=True)
    return out


def _totals(predicted, select: tuple, rates: dict) -> dict:
    parts = list(predicted.map_batches(_batch_totals, batch_format="numpy", batch_size=None,
                                       fn_kwargs=dict(select=tuple(select), rates=tuple(rates)))
                 .iter_batches(batch_format="numpy", batch_size=None))
    if not parts:
        raise PipelineError("no puzzles to evaluate")
    return {k: np.concatenate([p[k] for p in parts]).sum(axis=0) for k in parts[0]}


def summarize(totals: dict, rates: dict, settings: test_time.Settings) -> dict:
    """metrics.json's numbers from the summed totals; `rates`: the task's EXTRA_RATES."""
    rows, count = int(totals["rows"]), int(totals["count"])
    # puzzles without an answer (an eval.source row with an empty answer) are answered, not scored
    scored = (lambda value: float(value) / count) if count else (lambda value: None)  # noqa: E731
    per_step = {name: (totals[column] / (count * settings.copies)).tolist() if count else [] for name, column in
                (("exact_accuracy_per_step", "step_exact_sum"), ("token_accuracy_per_step", "step_token_accuracy_sum"),
                 ("q_halt_accuracy_per_step", "step_q_halt_accuracy_sum"))}
    metrics = {"count": count, "puzzles": rows, "unanswered": rows - count, "exact_accuracy": scored(totals["exact"]),
               "token_accuracy": scored(totals["token_accuracy"]),
               "mean_halting_step": float(totals["halt_step"]) / rows,
               "mean_answer_step": float(totals["answer_step"]) / rows, **per_step}
    metrics.update({name: float(totals[column]) / rows for column, name in rates.items()})
    seconds = float(totals["seconds"]) / rows
    n_steps = len(totals["step_exact_sum"])
    metrics.update(oracle_rate=scored(totals["oracle"]), seconds_per_puzzle=seconds, settings=[
        {**settings.describe(name, n_steps), "exact_accuracy": scored(totals[f"exact_{name}"]),
         "oracle_rate": scored(totals["oracle"]), "seconds_per_puzzle": seconds} for name in settings.select])
    return metrics


def print_table(metrics: dict, rates: dict) -> None:
    lines = [f"eval {metrics['task']}: {metrics['count']:,} puzzles scored, checkpoint {metrics['checkpoint']} "
             f"(step {metrics['checkpoint_step']}, {'EMA' if metrics['ema'] else 'raw'} weights)",
             f"{'step':>5} {'exact':>8} {'token':>8} {'q_halt':>8}"]
    for i, (exact, token, q) in enumerate(zip(metrics["exact_accuracy_per_step"], metrics["token_accuracy_per_step"],
                                              metrics["q_halt_accuracy_per_step"])):
        lines.append(f"{i + 1:>5} {exact:>8.4f} {token:>8.4f} {q:>8.4f}")
    if metrics["count"]:
        lines.append(f"exact accuracy {metrics['exact_accuracy']:.4f}, token accuracy {metrics['token_accuracy']:.4f}, "
                     f"mean first step with q_halt > 0: {metrics['mean_halting_step']:.2f} (the answer is step "
                     f"{metrics['mean_answer_step']:.2f}'s on average)")
    if metrics["unanswered"]:
        lines.append(f"{metrics['unanswered']:,} puzzles without an answer in the file: answered (predictions/), "
                     f"not scored")
    lines += [f"{name.replace('_', ' ')} {metrics[name]:.4f}" for name in rates.values()]
    lines.append(f"{'steps':>5} {'K':>4} {'noise':>6} {'tta':>4} {'select':>10} {'exact':>8} {'oracle':>8} "
                 f"{'s/puzzle':>9}")
    for s in metrics["settings"]:
        exact, oracle = ("-" if v is None else f"{v:.4f}" for v in (s["exact_accuracy"], s["oracle_rate"]))
        lines.append(f"{s['max_steps']:>5} {s['trajectories']:>4} {s['noise']:>6g} {s['tta']:>4} {s['select']:>10} "
                     f"{exact:>8} {oracle:>8} {s['seconds_per_puzzle']:>9.5f}")
    print("\n".join(lines), flush=True)


# ---------------------------------------------------------------------------------------------------
# Pictures

def solved_title(steps: np.ndarray, labels: np.ndarray) -> str:
    """When one puzzle's answer ([N_sup, seq] predictions after each step) was first right, and whether it
    stayed right."""
    known = labels != 0
    exact = (steps[:, known] == labels[known]).all(axis=1)
    if not exact.any():
        return f"not solved in {len(steps)} steps"
    first = int(np.argmax(exact)) + 1
    return f"solved at step {first} of {len(steps)}" if exact[-1] else \
        f"right at step {first}, wrong again at step {len(steps)}"


def render_puzzles(ds, checkpoint: Checkpoint, e: EvalOptions, task: str, out_dir: str, name=None) -> list:
    """PNGs of the first `eval.render` puzzles, drawn in the driver (a few puzzles); `name(batch, i)` names
    puzzle i in its title (default: its test puzzle number)."""
    batch = ds.limit(e.render).take_batch(e.render, batch_format="numpy")
    model = predictor.load_model(checkpoint, e.ema, "cpu")
    steps, _ = predictor.step_predictions(model, batch)
    name = name or (lambda b, i: f"test puzzle {int(b['group_id'][i])}")
    files = []
    for i in range(len(batch["inputs"])):
        file = storage.join(out_dir, "render", f"puzzle_{i:03d}.png")
        title = f"{task} {name(batch, i)}: {solved_title(steps[:, i], batch['labels'][i])}"
        render.write_png(file, render.puzzle_png(task, batch["inputs"][i], steps[:, i], batch["labels"][i], title))
        files.append(file)
    return files
