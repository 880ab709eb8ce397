"""How fast report.html opens and scrolls at full evaluation size, in the system's Chromium.

python bench/bench_report.py [--sudoku 10000] [--sudoku-steps 16] [--arc-inputs 419] [--arc-versions 1000]

Writes synthetic predictions of the shape real evaluations write (no model): a Sudoku stage=eval of
--sudoku 9x9 puzzles with every step recorded, and an ARC-AGI-1-sized stage=eval_arc (--arc-inputs test
inputs of 400 tasks, --arc-versions voting versions each, ~20 distinct answers per input), builds each
report with `pipeline.results.report.build`, then opens it from disk in headless Chromium (playwright driving
/usr/bin/chromium) and measures: the time from navigation to the first puzzle drawn, to the charts drawn,
selecting the last puzzle (loads another data file), switching a filter, and scrolling the whole list in 40
steps (the longest gap between animation frames while scrolling).
"""
import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from record import commit_label

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from pipeline.options import ReportOptions  # noqa: E402
from pipeline.results import report  # noqa: E402
from pipeline.tasks.arc import voting as arc_voting
from pipeline.data import dataset_format as fmt  # noqa: E402

CHROMIUM = "/usr/bin/chromium"
BROWSER_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                "--no-first-run", "--disable-sync", "--disable-dev-shm-usage"]


def write_parquet(directory: Path, columns: dict) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    pq.write_table(fmt.arrow_table(columns), directory / "part-00000.parquet", compression="zstd")


def synthetic_sudoku(run_dir: Path, n: int, steps: int, copies: int = 1, seed: int = 0) -> None:
    """run_dir/eval/: 9x9 puzzles whose answers converge on the labels over the steps (as a trained model's do)."""
    rng = np.random.default_rng(seed)
    L = 81
    labels = rng.integers(2, 11, (n, L), dtype=np.uint8)
    inputs = np.where(rng.random((n, L)) < 0.3, labels, 1).astype(np.uint8)
    wrong_rate = np.linspace(0.5, 0.01, steps)[None, :, None, None] * rng.random((n, 1, 1, 1)) * 2
    noise = rng.integers(2, 11, (n, steps, copies, L), dtype=np.uint8)
    step_preds = np.where(rng.random((n, steps, copies, L)) < wrong_rate, noise, labels[:, None, None, :])
    step_q = (np.linspace(-3, 3, steps)[None, :, None] + rng.normal(0, 1, (n, steps, copies))).astype(np.float32)
    answer_copy = np.zeros(n, np.int16)
    preds = step_preds[:, -1, 0]
    exact = (preds == labels).all(1)
    positive = step_q[:, :, 0] > 0
    write_parquet(run_dir / "eval" / "predictions", {
        "inputs": inputs, "labels": labels, "puzzle_identifier": np.zeros(n, np.int32),
        "group_id": np.arange(n, dtype=np.int64), "aug_index": np.zeros(n, np.int32), "preds": preds,
        "q_halt": step_q[:, -1, 0], "answer_step": np.full(n, steps, np.int16), "answer_copy": answer_copy,
        "halt_step": np.where(positive.any(1), positive.argmax(1) + 1, steps).astype(np.int16),
        "exact": exact, "token_accuracy": (preds == labels).mean(1).astype(np.float32), "has_labels": np.ones(n, bool),
        "oracle": (step_preds == labels[:, None, None, :]).all(-1).any((1, 2)), "exact_vote": exact,
        "step_preds": step_preds, "step_q_halt": step_q, "copy_answer_step": np.full((n, copies), steps, np.int16)})
    per_step = (step_preds[:, :, 0] == labels[:, None]).all(-1).mean(0).tolist()
    metrics = {"task": "sudoku", "count": n, "puzzles": n, "exact_accuracy": float(exact.mean()),
               "token_accuracy": float((preds == labels).mean()), "oracle_rate": 0.0, "mean_halting_step": 0.0,
               "exact_accuracy_per_step": per_step, "token_accuracy_per_step": per_step,
               "q_halt_accuracy_per_step": per_step, "checkpoint": "synthetic", "checkpoint_step": 0,
               "settings": [{"max_steps": steps, "trajectories": copies, "noise": 0.0, "tta": 1, "select": "vote",
                             "exact_accuracy": float(exact.mean()), "oracle_rate": 0.0, "seconds_per_puzzle": 0.0}]}
    (run_dir / "eval" / "metrics.json").write_text(json.dumps(metrics))


def synthetic_arc(run_dir: Path, data_dir: Path, inputs: int, versions: int, seed: int = 0) -> None:
    """data_dir/test_puzzles.json and run_dir/eval_arc/: `inputs` test inputs over tasks of one or two (ARC-AGI-1's
    evaluation set: 419 over 400), each predicted by `versions` versions spread over 20 distinct answers (Zipf-like
    votes), the true output among them."""
    rng = np.random.default_rng(seed)
    tasks = round(inputs * 400 / 419)
    per_task = np.ones(tasks, int)
    per_task[rng.choice(tasks, inputs - tasks, replace=False)] += 1
    grid = lambda: rng.integers(0, 10, tuple(rng.integers(3, 16, 2))).tolist()  # noqa: E731
    puzzles, keys = {}, []
    for t in range(tasks):
        tid = f"{t:08x}"
        puzzles[tid] = {"train": [{"input": grid(), "output": grid()} for _ in range(3)],
                        "test": [{"input": grid(), "output": grid()} for _ in range(per_task[t])]}
        keys += [(tid, i) for i in range(per_task[t])]
    data_dir.mkdir(parents=True, exist_ok=True)
    (data_dir / "test_puzzles.json").write_text(json.dumps(puzzles))
    columns = {k: [] for k in ("task_id", "example_index", "aug_index", "answer_hash", "height", "width", "answer",
                               "q_halt")}
    weights = 1.0 / np.arange(1, 21)
    for tid, i in keys:
        truth = np.asarray(puzzles[tid]["test"][i]["output"], np.uint8)
        candidates = [truth] + [rng.integers(0, 10, truth.shape).astype(np.uint8) for _ in range(19)]
        rng.shuffle(candidates)
        pick = rng.choice(20, versions, p=weights / weights.sum())
        columns["task_id"].append(np.full(versions, tid, dtype=object))
        columns["example_index"].append(np.full(versions, i, np.int16))
        columns["aug_index"].append(np.arange(versions, dtype=np.int32))
        columns["answer_hash"].append(np.array([arc_voting.grid_hash(c) for c in candidates], dtype=object)[pick])
        columns["height"].append(np.array([c.shape[0] for c in candidates], np.int8)[pick])
        columns["width"].append(np.array([c.shape[1] for c in candidates], np.int8)[pick])
        columns["answer"].append(np.array([c.tobytes() for c in candidates], dtype=object)[pick])
        columns["q_halt"].append(rng.normal(0, 1, versions).astype(np.float32))
    out = run_dir / "eval_arc" / "predictions"
    out.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table({k: np.concatenate(v) for k, v in columns.items()}), out / "part-00000.parquet",
                   compression="zstd")
    (run_dir / "eval_arc" / "metrics.json").write_text(json.dumps(
        {"tasks": tasks, "test_inputs": inputs, "predictions": inputs * versions, "pass@1": 0.0, "pass@2": 0.0}))


MEASURE_SCROLL = """async () => {
  const list = document.getElementById('list');
  let last = performance.now(), worst = 0, running = true;
  const frame = () => { const now = performance.now(); worst = Math.max(worst, now - last); last = now; if (running) requestAnimationFrame(frame); };
  requestAnimationFrame(frame);
  const start = performance.now();
  for (let k = 1; k <= 40; k++) {
    list.scrollTop = list.scrollHeight * k / 40;
    await new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)));
  }
  running = false;
  return {total: performance.now() - start, worst};
}"""


def measure(page_path: Path, screenshot: Path | None) -> dict:
    from playwright.sync_api import sync_playwright
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=BROWSER_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        errors = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.goto("about:blank")                                     # the browser is up, as a user's is
        start = time.perf_counter()
        page.goto(page_path.as_uri(), wait_until="commit")
        page.wait_for_selector(".detail h2")
        first = time.perf_counter() - start
        page.wait_for_function("performance.getEntriesByName('trm-charts').length > 0")
        charts = time.perf_counter() - start
        marks = page.evaluate("Object.fromEntries(performance.getEntriesByType('mark').map(m => [m.name, m.startTime]))")
        t = time.perf_counter()
        page.keyboard.press("End")                                  # the last puzzle: another data file
        page.wait_for_function("TRM_REPORT.state.i === TRM_REPORT.state.shown[TRM_REPORT.state.shown.length - 1]")
        last_item = time.perf_counter() - t
        t = time.perf_counter()
        page.select_option("#filter", "wrong")
        page.wait_for_function("TRM_REPORT.state.item && TRM_REPORT.state.i === TRM_REPORT.state.shown[0]")
        filter_s = time.perf_counter() - t
        page.select_option("#filter", "all")
        scroll = page.evaluate(MEASURE_SCROLL)
        if screenshot:
            page.evaluate("TRM_REPORT.state.list.scrollTop = 0")
            page.screenshot(path=str(screenshot), full_page=True)
        browser.close()
    if errors:
        raise SystemExit(f"console errors: {errors[:3]}")
    return {"open_to_first_item_s": first, "open_to_charts_s": charts, "page_first_item_s": marks["trm-first-item"] / 1000,
            "page_charts_s": marks["trm-charts"] / 1000, "last_item_s": last_item,
            "filter_s": filter_s, "scroll_40_steps_s": scroll["total"] / 1000, "worst_frame_ms": scroll["worst"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sudoku", type=int, default=10000)
    parser.add_argument("--sudoku-steps", type=int, default=16)
    parser.add_argument("--arc-inputs", type=int, default=419)
    parser.add_argument("--arc-versions", type=int, default=1000)
    parser.add_argument("--screenshots", default=None, help="folder for a screenshot of each page")
    args = parser.parse_args()
    options = ReportOptions(enabled=True, max_items=10000, page_size=100, arc_answers=10)
    lines = [f"# python bench/bench_report.py --sudoku {args.sudoku} --sudoku-steps {args.sudoku_steps} --arc-inputs "
             f"{args.arc_inputs} --arc-versions {args.arc_versions} (commit {commit_label()}, "
             f"{time.strftime('%Y-%m-%d')}; Chromium headless, {os.cpu_count()} CPUs, load average "
             f"{os.getloadavg()[0]:.0f} at the start: seconds are loaded-machine figures)",
             "first item / charts: from navigation to the first puzzle / all charts drawn (in the page: its own clock "
             "from navigation start; wall: as the driver waits); last item: End key (loads the last data file)",
             f"{'report':<28} {'build s':>8} {'MB':>6} {'first item s':>12} {'(in page)':>9} {'charts s':>9} "
             f"{'(in page)':>9} {'last item s':>11} {'filter s':>9} {'scroll s':>9} {'worst frame ms':>15}"]
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for name, make in ((f"sudoku {args.sudoku} x {args.sudoku_steps} steps",
                            lambda run: synthetic_sudoku(run, args.sudoku, args.sudoku_steps)),
                           (f"arc {args.arc_inputs} x {args.arc_versions} versions",
                            lambda run: synthetic_arc(run, tmp / "arc_data", args.arc_inputs, args.arc_versions))):
            run = tmp / name.split()[0]
            make(run)
            start = time.perf_counter()
            page = report.build(str(run), str(tmp / "arc_data"), options)
            built = time.perf_counter() - start
            size = sum(f.stat().st_size for f in (run / report.DATA).rglob("*") if f.is_file()) / 1e6
            shot = Path(args.screenshots) / f"bench_{name.split()[0]}.png" if args.screenshots else None
            m = measure(Path(page), shot)
            lines.append(f"{name:<28} {built:>8.1f} {size:>6.1f} {m['open_to_first_item_s']:>12.2f} "
                         f"{m['page_first_item_s']:>9.2f} {m['open_to_charts_s']:>9.2f} {m['page_charts_s']:>9.2f} "
                         f"{m['last_item_s']:>11.2f} {m['filter_s']:>9.2f} "
                         f"{m['scroll_40_steps_s']:>9.2f} {m['worst_frame_ms']:>15.0f}")
            print(lines[-1], flush=True)
    print("\n".join(lines))
    with open(ROOT / "bench" / "results" / "report.txt", "a") as f:
        f.write("\n".join(lines) + "\n\n")


if __name__ == "__main__":
    main()
