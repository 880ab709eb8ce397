"""Test-time training on ARC tasks a model never saw (stage=adapt), measured on a CPU at the demo's small canvas.

python bench/bench_adapt.py [--seeds 0 1 2] [--held-out 16] [--adapt-steps 600] [--set KEY=VALUE ...]

The held-out tasks: `--held-out N` of the ARC demo's test tasks (those of its task.test_subset that fit its
task.canvas), drawn once by a fixed generator, the same for every seed. For each seed, in its own
temporary folder, as a user runs it:
1. pre-train the ARC demo without them: `python -m pipeline.run task=arc seed=S task.exclude_task_ids=[...]`
   (preset demo_arc; neither their demonstrations nor their test pairs are seen);
2. adapt its final checkpoint to the held-out tasks alone (`task.task_ids=[...]`, their demonstration pairs
   with the preset's augmentations): `stage=adapt adapt.mode=embeddings`, and again with `adapt.mode=full`,
   each for --adapt-steps steps;
3. `stage=eval_arc` on the held-out tasks' test inputs with (a) `adapt_start/`: the base network and one row
   per version at the mean of the trained rows, no training; (b) the embeddings-only adaptation; (c) the full one.
Prints pass@1 / pass@2 after voting per seed and setting, and the worst seed's pass@2 per setting.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from record import commit_label
from shared_data import with_arc_source

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from augment import arc  # noqa: E402
from pipeline.tasks.arc import sources as arc_sources  # noqa: E402
from pipeline.checkpoints import checkpoint as ckpt  # noqa: E402

SETTINGS = ("base + mean rows", "adapt embeddings", "adapt full")
# The demo preset as the recorded runs had it: the validation split before task.val_from_demos (the held-out
# tasks adapt on all their demonstrations, pre-training sees the same pairs), the reference's halt exploration,
# and the latest checkpoint scored (the adapted runs have no validation split, so no best_).
RECORDED_PRESET = ["task.num_val=8", "task.val_from_demos=false", "model.halt_exploration_prob=0.1",
                   "checkpoint=latest"]


def demo_tasks(overrides: list) -> tuple:
    """(task.source, the demo's test tasks that fit its canvas, sorted) under the preset and `overrides`."""
    from hydra import compose, initialize_config_module
    with initialize_config_module(config_module="pipeline.conf", version_base=None):
        task = compose(config_name="config", overrides=["task=arc", *overrides]).task
    loaded = arc_sources.load_subsets(str(task.source), [str(task.test_subset)], None)[str(task.test_subset)]
    keep = set(map(str, task.task_ids)) if task.task_ids is not None else None
    return str(task.source), sorted(t for t, (parsed, _) in loaded.items()
                                    if arc.fits(parsed, int(task.canvas)) and (keep is None or t in keep))


def pipeline(folder: Path, log: Path, *overrides: str) -> float:
    start = time.perf_counter()
    with open(log, "a") as out:
        subprocess.run([sys.executable, "-m", "pipeline.run", *overrides], cwd=folder,
                       check=True, stdout=out, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONPATH": str(ROOT)})
    return time.perf_counter() - start


def passes(run_dir: Path) -> tuple:
    # each run_dir holds one eval_arc evaluation: plain, or named by its checkpoint= folder and eval.ema=false
    metrics = json.loads(next((run_dir / "eval_arc").glob("*/metrics.json")).read_text())
    return metrics["pass@1"], metrics["pass@2"]


def bench_seed(seed: int, held_out: list, args, common: list) -> dict:
    listed = "[" + ",".join(held_out) + "]"
    with tempfile.TemporaryDirectory(prefix="trm-adapt-") as tmp:
        folder = Path(tmp)
        log = folder / "bench.log"
        try:
            walls = {"pre-train": pipeline(folder, log, "task=arc", f"seed={seed}", *common,
                                           f"task.exclude_task_ids={listed}", "run_name=base")}
            base = ckpt.latest_checkpoint(str(folder / "outputs" / "base" / "run"))
            # no validation split: the new tasks' test inputs are all there is to answer
            new_tasks = [*common, f"task.task_ids={listed}", f"task.subsets=[{args.subset}]", f"seed={seed}",
                         f"data_dir={folder / 'new_tasks'}", "task.num_val=0", "train.eval_every=0",
                         f"train.steps={args.adapt_steps}", f"train.checkpoint_every={args.adapt_steps}"]
            results = {}
            for mode in ("embeddings", "full"):
                run_dir = folder / f"adapt_{mode}"
                walls[f"adapt {mode}"] = pipeline(folder, log, "stage=adapt", "task=arc", *new_tasks,
                                                  f"adapt.base={base}", f"adapt.mode={mode}", f"run_dir={run_dir}")
                pipeline(folder, log, "stage=eval_arc", "task=arc", *new_tasks, f"run_dir={run_dir}")
                results[f"adapt {mode}"] = passes(run_dir)
            # (a): eval_arc of adapt_start, written before any step; its network already is the base's EMA
            # weights, saved as its plain weights (eval.ema=false reads those)
            start_dir = folder / "no_training"
            pipeline(folder, log, "stage=eval_arc", "task=arc", *new_tasks, f"run_dir={start_dir}", "eval.ema=false",
                     f"checkpoint={folder / 'adapt_embeddings' / 'adapt_start'}")
            results["base + mean rows"] = passes(start_dir)
        except subprocess.CalledProcessError:
            sys.stderr.write(log.read_text()[-4000:])
            raise
    return {"passes": results, "walls": walls}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--held-out", type=int, default=16, help="tasks held out of pre-training, then adapted to")
    parser.add_argument("--adapt-steps", type=int, default=600)
    parser.add_argument("--set", nargs="+", default=[], metavar="KEY=VALUE", help="Hydra overrides for every run")
    args = parser.parse_args()
    common = with_arc_source(RECORDED_PRESET + args.set)
    source, candidates = demo_tasks(common)
    args.subset = next(s.split("=", 1)[1] for s in [*common, "task.test_subset=training"] if s.startswith("task.test_subset="))
    held_out = sorted(np.random.default_rng(0).choice(candidates, size=args.held_out, replace=False).tolist())
    print(f"# python bench/bench_adapt.py {' '.join(sys.argv[1:])}".rstrip()
          + f" (commit {commit_label()}, {time.strftime('%Y-%m-%d')}, {os.cpu_count()} CPUs)")
    print(f"# held out of pre-training, then adapted to ({len(held_out)} of the {len(candidates)} demo test tasks): "
          + " ".join(held_out))
    print(f"{'seed':>4} {'setting':<17} {'pass@1':>7} {'pass@2':>7}  wall s")
    worst = {}
    for seed in args.seeds:
        r = bench_seed(seed, held_out, args, common)
        for setting in SETTINGS:
            p1, p2 = r["passes"][setting]
            wall = {"adapt embeddings": r["walls"]["adapt embeddings"], "adapt full": r["walls"]["adapt full"]}.get(setting)
            print(f"{seed:>4} {setting:<17} {p1:>7.3f} {p2:>7.3f}  {'-' if wall is None else f'{wall:.0f}'}", flush=True)
            worst[setting] = min(worst.get(setting, 1.0), p2)
        print(f"#    pre-training {r['walls']['pre-train']:.0f} s", flush=True)
    print("# worst seed, pass@2: " + "; ".join(f"{s} {worst[s]:.3f}" for s in SETTINGS))


if __name__ == "__main__":
    main()
