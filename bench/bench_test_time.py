"""Test-time compute in stage=eval: accuracy bought with inference compute on the demo checkpoints.

python bench/bench_test_time.py [--out outputs/bench_test_time] [--tasks sudoku maze] [--noise S1 S2 ...]
                                [--limit sudoku=N maze=M] [--record bench/results/test_time.txt]

Trains (or reuses, when `<out>/<task>/run` holds its finished checkpoint) the Sudoku demo checkpoint
(`python -m pipeline.run seed=0`, preset demo_sudoku) and the random-wall maze one (`task=maze
task.style=random seed=0`), then evaluates each on its held-out test split (the first N puzzles with
--limit, eval.limit) with `stage=eval` under: the baseline (one pass); eval.max_steps 2x and 4x N_sup;
eval.trajectories K in 4, 16, 64 at each noise level; eval.tta 8; eval.tta 8 x K 8 at the middle (of two:
the upper) noise level. Every setting is scored with all three selectors from the same copies (one
stage=eval run). Columns: cost = copies x steps / N_sup (forward passes against the single pass), exact,
its gain over the baseline, the oracle rate (some copy right at some step: the selectors' ceiling),
inference seconds per puzzle (actor time) and its ratio to the baseline's. With --record the output is
also written there, with the commit.
"""
import argparse
import datetime
import io
import os
import subprocess
import sys
from contextlib import redirect_stdout
from pathlib import Path

from hydra import compose, initialize_config_module
from omegaconf import OmegaConf

import ray

from pipeline.checkpoints import checkpoint as ckpt
from pipeline.ray_setup import init_ray
from pipeline.run import run_stage
from record import commit_label

TASKS = {"sudoku": ["task=sudoku"], "maze": ["task=maze", "task.style=random"]}
GOALS = {"sudoku": 0.995, "maze": 0.70}
NOISE = {"sudoku": [0.1, 0.3], "maze": [0.1, 0.3]}   # eval.noise levels (z has unit RMS: post-norm blocks)
MAX_COST = 64
STEP_MULTIPLES = (2, 4)   # eval.max_steps as multiples of N_sup
ROWS_PER_CALL = 512   # puzzles x copies per inference call, the same for every setting
SELECTORS = ("vote", "q_halt", "first_halt")


def config(*overrides):
    with initialize_config_module(config_module="pipeline.conf", version_base=None):
        return compose(config_name="config", overrides=list(overrides))


def git(*args: str) -> str:
    return subprocess.run(["git", *args], capture_output=True, text=True, check=True).stdout.strip()


def checkpoint(out: Path, task: str, seed: int) -> tuple[list, list]:
    """(data_dir/run_dir overrides, training command), training the checkpoint when run_dir has none."""
    paths = [f"data_dir={out / task / 'data'}", f"run_dir={out / task / 'run'}"]
    command = ["python", "-m", "pipeline.run", *TASKS[task], f"seed={seed}", *paths]
    if not finished(str(out / task / "run")):
        log = out / f"train_{task}.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        print(f"# training {task}: {' '.join(command)} (log {log})", file=sys.stderr, flush=True)
        with open(log, "w") as f:
            subprocess.run([sys.executable, *command[1:]], check=True, stdout=f, stderr=subprocess.STDOUT)
    return paths, command


def finished(run_dir: str) -> bool:
    """run_dir's latest checkpoint is its training's last step (an interrupted run resumes instead)."""
    path = ckpt.latest_checkpoint(run_dir)
    if path is None:
        return False
    checkpoint = ckpt.Checkpoint.read(path)
    return checkpoint.step >= checkpoint.config["train"]["steps"]


def trained_with_current_preset(task: str, path: str) -> bool:
    """Whether the checkpoint's saved model and train settings are what the current preset gives."""
    saved = ckpt.Checkpoint.read(path).config
    now = OmegaConf.to_container(config(*TASKS[task]), resolve=True)
    return all(saved[group].get(k) == v for group in ("model", "train") for k, v in now[group].items()
               if k in saved[group])


def start_ray(ray_cfg, tries: int = 3) -> None:
    """One local Ray for every stage=eval run; on a loaded machine its start can time out, so retry."""
    for attempt in range(1, tries + 1):
        try:
            return init_ray(ray_cfg)
        except Exception as err:   # Ray raises a bare Exception when its node does not come up in time
            ray.shutdown()
            if attempt == tries:
                raise
            print(f"# Ray did not start ({err}); retrying", file=sys.stderr, flush=True)


def grid(noise: list) -> list:
    """(label, overrides) for each forward setting."""
    mid = noise[len(noise) // 2]
    settings = [("baseline", {})]
    settings += [(f"{m}x steps", {"max_steps": m}) for m in STEP_MULTIPLES]
    settings += [(f"K={k}", {"trajectories": k, "noise": s}) for s in noise for k in (4, 16, 64)]
    settings += [("tta 8", {"tta": 8}), ("tta 8 x K=8", {"tta": 8, "trajectories": 8, "noise": mid})]
    return settings


def evaluate(task: str, paths: list, options: dict, n_sup: int, limit) -> dict:
    options = dict(options)
    if "max_steps" in options:
        options["max_steps"] *= n_sup
    copies = options.get("trajectories", 1) * options.get("tta", 1)
    overrides = [f"eval.{k}={v}" for k, v in options.items()]
    overrides += [f"eval.select=[{','.join(SELECTORS)}]", "eval.render=0", "ray.dashboard=false",
                  f"eval.batch_size={max(1, ROWS_PER_CALL // copies)}"]
    if limit:
        overrides.append(f"eval.limit={limit}")
    with redirect_stdout(io.StringIO()):   # stage=eval's own table; this bench prints its own
        return run_stage(config("stage=eval", *TASKS[task], *paths, *overrides))


def bench_task(task: str, out: Path, args, limit: int | None, lines: list) -> None:
    paths, command = checkpoint(out, task, args.seed)
    path = ckpt.latest_checkpoint(str(out / task / "run"))
    trained = ckpt.Checkpoint.read(path)
    n_sup = int(trained.config["model"]["halt_max_steps"])
    preset = f"pipeline/conf/preset/demo_{task}.yaml"
    same = trained_with_current_preset(task, path)
    lines += ["", f"## {task}: checkpoint trained by `{' '.join(command)}`",
              f"# {path} (step {trained.step}); {preset} last changed "
              f"in {git('log', '-1', '--format=%h', '--', preset)}; the checkpoint's model/train settings "
              f"{'match' if same else 'DIFFER from'} the current preset"]
    rows, baseline, per_step_line = [], None, ""
    for label, options in grid(args.noise or NOISE[task]):
        metrics = evaluate(task, paths, options, n_sup, limit)
        if baseline is None:
            baseline = metrics
            which = f"the first {limit}: eval.limit={limit}" if limit else "the whole test split"
            lines += [f"# {metrics['count']} held-out puzzles ({which}), N_sup={n_sup}; cost = copies x steps / N_sup",
                      f"{'setting':<13} {'steps':>5} {'K':>3} {'noise':>5} {'tta':>3} {'select':>10} {'cost':>5} "
                      f"{'exact':>7} {'gain':>7} {'oracle':>7} {'s/puzzle':>9} {'time x':>7}"]
        if options.get("max_steps") == STEP_MULTIPLES[-1]:
            per_step_line = (f"# exact after each step (max_steps {options['max_steps'] * n_sup}, mean over copies): "
                             + " ".join(f"{v:.3f}" for v in metrics["exact_accuracy_per_step"]))
        base_exact = baseline["settings"][0]["exact_accuracy"]
        for s in metrics["settings"]:
            cost = s["trajectories"] * s["tta"] * s["max_steps"] / n_sup
            time_x = s["seconds_per_puzzle"] / baseline["seconds_per_puzzle"]
            rows.append((cost, s["exact_accuracy"], label, s["select"], s["oracle_rate"]))
            lines.append(f"{label:<13} {s['max_steps']:>5} {s['trajectories']:>3} {s['noise']:>5g} {s['tta']:>3} "
                         f"{s['select']:>10} {cost:>5g} {s['exact_accuracy']:>7.4f} "
                         f"{s['exact_accuracy'] - base_exact:>+7.4f} {s['oracle_rate']:>7.4f} "
                         f"{s['seconds_per_puzzle']:>9.5f} {time_x:>7.1f}")
            print(lines[-1], file=sys.stderr, flush=True)
    lines.append(per_step_line)
    within = [r for r in rows if r[0] <= MAX_COST]
    best = max(within, key=lambda r: (r[1], -r[0]))
    ceiling = max(within, key=lambda r: r[4])
    lines.append(f"# best at <= {MAX_COST}x cost: {best[1]:.4f} ({best[2]}, select {best[3]}, cost {best[0]:g}x) "
                 f"against {base_exact:.4f} single pass (vote = the plain pass); goal {GOALS[task]:.3f}: "
                 f"{'met' if best[1] >= GOALS[task] else 'NOT met'}; highest oracle rate {ceiling[4]:.4f} ({ceiling[2]})")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("outputs/bench_test_time"))
    parser.add_argument("--tasks", nargs="+", default=list(TASKS), choices=list(TASKS))
    parser.add_argument("--noise", type=float, nargs="+", default=None,
                        help=f"eval.noise levels for K > 1 (default per task: {NOISE})")
    parser.add_argument("--limit", nargs="+", default=[], metavar="TASK=N", help="eval.limit per task")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--record", type=Path, default=None)
    parser.add_argument("--append", action="store_true", help="add to the --record file instead of replacing it")
    args = parser.parse_args()
    os.environ.setdefault("RAY_DATA_DISABLE_PROGRESS_BARS", "1")
    lines = [f"# python bench/bench_test_time.py {' '.join(sys.argv[1:])}".rstrip(),
             f"# commit {commit_label()}, {datetime.date.today()}, {os.cpu_count()} CPUs, "
             f"load average {os.getloadavg()[0]:.1f} at the start (a shared machine: times are indicative)"]
    limits = {task: int(n) for task, n in (item.split("=") for item in args.limit)}
    earlier = args.record.read_text() + "\n" if args.append and args.record and args.record.exists() else ""
    for task in args.tasks:   # before this process's Ray: a training run started after it would join it
        checkpoint(args.out, task, args.seed)   # (RAY_ADDRESS is inherited), dashboard off, its log flooded
    start_ray(config("ray.dashboard=false").ray)
    for i, task in enumerate(args.tasks):
        bench_task(task, args.out, args, limits.get(task), lines)
        done = i == len(args.tasks) - 1
        tail = [f"# load average {os.getloadavg()[0]:.1f} at the end"] if done else ["# (more tasks running)"]
        if args.record:   # after every task, so a long run leaves what it measured
            tmp = args.record.with_suffix(".tmp")
            tmp.write_text(earlier + "\n".join(lines + tail) + "\n")
            tmp.replace(args.record)
    print("\n".join(lines + tail))


if __name__ == "__main__":
    main()
