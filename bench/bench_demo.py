"""The CPU demo, as a user runs it, over several seeds, and without recursion for comparison.

python bench/bench_demo.py [--seeds 0 1 2 3 4] [--task sudoku|maze|arc] [--no-ablation | --ablation-seeds N]
                           [--set task.style=random ...] [--jobs 1]

Each run is `python -m pipeline.run task=T seed=S` plus the `--set` overrides (and the ablation's: T=1,
n=1, N_sup=1, on the first N seeds) in its own temporary folder; the table gives wall time, the validation
split's exact accuracy at the checkpoint the test split was scored with (the final one, or the preset's
`checkpoint: best`; its step is printed below the table; the validation split is what a preset may be tuned
on) and the test split's (eval/<name>/metrics.json: what the README reports). For ARC (task.source defaults to the ARC data beside
the project) the validation column is pass@2 and the test columns are eval_arc's pass@1 and pass@2, all after
voting over the versions, and a last row scores the baseline that answers every test input with the input itself. Record with `python bench/bench_demo.py ... | tee -a bench/results/demo.txt`: the
first line names the command and the commit, and the README's tables must match the latest record.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from record import commit_label
from shared_data import with_arc_source

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from augment import arc  # noqa: E402
from pipeline.tasks.arc import voting as arc_voting  # noqa: E402
from pipeline.stages.eval_arc import ground_truth  # noqa: E402

ABLATION = ["model.H_cycles=1", "model.L_cycles=1", "model.halt_max_steps=1"]


def run_demo(task: str, seed: int, extra: list) -> dict:
    with tempfile.TemporaryDirectory(prefix="trm-demo-") as folder:
        start = time.perf_counter()
        subprocess.run([sys.executable, "-m", "pipeline.run", f"task={task}", f"seed={seed}", *extra],
                       cwd=folder, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wall = time.perf_counter() - start
        run = Path(folder) / "outputs" / f"demo_{task}" / "run"       # the demo preset's run_name
        # the demo's one evaluation: run_dir/eval_arc/<name>/ or run_dir/eval/<name>/ (plain, or best where the
        # preset says)
        found = next((run / ("eval_arc" if task == "arc" else "eval")).glob("*/metrics.json"))
        metrics = json.loads(found.read_text())
        # The validation split's score at the periodic evaluation of the checkpoint the test split was scored
        # with (the final one, or best_ where the preset says checkpoint=best): exact accuracy, for ARC pass@2
        # after voting, as the test split is scored.
        evaluated = {r["step"]: r for r in map(json.loads, (run / "metrics.jsonl").read_text().splitlines())
                     if "eval/exact_accuracy" in r}
        key = "eval/pass@2" if task == "arc" else "eval/exact_accuracy"
        scored = evaluated.get(metrics.get("checkpoint_step"), evaluated[max(evaluated)] if evaluated else {})
        result = {"wall_s": wall, "val": scored.get(key, float("nan")), "step": metrics.get("checkpoint_step")}
        if task == "arc":
            return {**result, "exact": metrics["pass@1"], "per_step": [metrics["pass@2"]],
                    "identity": identity_baseline(str(run.parent / "data"))}
    return {**result, "exact": metrics["exact_accuracy"], "per_step": metrics["exact_accuracy_per_step"]}


def identity_baseline(data_dir: str) -> list:
    """[pass@1, pass@2] of answering each ARC test input with the input itself, scored as eval_arc scores."""
    from pipeline.data import dataset_format
    test_counts, truth = ground_truth(data_dir, dataset_format.read_manifest(data_dir))
    tasks = json.loads((Path(data_dir) / "test_puzzles.json").read_text())
    right = [(tid, i) for tid, t in tasks.items() for i, pair in enumerate(t["test"])
             if arc_voting.grid_hash(arc.as_grid(pair["input"])) == truth[arc_voting.input_key(tid, i)]]
    scores = arc_voting.pass_at_k(test_counts, [t for t, _ in right], [i for _, i in right], [1] * len(right), [1, 2])
    return [scores["pass@1"], scores["pass@2"]]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--task", default="sudoku")
    parser.add_argument("--no-ablation", action="store_true")
    parser.add_argument("--ablation-seeds", type=int, default=1, help="how many of --seeds the ablation runs")
    parser.add_argument("--set", nargs="+", default=[], metavar="KEY=VALUE", help="Hydra overrides for every run")
    parser.add_argument("--jobs", type=int, default=1,
                        help="demos run at once (accuracy does not depend on it; wall time does: each demo "
                             "trains on one CPU, so on 2 cores 2 jobs share the machine)")
    args = parser.parse_args()
    if args.task == "arc":
        args.set = with_arc_source(args.set)
    cases = [("TRM", seed, args.set) for seed in args.seeds]
    if not args.no_ablation:
        cases += [("no recursion", seed, args.set + ABLATION) for seed in args.seeds[:args.ablation_seeds]]
    # The header names the command as typed: tests/test_readme_results.py finds a README table's record by it.
    print(f"# python bench/bench_demo.py {' '.join(sys.argv[1:])}".rstrip()
          + f" (commit {commit_label()}, {time.strftime('%Y-%m-%d')}, {os.cpu_count()} CPUs)")
    first, rest = ("pass@1", "pass@2 (test, after voting)") if args.task == "arc" else ("exact", "exact after each supervision step")
    print(f"{'model':<13} {'seed':>4} {'wall s':>7} {'val':>6} {first:>7}  {rest}")
    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        results = [pool.submit(run_demo, args.task, seed, extra) for _, seed, extra in cases]
        for (name, seed, _), result in zip(cases, results):
            r = result.result()
            steps = " ".join(f"{v:.3f}" for v in r["per_step"])
            print(f"{name:<13} {seed:>4} {r['wall_s']:>7.0f} {r['val']:>6.3f} {r['exact']:>7.3f}  {steps}", flush=True)
    if args.task == "arc":
        identity = results[0].result()["identity"]
        print(f"{'identity':<13} {'-':>4} {'-':>7} {'-':>6} {identity[0]:>7.3f}  {identity[1]:.3f}")
    print("# step of the checkpoint scored: " + ", ".join(f"{name} {seed}: {r.result()['step']}"
                                                        for (name, seed, _), r in zip(cases, results)))
    if len(cases) > 1:
        # ARC ranks by pass@2, the ARC Prize measure; the others by the final answer's exact accuracy
        measure, score = ("pass@2", lambda r: r["per_step"][0]) if args.task == "arc" else ("exact", lambda r: r["exact"])
        worst = min((r.result() for r in results[:len(args.seeds)]), key=score)
        print(f"# worst seed: {score(worst):.3f} {measure}; slowest demo {max(r.result()['wall_s'] for r in results):.0f} s")


if __name__ == "__main__":
    main()
