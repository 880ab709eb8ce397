"""`stage=eval_arc`: ARC test-time augmentation, voting and pass@K for one checkpoint.

`python -m pipeline.run stage=eval_arc task=arc [checkpoint=best|latest|<folder>] [eval_arc.num_aug=100]`
`python -m pipeline.run stage=eval_arc task=arc eval_arc.predictions=<run_dir>/eval_arc/<name>/predictions` (re-score)

Every test input of the test-subset tasks is predicted under each version of its task the model knows
(the data stage's test split: identity first, then up to `eval_arc.num_aug` augmentations), on Ray
Data's actor pool. Each prediction is cropped at its end-of-grid marker, mapped back to the original task
and hashed; Ray Data then groups them per (task, test input) and votes (`pipeline.tasks.arc.voting`). Nothing
is gathered into one process but the few top answers per test input.

Each evaluation is kept apart in `run_dir/eval_arc/<name>/`, `<name>` naming the settings that differ from
the plain pass (`pipeline.results.evaluations`: `plain`, `aug100`, `best-steps8`, `rescored-<name>` for a
re-scoring; the folder of the same name is replaced, the others kept), with a row in the results table
`run_dir/eval_arc/results.json`: `predictions/` (one row per prediction, enough to re-score without a
model), `votes/` (per test input, its ranked distinct answers: hash, count, mean confidence, correct),
`submission.json` (ARC Prize format) and `metrics.json` (pass@K), written last.
"""
import logging

import numpy as np
import ray

from augment import arc
from pipeline import storage, tasks
from pipeline.checkpoints import reference_data
from pipeline.checkpoints.arc_identifiers import IDENTIFIER_FIELDS
from pipeline.checkpoints.checkpoint import Checkpoint
from pipeline.data import dataset_format as fmt
from pipeline.data import fingerprint
from pipeline.errors import PipelineError
from pipeline.infer import predictor, test_time
from pipeline.options import EvalOptions, Options
from pipeline.ray_setup import init_ray
from pipeline.results import evaluations, report
from pipeline.tasks.arc import voting as arc_voting

log = logging.getLogger(__name__)

PASSTHROUGH = ["task_id", "example_index", "aug_index", "puzzle_identifier", "dihedral", "colour_map",
               "offset_row", "offset_col"]
PREDICTION_COLUMNS = ["task_id", "example_index", "aug_index", "puzzle_identifier", "answer_hash", "height", "width",
                      "answer", "q_halt", "answer_step", "halt_step"]
ROWS_PER_VOTE_PARTITION = 50_000   # predictions per groupby partition (Ray's default of 200 partitions
                                   # costs minutes of task overhead on a small run)


def run(cfg) -> dict:
    options = Options.of(cfg)
    ea, e = options.eval_arc, options.eval
    ks = sorted(set(ea.pass_ks))
    # one pass of eval.max_steps supervision steps per version (the versions vote)
    settings = test_time.Settings(max_steps=e.max_steps)
    manifest = fmt.read_task_manifest(cfg)
    if tasks.get(manifest["task"]).EVAL_STAGE != evaluations.ARC_DIR:     # the task's hook, as stage=eval checks it
        raise PipelineError(f"data_dir={cfg.data_dir} holds a {manifest.get('task')!r} dataset; stage=eval_arc needs "
                            f"an ARC dataset (task=arc)")
    test_counts, truth = ground_truth(cfg.data_dir, manifest)
    name = evaluations.evaluation_name(cfg, evaluations.ARC_DIR)
    out_dir = evaluations.output_dir(cfg, evaluations.ARC_DIR)
    predictions_dir = storage.join(out_dir, "predictions")
    info = {}
    if ea.predictions:
        predictions_dir = storage.to_absolute(ea.predictions)
        if not storage.list_files(predictions_dir, ".parquet"):
            raise PipelineError(f"eval_arc.predictions={ea.predictions}: no Parquet files under {predictions_dir}")
        info["predictions_from"] = predictions_dir
        # its own folder (rescored-<name>): the evaluation whose predictions are re-scored is left as it is
        storage.remove(out_dir)
        init_ray(cfg.ray)
    else:
        # a reference run or imported ARC checkpoint gets its table rows by name (task.identifiers=)
        checkpoint = predictor.resolve_checkpoint(cfg.checkpoint, cfg.run_dir, data_dir=cfg.data_dir,
                                                  identifiers=cfg.task.get("identifiers"), num_aug=ea.num_aug,
                                                  given=reference_data.given(cfg))
        checkpoint.check_fits(manifest, f"data_dir={cfg.data_dir}", also=IDENTIFIER_FIELDS)
        storage.remove(out_dir)   # nothing from an earlier evaluation with these settings is pooled in; others are kept
        init_ray(cfg.ray)
        info.update(checkpoint=checkpoint.path, checkpoint_step=checkpoint.step, ema=e.ema, halt_on_q=e.halt_on_q,
                    max_steps=e.max_steps)
        predict_to_parquet(cfg.data_dir, checkpoint, predictions_dir, options, settings)
        if e.render:
            info["rendered"] = render_test_inputs(cfg.data_dir, checkpoint, out_dir, e)

    predictions = ray.data.read_parquet(predictions_dir, columns=["task_id", "example_index", "answer_hash", "height",
                                                                   "width", "answer", "q_halt"])
    votes_dir = storage.join(out_dir, "votes")
    count = predictions.count()
    vote(predictions, truth, keep=max(ks), partitions=1 + count // ROWS_PER_VOTE_PARTITION).write_parquet(
        votes_dir, compression="zstd")
    metrics, submission = score(votes_dir, test_counts, truth, ks)
    metrics.update(info, predictions=int(count), num_aug=ea.num_aug,
                   test_outputs_known=bool(manifest.get("test_outputs_known", bool(truth))))
    metrics["invalid_predictions"] = metrics["predictions"] - metrics.pop("valid_predictions")
    metrics["fingerprint"] = fingerprint.evaluation_fingerprint(cfg, "eval_arc", info.get("checkpoint"),
                                                                info.get("checkpoint_step"), manifest)
    metrics["name"] = name
    storage.write_json_atomic(storage.join(out_dir, "submission.json"), submission)
    storage.write_json_atomic(evaluations.metrics_path(out_dir), metrics)
    print_table(metrics, ks)
    results = evaluations.record(cfg.run_dir, name, metrics, evaluations.ARC_DIR)
    print("\n".join([f"results table ({evaluations.results_path(cfg.run_dir, evaluations.ARC_DIR)}):",
                     *evaluations.table_lines(results, evaluations.ARC_DIR), f"this evaluation: {out_dir}"]),
          flush=True)
    report.write_after_stage(cfg)
    return metrics


def ground_truth(data_dir: str, manifest: dict) -> tuple[dict, dict]:
    """({task_id: test inputs}, {input_key: hash of the true output}) from the data stage's test_puzzles.json
    (no hashes where outputs are unknown, e.g. a hidden test set)."""
    path = storage.join(data_dir, manifest.get("test_puzzles_file", "test_puzzles.json"))
    if not storage.exists(path):
        raise PipelineError(f"{path} is missing: rebuild the ARC dataset with stage=augment")
    puzzles = storage.read_json(path)
    counts = {tid: len(t["test"]) for tid, t in puzzles.items()}
    truth = {arc_voting.input_key(tid, i): arc_voting.grid_hash(arc.as_grid(pair["output"]))
             for tid, t in puzzles.items() for i, pair in enumerate(t["test"]) if "output" in pair}
    return counts, truth


def predict_to_parquet(data_dir: str, checkpoint: Checkpoint, predictions_dir: str, options: Options,
                       settings: test_time.Settings) -> None:
    test_dir = storage.join(data_dir, "test")
    if not storage.list_files(test_dir, ".parquet"):
        raise PipelineError(f"no test rows under {test_dir}: rebuild the dataset with stage=augment")
    ds = fmt.read_ray(test_dir, ["inputs", "labels", *PASSTHROUGH])
    if options.eval_arc.num_aug is not None:
        ds = ds.map_batches(_versions_up_to, batch_format="numpy", fn_kwargs=dict(num_aug=options.eval_arc.num_aug))
    ds = predictor.predict(ds, checkpoint, options.eval, passthrough=PASSTHROUGH, settings=settings)
    ds.map_batches(_decode, batch_format="numpy").write_parquet(predictions_dir, compression="zstd")


def render_test_inputs(data_dir: str, checkpoint: Checkpoint, out_dir: str, e: EvalOptions) -> list:
    """PNGs of the first `eval.render` test inputs as the model sees them (the identity version, on its canvas):
    the answer after each supervision step and the target (`run_dir/eval_arc/<name>/render/`)."""
    from pipeline.stages.eval import render_puzzles
    ds = fmt.read_ray(storage.join(data_dir, "test"), ["inputs", "labels", "puzzle_identifier", "task_id",
                                                           "example_index", "aug_index"])
    ds = ds.map_batches(_versions_up_to, batch_format="numpy", fn_kwargs=dict(num_aug=0))
    return render_puzzles(ds, checkpoint, e, "arc", out_dir,
                          name=lambda b, i: f"task {b['task_id'][i]}, test input {int(b['example_index'][i]) + 1}")


def _versions_up_to(batch, *, num_aug: int) -> dict:
    keep = np.asarray(batch["aug_index"]) <= num_aug
    return {k: v[keep] for k, v in batch.items()}


def _decode(batch) -> dict:
    """Predicted canvases -> answers in the original task's frame (crop, inverse transform, hash)."""
    offsets = np.stack([batch["offset_row"], batch["offset_col"]], axis=1)
    answers = arc_voting.decode_predictions(batch["preds"], batch["dihedral"], batch["colour_map"], offsets)
    return {**{k: batch[k] for k in PREDICTION_COLUMNS if k in batch}, **answers}


def vote(predictions, truth: dict, keep: int, partitions: int | None = None):
    """Ranked distinct answers per (task, test input), grouped by Ray Data (hash shuffle into `partitions`)."""
    return predictions.groupby(["task_id", "example_index"], num_partitions=partitions).map_groups(
        arc_voting.vote_group, batch_format="numpy", fn_kwargs=dict(truth=truth, keep=keep))


def _top_rows(batch) -> dict:
    """The rows the driver needs: the submission's attempts and the rank of each correct answer."""
    keep = (np.asarray(batch["rank"]) <= arc_voting.ATTEMPTS) | np.asarray(batch["correct"], dtype=bool)
    return {k: np.asarray(v)[keep] for k, v in batch.items()}


def score(votes_dir: str, test_counts: dict, truth: dict, ks: list) -> tuple[dict, dict]:
    rows = ray.data.read_parquet(votes_dir).map_batches(_top_rows, batch_format="numpy")
    parts = list(rows.iter_batches(batch_format="numpy", batch_size=None))
    columns = ("task_id", "example_index", "rank", "correct", "height", "width", "answer", "predictions")
    top = {c: np.concatenate([p[c] for p in parts]) if parts else np.zeros(0) for c in columns}
    attempts = {}
    order = np.argsort(top["rank"], kind="stable")
    for i in order[top["rank"][order] <= arc_voting.ATTEMPTS]:
        key = arc_voting.input_key(top["task_id"][i], top["example_index"][i])
        attempts.setdefault(key, []).append(arc_voting.grid_from_cells(top["answer"][i], top["height"][i], top["width"][i]))
    submission = arc_voting.build_submission(test_counts, attempts)
    correct = np.asarray(top["correct"], dtype=bool)
    first = np.asarray(top["rank"]) == 1
    metrics = {"tasks": len(test_counts), "test_inputs": int(sum(test_counts.values())),
               "inputs_with_answer": int(first.sum()), "valid_predictions": int(np.asarray(top["predictions"])[first].sum())}
    if truth:
        metrics.update(arc_voting.pass_at_k(test_counts, top["task_id"][correct], top["example_index"][correct],
                                            top["rank"][correct], ks))
    else:
        log.warning("the test outputs are unknown: submission written, pass@K not computed")
    return metrics, submission


def shown_ks(metrics: dict) -> tuple[list, list, int]:
    """(the pass@k worth showing, in numeric order; those equal to the last shown; versions voting per input):
    each version gives one answer, so k beyond the number of versions counts nothing more."""
    versions = round(metrics["predictions"] / max(1, metrics["test_inputs"]))
    ks = sorted(int(k[len("pass@"):]) for k in metrics if k.startswith("pass@"))
    shown = [k for k in ks if k <= versions] or ks[:1]
    return shown, [k for k in ks if k not in shown], versions


def print_table(metrics: dict, ks: list) -> None:
    shown, same, versions = shown_ks(metrics)
    lines = [f"eval_arc: {metrics['tasks']} tasks, {metrics['test_inputs']} test inputs, {versions} versions of each "
             f"voting: {metrics['predictions']:,} predictions ({metrics['invalid_predictions']:,} gave no grid: no colour "
             f"cell at the top-left of the canvas, so they cannot vote)"]
    if "checkpoint" in metrics:
        lines[0] += f"; checkpoint {metrics['checkpoint']} (step {metrics['checkpoint_step']})"
    if "pass@1" in metrics:
        lines.append("  ".join(f"pass@{k} {metrics[f'pass@{k}']:.4f}" for k in shown)
                     + (f"  (pass@{', '.join(map(str, same))} equal pass@{shown[-1]}: {versions} versions vote)"
                        if same else ""))
    print("\n".join(lines), flush=True)
