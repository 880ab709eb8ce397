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

ARC tasks are answered by `stage=eval_arc` (two attempts per test input after voting; a task the model never
trained needs `stage=adapt` first): the model knows a task only through its trained puzzle-embedding rows.
"""
import csv
import io
import logging
import posixpath

import numpy as np

from pipeline import storage, tasks

from pipeline.infer import predictor

from pipeline.checkpoints import reference_data
from pipeline.errors import PipelineError

log = logging.getLogger(__name__)

OUT_DIR = "solve"


def read_puzzles(cfg, size: int, task: str) -> tuple[list[str], str]:
    """(question strings, a name for the output folder) from `solve.puzzle` or `solve.file`."""
    s = cfg.solve
    if (s.puzzle is None) == (s.file is None):
        raise PipelineError("stage=solve needs one of solve.puzzle='<puzzle string>' or solve.file=<csv or text file>")
    if s.puzzle is not None:
        return [str(s.puzzle)], "puzzle"
    path = storage.to_absolute(str(s.file))
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


def step_answers(model, inputs: np.ndarray, batch_size: int) -> tuple[np.ndarray, np.ndarray]:
    """([N_sup, B, seq_len] predicted tokens, [N_sup, B] q_halt logits) after each supervision step."""
    parts = [predictor.step_predictions(model, {"inputs": part, "labels": np.zeros_like(part),
                                                "puzzle_identifier": np.zeros(len(part), np.int32)})
             for part in (inputs[start:start + batch_size] for start in range(0, len(inputs), batch_size))]
    return np.concatenate([p for p, _ in parts], axis=1), np.concatenate([q for _, q in parts], axis=1)


def grid_lines(answer: str, size: int) -> list[str]:
    return [" ".join(answer[r * size:(r + 1) * size]) for r in range(size)]


def run(cfg) -> dict:
    if int(cfg.eval.batch_size) < 1:
        raise PipelineError(f"eval.batch_size={cfg.eval.batch_size} must be >= 1")
    checkpoint = predictor.resolve_checkpoint(cfg.checkpoint, cfg.run_dir, given=reference_data.given(cfg))
    saved_manifest, path = checkpoint.manifest, checkpoint.path
    task = saved_manifest.get("task")
    if task == "arc":
        raise PipelineError(f"checkpoint {path} is an ARC model: ARC test inputs are answered by stage=eval_arc "
                            f"(two attempts each, in submission.json), after stage=adapt for tasks it never trained")
    module = tasks.get(task)
    size = int(saved_manifest["size"])
    questions, name = read_puzzles(cfg, size, task)
    if not questions:
        raise PipelineError(f"solve.file={cfg.solve.file} holds no puzzles")
    reasons = module.question_reasons(questions, size)
    bad = np.flatnonzero(reasons != "")
    if bad.size:
        where = "solve.puzzle" if cfg.solve.puzzle is not None else f"solve.file={cfg.solve.file}, puzzle {bad[0] + 1}"
        raise PipelineError(f"{where}: {reasons[bad[0]]} (the checkpoint's {task} size is {size})")
    model = predictor.load_model(checkpoint, bool(cfg.eval.ema), "cpu")
    preds, q_halt = step_answers(model, module.encode_questions(questions, size), int(cfg.eval.batch_size))
    confidence = 1.0 / (1.0 + np.exp(-q_halt))
    n_steps = len(preds)
    halted = q_halt > 0
    answer_step = (np.where(halted.any(0), halted.argmax(0), n_steps - 1) if cfg.eval.halt_on_q
                   else np.full(len(questions), n_steps - 1))
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
