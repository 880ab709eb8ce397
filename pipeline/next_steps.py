"""The command a user would run next, printed at the end of every stage (`pipeline.run.run_stage`)."""
import re

from pipeline import storage, tasks
from pipeline.results import evaluations

RUN = "python -m pipeline.run"


def next_line(cfg, given: dict) -> str | None:
    """`next: <command>` after `cfg.stage`; `given`: the data_dir/run_dir/task/preset options the user passed,
    repeated so the command finds the same folders."""
    paths = " ".join(f"{k}={v}" for k, v in given.items())
    task = cfg.task.name
    eval_stage = tasks.get(task).EVAL_STAGE if task in tasks.names() else "eval"
    size = int(cfg.task.get("size") or 0)
    submission = storage.join(evaluations.output_dir(cfg, evaluations.ARC_DIR), "submission.json") \
        if eval_stage == "eval_arc" else None
    if task == "sudoku":
        solve = f"{RUN} stage=solve {paths} solve.puzzle='<{size * size} characters: digits 1-{size}, a dot for a blank>'"
    elif task == "arc":
        solve = f"{RUN} stage=solve {paths} solve.file=<an ARC task .json (train pairs, test inputs) or a folder of them>"
    else:     # a maze is easier drawn in a file, row by row
        solve = f"{RUN} stage=solve {paths} solve.file=<a text file: {size} rows of {size} of # (wall), space, S, G>"
    commands = {
        "augment": f"{RUN} stage=train {paths}",
        "train": f"{RUN} stage={eval_stage} {paths}",
        "import": f"{RUN} stage={eval_stage} {paths} data_dir=<a dataset built with stage=augment>"
                  + (" (or eval.source=<a CSV of puzzles>)" if eval_stage == "eval" else ""),
        "adapt": f"{RUN} stage=eval_arc {paths}",
        "export": "load the export.dir folder with the original TRM code, or score it here with "
                  f"{RUN} stage={eval_stage} checkpoint={cfg.export.get('dir')} {paths}",
        "solve": (solve + f"   (tasks it never trained: {RUN} stage=adapt {paths} task.source=<them> adapt.base=<checkpoint>)"
                  if task == "arc" else
                  f"{RUN} stage=solve {paths} solve.file=<a CSV with a question column, or one puzzle a line>"),
        "eval": solve + f"   (or compare: {RUN} stage=eval {paths} eval.tta=8)",
        "eval_arc": f"the two attempts per test input are in {submission}; more "
                    f"versions: {RUN} stage=eval_arc {paths} eval_arc.num_aug=<N>",
        "all": solve if eval_stage == "eval" else
        f"the two attempts per test input are in {submission}; your own task: {solve}",
    }
    command = commands.get(cfg.stage)
    return None if command is None else "next: " + re.sub(r" {2,}(?=\S)", " ", command)
