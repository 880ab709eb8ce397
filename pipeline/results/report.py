"""`run_dir/report.html`: one static page per run showing the recursion, built from files only.

The page opens from disk with no server and no network: `report.html` (the viewer, `pipeline/results/report_page/`)
and `report_data/` beside it, whose files are `<script>`s that hand their data to the page (a page opened
from file:// cannot fetch() its neighbours): `index.js` (the run, the curves, every evaluation's metrics and a
few numbers per puzzle for the list and its filters) and, per evaluation, `page_<k>.js` holding the
detail of `report.page_size` puzzles, loaded only when one of them is shown. The charts are plotly figures
built here; plotly.js comes from the plotly wheel (`plotly/package_data/plotly.min.js`) and is copied
beside the page.

What it reads: `metrics.jsonl` and the latest checkpoint's config/manifest (training), every
`eval*/metrics.json` and `eval*/*/metrics.json` (evaluations, however they are laid out), their predictions
Parquet, and for ARC the data stage's `test_puzzles.json` (demonstration pairs, true outputs).
"""
import json
import logging
import os
import posixpath

import numpy as np

from pipeline import storage, tasks
from pipeline.checkpoints import checkpoint as ckpt
from pipeline.data import dataset_format as fmt
from pipeline.errors import PipelineError
from pipeline.infer import test_time
from pipeline.options import Options, ReportOptions
from pipeline.results import evaluations as eval_results
from pipeline.tasks.arc import voting
from pipeline.train.metrics_log import read_metrics

log = logging.getLogger(__name__)

PAGE = "report.html"
DATA = "report_data"
TEMPLATE_DIR = os.path.join(os.path.dirname(__file__), "report_page")
ALPHABET = np.frombuffer(b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ", np.uint8)

# Puzzle flags, one bit each, for the page's filters.
RIGHT, RIGHT_THEN_WRONG, ORACLE_NOT_SELECTED, IN_ATTEMPTS = 1, 2, 4, 8


def encode_grids(tokens: np.ndarray) -> np.ndarray:
    """Token rows [..., L] as strings of one character per token (0-9, a-z, A-Z): compact in JSON, and the
    page reads cell i as `parseInt(s[i], 36)` (or its index in the alphabet)."""
    tokens = np.asarray(tokens)
    if tokens.size and int(tokens.max()) >= len(ALPHABET):
        raise PipelineError(f"report: token {int(tokens.max())} is beyond the page's {len(ALPHABET)} symbols")
    chars = np.ascontiguousarray(ALPHABET[tokens.astype(np.intp)])
    length = tokens.shape[-1]
    if length == 0:
        return np.full(tokens.shape[:-1], "", dtype=object)
    return chars.view(f"S{length}").reshape(tokens.shape[:-1]).astype(str)


# ---------------------------------------------------------------------------------------------------
# Charts (plotly figures as JSON, drawn by plotly.js in the page)

def _figure(traces: list, title: str, xaxis: str, yaxis: str, kind: str = "scatter", whole_x: bool = False) -> dict:
    """A plotly figure as JSON; `whole_x`: ticks at whole numbers only (supervision steps)."""
    import plotly.graph_objects as go
    import plotly.io as pio
    make = {"scatter": go.Scatter, "bar": go.Bar, "histogram": go.Histogram}[kind]
    fig = go.Figure([make(**t) for t in traces])
    fig.update_layout(title=title, xaxis_title=xaxis, yaxis_title=yaxis, height=300, margin=dict(l=50, r=10, t=40, b=40),
                      hovermode="x unified", legend=dict(font=dict(size=10)), template="plotly_white")
    if whole_x:
        fig.update_xaxes(dtick=1)
    return json.loads(pio.to_json(fig, validate=False))


TRAINING_PANELS = (("loss", ("train/lm_loss", "train/q_halt_loss")),
                   ("accuracy", ("train/accuracy", "train/exact_accuracy")),
                   ("supervision steps", ("train/steps",)),
                   ("samples/s", ("train/samples_per_s",)))


def training_section(run_dir: str) -> dict | None:
    records = read_metrics(run_dir)
    latest = ckpt.latest_checkpoint(run_dir)
    if not records and latest is None:
        return None
    evals = sorted({k for r in records for k in r if k.startswith("eval/")})
    figures = []
    for title, keys in (*TRAINING_PANELS, ("periodic evaluation", tuple(evals))):
        traces = []
        for key in keys:
            points = [(r["step"], r[key]) for r in records if key in r and r[key] is not None]
            if points:
                x, y = zip(*points)
                traces.append(dict(x=list(x), y=list(y), name=key, mode="lines+markers" if len(x) < 50 else "lines"))
        if traces:
            figures.append(_figure(traces, title, "step", title))
    config = manifest = None
    if latest:
        checkpoint = ckpt.Checkpoint.read(latest)
        config, manifest = checkpoint.config, checkpoint.manifest
    return {"figures": figures, "config": config, "manifest": manifest, "checkpoint": latest,
            "steps": records[-1]["step"] if records else None}


# ---------------------------------------------------------------------------------------------------
# stage=eval: one item per puzzle

def _display(task: str, size: int) -> dict:
    """How the page draws a token: Sudoku digits (token - 1, blank below 2) in boxes, or the task's colours."""
    module = tasks.get(task)
    if module.PALETTE is None:
        from augment import sudoku
        return {"mode": "digits", "box": list(sudoku.box_shape(size)), "side": size}
    return {"mode": "palette", "palette": list(module.PALETTE), "side": size}


def _read(directory: str, columns: list | None = None, rows: int | None = None) -> dict:
    """The predictions' columns as numpy; with `rows`, only the first rows are read (in file order)."""
    import pyarrow.dataset as pads
    fs, path = storage.filesystem(directory)
    dataset = pads.dataset(path, filesystem=fs, format="parquet")
    table = dataset.to_table(columns=columns) if rows is None else dataset.head(rows, columns=columns)
    return {name: fmt.column_numpy(table.column(name)) for name in table.column_names}


def _step_columns(rows: dict, n: int) -> dict | None:
    """The recorded per-step columns reshaped: step_preds [n, S, C, L], step_q_halt [n, S, C], copy_answer_step
    [n, C]; None when the predictions were written without them (`eval.record_steps=false`)."""
    if "step_preds" not in rows:
        return None
    copy_step = np.asarray(rows["copy_answer_step"]).reshape(n, -1)
    q = np.asarray(rows["step_q_halt"], dtype=np.float32).reshape(n, -1, copy_step.shape[1])
    preds = np.asarray(rows["step_preds"], dtype=np.uint8).reshape(n, q.shape[1], q.shape[2], -1)
    return {"preds": preds, "q": q, "copy_step": copy_step}


def eval_items(rows: dict) -> tuple[dict, list]:
    """(the list columns for index.js, the per-puzzle details) of stage=eval's predictions."""
    n = len(rows["preds"])
    labels = np.asarray(rows["labels"])
    exact = np.asarray(rows["exact"], dtype=bool)
    steps = _step_columns(rows, n)
    oracle = np.asarray(rows.get("oracle", exact), dtype=bool)
    right_then_wrong = np.zeros(n, bool)
    if steps is not None:
        step_exact = test_time.score(steps["preds"], labels[:, None, None, :])[0]       # [n, S, C]
        answer_copy = np.asarray(rows["answer_copy"], dtype=np.intp)
        right_then_wrong = step_exact[np.arange(n), :, answer_copy].any(1) & ~exact
    flags = exact * RIGHT | right_then_wrong * RIGHT_THEN_WRONG | (oracle & ~exact) * ORACLE_NOT_SELECTED
    ids = [f"{g}" if a == 0 else f"{g}.{a}" for g, a in zip(np.asarray(rows["group_id"]).tolist(),
                                                             np.asarray(rows["aug_index"]).tolist())]
    index = {"id": ids, "flags": flags.astype(int).tolist(),
             "halt_step": np.asarray(rows["halt_step"]).astype(int).tolist(),
             "answer_step": np.asarray(rows["answer_step"]).astype(int).tolist()}
    strings = {k: encode_grids(np.asarray(rows[k])) for k in ("inputs", "labels", "preds")}
    details = []
    step_strings = encode_grids(steps["preds"]) if steps is not None else None             # [n, S, C]
    for i in range(n):
        item = {"input": strings["inputs"][i], "label": strings["labels"][i], "answer": strings["preds"][i],
                "answer_step": int(rows["answer_step"][i]), "answer_copy": int(rows["answer_copy"][i]),
                "halt_step": int(rows["halt_step"][i]), "q_halt": float(rows["q_halt"][i])}
        if steps is not None:
            item.update(steps=step_strings[i].tolist(), q=np.round(steps["q"][i], 4).tolist(),
                        copy_step=steps["copy_step"][i].astype(int).tolist())
            item["votes"] = _votes(step_strings[i], steps["copy_step"][i], steps["q"][i], item["answer"])
        details.append(item)
    return index, details


def _votes(step_strings: np.ndarray, copy_step: np.ndarray, q: np.ndarray, selected: str) -> list:
    """Distinct answers of the copies (each at its own answer step), most voted first: the grid, its voters,
    their mean q_halt, and whether it is the selected answer."""
    copies = np.arange(step_strings.shape[1])
    answers = step_strings[copy_step - 1, copies]
    unique, inverse, counts = np.unique(answers, return_inverse=True, return_counts=True)
    mean_q = np.bincount(inverse, weights=q[copy_step - 1, copies], minlength=len(unique)) / counts
    order = np.lexsort((-mean_q, -counts))
    return [{"answer": str(unique[u]), "count": int(counts[u]), "copies": np.flatnonzero(inverse == u).tolist(),
             "mean_q": round(float(mean_q[u]), 4), "selected": bool(unique[u] == selected)} for u in order]


def eval_figures(halt_step: np.ndarray, metrics: dict) -> list:
    per_step = [dict(x=list(range(1, len(metrics[k]) + 1)), y=metrics[k], name=k.replace("_per_step", ""))
                for k in ("exact_accuracy_per_step", "token_accuracy_per_step", "q_halt_accuracy_per_step") if k in metrics]
    halts = np.asarray(halt_step).astype(int)
    counts = np.bincount(halts)[1:] if halts.size else np.zeros(0, int)
    return [_figure(per_step, "accuracy after each supervision step (all copies)", "supervision step", "fraction",
                    whole_x=True),
            _figure([dict(x=list(range(1, len(counts) + 1)), y=counts.tolist(), name="puzzles")],
                    "halting step (the answer copy's first q_halt > 0)", "supervision step",
                    "puzzles", kind="bar", whole_x=True)]


# ---------------------------------------------------------------------------------------------------
# stage=eval_arc: one item per test input

def arc_items(rows: dict, puzzles: dict, shown: int) -> tuple[dict, list]:
    """(list columns, details) of eval_arc's predictions: per test input its `shown` most voted answers with
    their versions (aug_index), counts and mean confidence, the true output where known, the task's
    demonstration pairs."""
    keys = np.char.add(np.char.add(np.asarray(rows["task_id"]).astype(str), ":"),
                       np.asarray(rows["example_index"]).astype(str))
    order = np.argsort(keys, kind="stable")
    unique, starts = np.unique(keys[order], return_index=True)
    bounds = np.append(starts, len(order))
    expected = [voting.input_key(t, i) for t in sorted(puzzles) for i in range(len(puzzles[t]["test"]))]
    groups = {str(k): order[bounds[j]:bounds[j + 1]] for j, k in enumerate(unique)}
    ids, flags, details = [], [], []
    for key in expected or sorted(groups):
        task_id, example = key.rsplit(":", 1)
        task = puzzles.get(task_id, {"train": [], "test": []})
        pair = task["test"][int(example)] if int(example) < len(task["test"]) else {}
        truth = voting.grid_hash(np.asarray(pair["output"], np.uint8)) if "output" in pair else None
        picked = groups.get(key, np.zeros(0, np.intp))
        first, counts, confidence = voting.rank_answers(np.asarray(rows["answer_hash"], dtype=object)[picked],
                                                            np.asarray(rows["q_halt"])[picked])
        hashes = np.asarray(rows["answer_hash"], dtype=object)[picked]
        answers, rank_correct = [], 0
        for rank, (row, count, conf) in enumerate(zip(first, counts, confidence), start=1):
            h = hashes[row]
            correct = truth is not None and h == truth
            rank_correct = rank if correct and not rank_correct else rank_correct
            if rank <= shown or correct:
                r = picked[row]
                answers.append({"rank": rank, "count": int(count), "confidence": round(float(conf), 4),
                                "correct": bool(correct),
                                "versions": np.sort(np.asarray(rows["aug_index"])[picked][hashes == h]).astype(int).tolist(),
                                "grid": voting.grid_from_cells(rows["answer"][r], rows["height"][r], rows["width"][r])})
        flag = (RIGHT if rank_correct == 1 else 0) | (IN_ATTEMPTS if 1 <= rank_correct <= voting.ATTEMPTS else 0) \
            | (ORACLE_NOT_SELECTED if rank_correct > voting.ATTEMPTS else 0)
        ids.append(key)
        flags.append(flag)
        details.append({"task_id": task_id, "example": int(example), "train": task["train"], "input": pair.get("input"),
                        "output": pair.get("output"), "answers": answers, "predictions": int(len(picked)),
                        "valid": int(counts.sum()), "distinct": int(len(counts)), "correct_rank": rank_correct})
    return {"id": ids, "flags": flags}, details


def arc_figures(details: list) -> list:
    votes = [d["answers"][0]["count"] / max(d["valid"], 1) for d in details if d["answers"]]
    ranks = np.bincount([min(d["correct_rank"], 11) for d in details if d["correct_rank"]], minlength=12)[1:]
    return [_figure([dict(x=votes, name="test inputs", nbinsx=20)] if votes else [],
                    "share of valid votes the top answer got", "share", "test inputs", kind="histogram"),
            _figure([dict(x=[str(r) for r in range(1, 11)] + [">10"], y=ranks.tolist(), name="test inputs")],
                    "rank of the true output among the voted answers", "rank", "test inputs", kind="bar")]


# ---------------------------------------------------------------------------------------------------
# Writing

def _script(function: str, *args) -> str:
    """A data file: one call of the page's `function` with `args` as JSON ("</" escaped, so that no value can
    end a script element)."""
    text = ",".join(json.dumps(a, separators=(",", ":"), default=str) for a in args).replace("</", "<\\/")
    return f"{function}({text});\n"


def _write_text(path: str, text: str) -> None:
    fs, p = storage.filesystem(path)
    fs.makedirs(posixpath.dirname(p) if storage.is_remote(path) else os.path.dirname(p), exist_ok=True)
    with fs.open(p, "w") as f:
        f.write(text)


def _evaluation(stage: str, folder: str, run_dir: str, data_dir: str | None, options) -> tuple[dict, list]:
    metrics = storage.read_json(eval_results.metrics_path(folder))
    name = posixpath.relpath(folder, run_dir) if storage.is_remote(run_dir) else os.path.relpath(folder, run_dir)
    entry = {"name": name, "stage": stage, "metrics": metrics, "page_size": options.page_size}
    predictions = storage.join(folder, "predictions")
    if stage == "eval_arc" and metrics.get("predictions_from"):
        predictions = metrics["predictions_from"]
    if not storage.list_files(predictions, ".parquet"):
        entry.update(index={"id": [], "flags": []}, figures=[], count=0)
        return entry, []
    if stage == "eval":
        halts = _read(predictions, ["halt_step"])["halt_step"]       # all puzzles: the histogram
        rows = _read(predictions, rows=options.max_items)         # the puzzles shown one by one
        side = int(round(np.sqrt(np.asarray(rows["inputs"]).shape[1])))
        entry.update(display=_display(metrics["task"], side), figures=eval_figures(halts, metrics))
        total = len(halts)
        index, details = eval_items(rows)
    else:
        rows = _read(predictions, ["task_id", "example_index", "aug_index", "answer_hash", "height", "width", "answer",
                                   "q_halt"])
        puzzles = {}
        if data_dir:
            path = storage.join(data_dir, tasks.get("arc").TEST_PUZZLES_FILE)
            puzzles = storage.read_json(path) if storage.exists(path) else {}
        index, details = arc_items(rows, puzzles, options.arc_answers)
        total = len(details)
        index, details = {k: v[:options.max_items] for k, v in index.items()}, details[:options.max_items]
        entry.update(display={"mode": "arc", "palette": list(tasks.get("arc").PALETTE[2:])}, figures=arc_figures(details))
    entry.update(index=index, count=len(details), total=total)
    return entry, details


def write_after_stage(cfg) -> str | None:
    """The report at the end of stage=train / eval / eval_arc (unless `report.enabled=false`). The stage's own
    results are written by then: a report that cannot be built is a warning, not a failed stage."""
    options = Options.of(cfg).report
    if not options.enabled:
        return None
    try:
        page = build(cfg.run_dir, cfg.data_dir, options)
    except (PipelineError, OSError) as err:
        log.warning("report not written: %s (stage=report rebuilds it)", err)
        return None
    print(f"report: {page}", flush=True)
    return page


def build(run_dir: str, data_dir: str | None, options: ReportOptions) -> str:
    """Write run_dir/report.html and report_data/ (replacing earlier ones whole); returns the page's path."""
    import plotly
    training = training_section(run_dir)
    evaluations = eval_results.discover(run_dir)
    if training is None and not evaluations:
        raise PipelineError(f"run_dir={run_dir}: nothing to report (no metrics.jsonl, checkpoint or evaluation)")
    page_size = options.page_size
    # Written in place (an object store has no rename) with index.js last: until it exists the page says its
    # data are missing, so a reader never sees a half-written report, and an interrupted build shows as such.
    target = storage.join(run_dir, DATA)
    storage.remove(target)
    entries = []
    for number, (stage, folder) in enumerate(evaluations):
        entry, details = _evaluation(stage, folder, run_dir, data_dir, options)
        entry["key"] = f"e{number}"
        for start in range(0, len(details), page_size):
            _write_text(storage.join(target, entry["key"], f"page_{start // page_size:05d}.js"),
                        _script("TRM_REPORT.page", entry["key"], start // page_size, details[start:start + page_size]))
        entries.append(entry)
    with open(os.path.join(os.path.dirname(plotly.__file__), "package_data", "plotly.min.js")) as f:
        _write_text(storage.join(target, "plotly.min.js"), f.read())
    storage.write_text_atomic(storage.join(target, "index.js"), _script(
        "TRM_REPORT.index", {"run_dir": run_dir, "training": training, "evaluations": entries}))
    page = storage.join(run_dir, PAGE)
    with open(os.path.join(TEMPLATE_DIR, PAGE)) as f:
        storage.write_text_atomic(page, f.read())
    return page
