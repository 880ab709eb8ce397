"""`stage=solve`: a trained model answers your own puzzles, step by step, with the halting head's confidence.

`python -m pipeline.run stage=solve task=sudoku solve.puzzle='1.3...' [checkpoint=best|<folder>] [run_dir=...]`
`python -m pipeline.run stage=solve task=maze solve.file=mazes.csv`

A puzzle is a string in the data stage's CSV layout (Sudoku: digits, `.` for blanks; maze: `#`, space, `S`,
`G`), given as `solve.puzzle=` or as the `question` column of a CSV `solve.file=` (the `answer` column may be
empty or absent); a plain text file holds one Sudoku per line, or mazes drawn row by row, separated by
blank lines. Each puzzle runs through the model's supervision steps in this process (no Ray: a few puzzles;
for thousands, `stage=eval eval.source=<csv>` answers rows without an answer on Ray's actor pool). Printed:
the answer after each step with the halting head's confidence (sigmoid of q_halt: its estimate that this
step's answer is right), and the answer given: the last step's, or with `eval.halt_on_q=true` the first step
whose q_halt > 0. Written: `run_dir/solve/<name>/answers.csv` (the input CSV layout with the answer filled
in, ready for `eval.source=`) and `steps.json` (per puzzle and step: answer and confidence).

ARC: `solve.file=` a task JSON (`{"train": [...], "test": [{"input": ...}]}`, test outputs not needed), a
folder of them, or a challenges file (`{task_id: task}`); or the JSON itself as `solve.puzzle=`. Each test
input gets two attempts as eval_arc gives them (`solve_arc`): the model answers it under every version of its
task (the identity and the augmentations the data stage draws), the answers are mapped back and voted
(`pipeline.tasks.arc.voting`), and the top two are printed as grids and written to
`run_dir/solve/<name>/submission.json` (ARC Prize format) with `votes.json` (votes and confidence per attempt).
The model knows a task through its trained puzzle-embedding rows: a task of the checkpoint's own dataset
(`data_dir` holds it) is answered with its rows, as eval_arc does; a task it never trained gets the mean of
the trained rows, what `stage=adapt` starts from, so its attempts come from the network alone and are
usually wrong: `stage=adapt` trains rows for new tasks, then `stage=eval_arc` answers them.
"""
import csv
import io
import json
import logging
import posixpath

import numpy as np

from pipeline import storage, tasks
from pipeline.checkpoints import reference_data
from pipeline.checkpoints.checkpoint import Checkpoint
from pipeline.errors import PipelineError
from pipeline.infer import predictor
from pipeline.options import Options, SolveOptions

log = logging.getLogger(__name__)

OUT_DIR = "solve"


def read_puzzles(s: SolveOptions, size: int, task: str) -> tuple[list[str], str]:
    """(question strings, a name for the output folder) from `solve.puzzle` or `solve.file`."""
    if (s.puzzle is None) == (s.file is None):
        raise PipelineError("stage=solve needs one of solve.puzzle='<puzzle string>' or solve.file=<csv or text file>")
    if s.puzzle is not None:
        return [s.puzzle], "puzzle"
    path = storage.to_absolute(s.file)
    if not storage.exists(path):
        raise PipelineError(f"solve.file={s.file}: file not found")
    fs, local = storage.filesystem(path)
    with fs.open(local, "r") as f:
        text = f.read()
    name = posixpath.basename(path).rsplit(".", 1)[0]
    first = text.split("\n", 1)[0]
    if "question" in first.split(","):
        return [row["question"] or "" for row in csv.DictReader(io.StringIO(text))], name
    if task == "maze":     # drawings: rows of `size` characters, mazes separated by blank lines
        blocks = [b for b in text.split("\n\n") if b.strip("\n")]
        return ["".join(line for line in b.strip("\n").split("\n")) for b in blocks], name
    return [line.strip() for line in text.splitlines() if line.strip()], name


def step_answers(model, inputs: np.ndarray, batch_size: int,
                 identifiers: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """([N_sup, B, seq_len] predicted tokens, [N_sup, B] q_halt logits) after each supervision step;
    `identifiers`: each row's puzzle-embedding row (None: 0, Sudoku's and Maze's one row)."""
    identifiers = np.zeros(len(inputs), np.int32) if identifiers is None else np.asarray(identifiers, np.int32)
    parts = [predictor.step_predictions(model, {"inputs": inputs[start:start + batch_size],
                                                "labels": np.zeros_like(inputs[start:start + batch_size]),
                                                "puzzle_identifier": identifiers[start:start + batch_size]})
             for start in range(0, len(inputs), batch_size)]
    return np.concatenate([p for p, _ in parts], axis=1), np.concatenate([q for _, q in parts], axis=1)


def answer_steps(q_halt: np.ndarray, halt_on_q: bool) -> np.ndarray:
    """[B] the step whose answer is given: the last, or with `eval.halt_on_q` the first with q_halt > 0."""
    last = np.full(q_halt.shape[1], len(q_halt) - 1)
    halted = q_halt > 0
    return np.where(halted.any(0), halted.argmax(0), last) if halt_on_q else last


def grid_lines(answer: str, size: int) -> list[str]:
    return [" ".join(answer[r * size:(r + 1) * size]) for r in range(size)]


def run(cfg) -> dict:
    options = Options.of(cfg)
    e, s = options.eval, options.solve
    checkpoint = predictor.resolve_checkpoint(cfg.checkpoint, cfg.run_dir, given=reference_data.given(cfg))
    saved_manifest, path = checkpoint.manifest, checkpoint.path
    task = saved_manifest.get("task")
    if task == "arc":
        return solve_arc(cfg, options, checkpoint)
    module = tasks.get(task)
    size = int(saved_manifest["size"])
    questions, name = read_puzzles(s, size, task)
    if not questions:
        raise PipelineError(f"solve.file={s.file} holds no puzzles")
    reasons = module.question_reasons(questions, size)
    bad = np.flatnonzero(reasons != "")
    if bad.size:
        where = "solve.puzzle" if s.puzzle is not None else f"solve.file={s.file}, puzzle {bad[0] + 1}"
        raise PipelineError(f"{where}: {reasons[bad[0]]} (the checkpoint's {task} size is {size})")
    model = predictor.load_model(checkpoint, e.ema, "cpu")
    preds, q_halt = step_answers(model, module.encode_questions(questions, size), e.batch_size)
    confidence = 1.0 / (1.0 + np.exp(-q_halt))
    n_steps = len(preds)
    answer_step = answer_steps(q_halt, e.halt_on_q)
    per_step = [module.format_answers(step, size) for step in preds]        # [N_sup][B] strings
    answers = [per_step[answer_step[i]][i] for i in range(len(questions))]

    out_dir = storage.join(cfg.run_dir, OUT_DIR, name)
    lines = [f"solve {task}: {len(questions)} puzzle{'s' * (len(questions) != 1)}, checkpoint {path} "
             f"(step {checkpoint.step}); confidence = the halting head's estimate that the answer is right"]
    for i, question in enumerate(questions):
        panels = [("puzzle", grid_lines(module.format_answers(module.encode_questions([question], size), size)[0], size))]
        panels += [(f"step {k + 1}: {confidence[k, i]:.0%}", grid_lines(per_step[k][i], size)) for k in range(n_steps)]
        width = max(max(len(t) for t, _ in panels), 2 * size - 1)
        lines += ["", f"puzzle {i + 1}: answer of step {answer_step[i] + 1} (confidence {confidence[answer_step[i], i]:.0%})",
                  "   ".join(t.ljust(width) for t, _ in panels)]
        lines += ["   ".join(g[r].ljust(width) for _, g in panels) for r in range(size)]
        lines.append(f"answer: {answers[i]}")
    steps = [{"question": q, "answer": answers[i], "answer_step": int(answer_step[i]) + 1,
              "steps": [{"answer": per_step[k][i], "confidence": float(confidence[k, i])} for k in range(n_steps)]}
             for i, q in enumerate(questions)]
    table = io.StringIO()
    writer = csv.writer(table, lineterminator="\n")
    writer.writerow(["source", "question", "answer", "rating"])
    writer.writerows([name, q, a, ""] for q, a in zip(questions, answers))
    storage.write_json_atomic(storage.join(out_dir, "steps.json"),
                              {"checkpoint": path, "checkpoint_step": checkpoint.step, "task": task, "puzzles": steps})
    storage.write_text_atomic(storage.join(out_dir, "answers.csv"), table.getvalue())
    lines += ["", f"written: {storage.join(out_dir, 'answers.csv')} (answers), {storage.join(out_dir, 'steps.json')} "
                  f"(every step)"]
    print("\n".join(lines), flush=True)
    return {"checkpoint": path, "answers": answers, "answer_step": (answer_step + 1).tolist(),
            "confidence": confidence.T.tolist(), "out_dir": out_dir}


# ---------------------------------------------------------------------------------------------------
# ARC: two attempts per test input

def read_arc_tasks(s: SolveOptions) -> tuple[dict, str]:
    """({task_id: ArcTask}, a name for the output folder) from `solve.file` (a task, a challenges file
    {task_id: task} or a folder of <task_id>.json) or `solve.puzzle` (a task's JSON text)."""
    from pipeline.tasks.arc import sources
    if (s.puzzle is None) == (s.file is None):
        raise PipelineError("stage=solve needs one of solve.file=<ARC task .json or folder> or solve.puzzle='<task JSON>'")
    if s.puzzle is not None:
        try:
            raw = json.loads(s.puzzle)
        except ValueError as err:
            raise PipelineError(f"solve.puzzle: not valid JSON ({type(err).__name__}: {err})") from None
        return {"puzzle": sources._parse("puzzle", raw, "solve.puzzle")[0]}, "puzzle"
    path = storage.to_absolute(s.file)
    fs, local = storage.filesystem(path)
    if fs.isdir(local):
        if not storage.list_files(path, ".json"):
            raise PipelineError(f"solve.file={s.file}: no <task_id>.json files in this folder")
        return {tid: task for tid, (task, _) in sources._load_task_dir(path, None).items()}, posixpath.basename(path.rstrip("/"))
    if not storage.exists(path):
        raise PipelineError(f"solve.file={s.file}: file not found")
    raw, name = sources._read_json(path), posixpath.basename(path).rsplit(".", 1)[0]
    if isinstance(raw, dict) and raw and "train" not in raw and all(isinstance(v, dict) for v in raw.values()):
        return {str(tid): sources._parse(str(tid), task, path)[0] for tid, task in raw.items()}, name
    return {name: sources._parse(name, raw, path)[0]}, name


def trained_versions(data_dir: str, saved_manifest: dict) -> dict:
    """{task_id: (dihedral [V], colour maps [V, 10], puzzle identifiers [V])} of the tasks the checkpoint
    trained, from `data_dir`'s identifiers when data_dir holds the very dataset it was trained on (same
    fingerprint); else {}: the checkpoint alone does not say which row is which task."""
    from pipeline.checkpoints.arc_identifiers import dataset_versions
    from pipeline.data import dataset_format as fmt
    if not storage.exists(fmt.manifest_path(data_dir)):
        return {}
    manifest = fmt.read_manifest(data_dir)
    if manifest.get("fingerprint") is None or manifest.get("fingerprint") != saved_manifest.get("fingerprint"):
        return {}
    versions = dataset_versions(data_dir, manifest)
    order = np.lexsort((versions["aug_index"], versions["task_id"]))
    tids, starts = np.unique(versions["task_id"][order], return_index=True)
    return {str(t): tuple(versions[k][part] for k in ("dihedral", "colour_map", "puzzle_identifier"))
            for t, part in zip(tids, np.split(order, starts[1:]))}


def grid_text(grid: np.ndarray) -> list[str]:
    return [" ".join(str(int(c)) for c in row) for row in np.asarray(grid)]


def solve_arc(cfg, options: Options, checkpoint: Checkpoint) -> dict:
    """Two attempts per test input of each task, as eval_arc votes them (see the module's docstring)."""
    path, saved_manifest = checkpoint.path, checkpoint.manifest
    from augment import arc
    from pipeline.stages.adapt import mean_rows
    from pipeline.tasks.arc import test_rows, voting

    e, s = options.eval, options.solve
    tasks_given, name = read_arc_tasks(s)
    where = "solve.puzzle" if s.puzzle is not None else f"solve.file={s.file}"
    canvas = arc.canvas_side(int(saved_manifest["seq_len"]))
    for tid, task in tasks_given.items():
        if not arc.fits(task, canvas):
            raise PipelineError(f"{where}: task {tid} has a grid side above the checkpoint's {canvas}x{canvas} canvas")
    limit = options.eval_arc.num_aug        # versions beyond the identity; null: all the dataset has (or would draw)
    num_aug = int(saved_manifest.get("num_aug", 0) if limit is None else limit)
    known = trained_versions(cfg.data_dir, saved_manifest)
    model = predictor.load_model(checkpoint, e.ema, "cpu")
    if model.puzzle_emb is not None:
        # Row 0 (the blank identifier, never trained) serves every version without a trained row, as the mean
        # of the trained rows: what stage=adapt starts a new task from. Only this in-memory copy changes.
        table = model.puzzle_emb.weights
        table[0] = mean_rows(table, 2)[1]

    lines = [f"solve arc: {len(tasks_given)} task{'s' * (len(tasks_given) != 1)}, checkpoint {path} (step "
             f"{checkpoint.step}); each test input answered under every version of its task, answers mapped back "
             f"and voted: attempt 1 and 2 are the two answers most versions gave (ties: the halting head's mean "
             f"confidence)"]
    attempts, votes = {}, {}
    for tid, task in tasks_given.items():
        trained = known.get(tid)
        rows = test_rows(task, None if trained is None else trained[:2], num_aug, int(cfg.seed), canvas)
        if trained is not None:
            if limit is not None:
                keep = rows["aug_index"] <= num_aug
                rows = {k: v[keep] for k, v in rows.items()}
            identifiers = trained[2][rows["aug_index"]]
        else:
            identifiers = np.zeros(len(rows["inputs"]), np.int32)
        preds, q_halt = step_answers(model, rows["inputs"], e.batch_size, identifiers)
        step = answer_steps(q_halt, e.halt_on_q)
        chosen, confidence = preds[step, np.arange(len(step))], q_halt[step, np.arange(len(step))]
        offsets = np.stack([rows["offset_row"], rows["offset_col"]], axis=1)
        answers = voting.decode_predictions(chosen, rows["dihedral"], rows["colour_map"], offsets)
        versions = int(rows["aug_index"].max()) + 1
        lines += ["", f"task {tid}: " + (f"trained on it: its {versions} versions use their trained rows"
                                          if trained is not None else
                                          f"new to this model: its {versions} versions use the mean of the trained "
                                          f"puzzle embeddings, so the attempts come from the network alone (stage=adapt "
                                          f"trains rows for new tasks and answers them better)")]
        for example, (test_input, _) in enumerate(task.test):
            mine = np.flatnonzero(rows["example_index"] == example)
            first, counts, mean_confidence = voting.rank_answers(answers["answer_hash"][mine], confidence[mine])
            first = mine[first[:voting.ATTEMPTS]]
            grids = [voting.grid_from_cells(answers["answer"][i], answers["height"][i], answers["width"][i])
                     for i in first]
            key = voting.input_key(tid, example)
            attempts[key] = grids
            votes[key] = [{"attempt": k + 1, "grid": g, "versions": int(counts[k]), "of": len(mine),
                           "confidence": float(mean_confidence[k])} for k, g in enumerate(grids)]
            panels = [("test input", grid_text(test_input))]
            panels += [(f"attempt {v['attempt']}: {v['versions']}/{v['of']} versions, confidence {v['confidence']:.0%}",
                        grid_text(v["grid"])) for v in votes[key]]
            if not grids:
                panels.append((f"no attempt: none of the {len(mine)} versions gave a grid", []))
            width = max(len(text) for t, g in panels for text in [t, *g])
            height = max(len(g) for _, g in panels)
            lines += [f"test input {example + 1}:", "   ".join(t.ljust(width) for t, _ in panels)]
            lines += ["   ".join((g[r] if r < len(g) else "").ljust(width) for _, g in panels).rstrip()
                      for r in range(height)]
    submission = voting.build_submission({tid: len(t.test) for tid, t in tasks_given.items()}, attempts)
    out_dir = storage.join(cfg.run_dir, OUT_DIR, name)
    storage.write_json_atomic(storage.join(out_dir, "votes.json"),
                              {"checkpoint": path, "checkpoint_step": checkpoint.step, "task": "arc", "inputs": votes})
    storage.write_json_atomic(storage.join(out_dir, "submission.json"), submission)
    lines += ["", f"written: {storage.join(out_dir, 'submission.json')} (two attempts per test input, ARC Prize "
                  f"format), {storage.join(out_dir, 'votes.json')} (votes and confidence)"]
    print("\n".join(lines), flush=True)
    return {"checkpoint": path, "submission": submission, "votes": votes, "out_dir": out_dir,
            "trained": sorted(t for t in tasks_given if t in known)}
