"""report.html: built from a tiny Sudoku run's files (stage=train then stage=eval with 2 trajectories x 2 TTA
versions), its data checked against the predictions Parquet, and the page driven in a real browser (the
system's Chromium): stepping through a puzzle's supervision steps draws the recorded answers, a filter
narrows the list, no console error and no network request."""
import json
import os
import re
import shutil

import numpy as np
import pyarrow.parquet as pq
import pytest

from pipeline import storage
from pipeline.data import dataset_format as fmt
from pipeline.results import evaluations, report
from pipeline.run import run_stage
from tests.conftest import compose

CHROMIUM = "/usr/bin/chromium"
BROWSER_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                "--no-first-run", "--disable-sync", "--disable-dev-shm-usage"]
COPIES = 4   # eval.trajectories=2 x eval.tta=2


@pytest.fixture(scope="module")
def sudoku_report(sudoku_run, tmp_path_factory):
    trained, _ = sudoku_run
    assert (trained / "run" / "report.html").exists()        # written by stage=train: the curves, no evaluation yet
    root = tmp_path_factory.mktemp("report")
    shutil.copytree(trained / "run", root / "run")            # an evaluation of its own, beside test_eval's
    shutil.rmtree(root / "run" / "eval", ignore_errors=True)  # theirs, when test_eval ran first: this one alone
    paths = [f"data_dir={trained / 'data'}", f"run_dir={root / 'run'}", "task=sudoku"]
    run_stage(compose("stage=eval", *paths, "eval.batch_size=6", "eval.trajectories=2", "eval.noise=0.5",
                      "eval.tta=2", "eval.select=[vote,q_halt]", "eval.limit=12", "report.page_size=5"))
    table = pq.read_table(str(_evaluation_dir(root) / "predictions"))
    rows = {name: fmt.column_numpy(table.column(name)) for name in table.column_names}
    return root, paths, rows


def _evaluation_dir(root):
    """The one evaluation folder of the fixture's run (run_dir/eval/<name>/, named by its settings)."""
    (folder,) = [path.parent for path in (root / "run" / "eval").glob("*/metrics.json")]
    return folder


def _data_files(run_dir) -> dict:
    """What the page's scripts register, read back as JSON: {'index': ..., (key, page): items}."""
    found = {}
    for path in sorted((run_dir / report.DATA).rglob("*.js")):
        if path.name == "plotly.min.js":
            continue
        text = path.read_text()
        name, args = re.fullmatch(r"TRM_REPORT\.(\w+)\((.*)\);\n", text, re.S).groups()
        args = json.loads(f"[{args}]")
        found["index" if name == "index" else (args[0], args[1])] = args[0] if name == "index" else args[2]
    return found


def test_page_data_are_the_recorded_predictions(sudoku_report):
    root, _, rows = sudoku_report
    n = len(rows["preds"])
    steps = rows["step_preds"].reshape(n, -1, COPIES, 36)
    assert steps.shape[1] == 3 and rows["step_q_halt"].reshape(n, -1).shape[1] == 3 * COPIES
    # the selected answer is one copy's answer at one step: the recorded steps hold it
    chosen = steps[np.arange(n), rows["answer_step"] - 1, rows["answer_copy"]]
    assert (chosen == rows["preds"]).all()
    files = _data_files(root / "run")
    index = files["index"]
    assert index["training"]["figures"] and index["training"]["config"]["model"]["hidden_size"] == 32
    (ev,) = index["evaluations"]
    assert ev["name"] == f"eval/{_evaluation_dir(root).name}" and ev["count"] == n and len(ev["index"]["id"]) == n
    items = [item for page in range(-(-n // 5)) for item in files[(ev["key"], page)]]
    for i, item in enumerate(items):
        assert item["input"] == "".join("0123456789"[t] for t in rows["inputs"][i])
        decoded = np.array([[[int(ch, 36) for ch in copy] for copy in step] for step in item["steps"]])
        assert (decoded == steps[i]).all()
        assert np.allclose(item["q"], rows["step_q_halt"].reshape(n, -1, COPIES)[i], atol=1e-4)
        assert sum(v["count"] for v in item["votes"]) == COPIES
        assert [v["answer"] for v in item["votes"] if v["selected"]] == [item["answer"]]
    right = np.array(ev["index"]["flags"]) & report.RIGHT > 0
    assert (right == rows["exact"]).all()


def test_both_evaluation_layouts_are_found(sudoku_report, tmp_path):
    """run_dir/eval/metrics.json (one evaluation) and run_dir/eval/<name>/metrics.json (one per setting)."""
    root, _, _ = sudoku_report
    run_dir = tmp_path / "run"
    shutil.copytree(_evaluation_dir(root), run_dir / "eval" / "noisy")
    shutil.copytree(_evaluation_dir(root), run_dir / "eval" / "plain")
    shutil.copytree(_evaluation_dir(root), run_dir / "eval", dirs_exist_ok=True)
    assert [os.path.relpath(folder, run_dir) for _, folder in evaluations.discover(str(run_dir))] == \
        ["eval", "eval/noisy", "eval/plain"]
    result = run_stage(compose("stage=report", f"run_dir={run_dir}", f"data_dir={tmp_path / 'none'}"))
    assert result["report"] == storage.join(str(run_dir), report.PAGE)
    names = [e["name"] for e in _data_files(run_dir)["index"]["evaluations"]]
    assert names == ["eval", "eval/noisy", "eval/plain"]
    assert not [p for p in os.listdir(run_dir / report.DATA) if p.endswith(".tmp")]   # index.js written whole


def test_report_in_a_real_browser(sudoku_report):
    if not os.path.exists(CHROMIUM):
        pytest.skip(f"no {CHROMIUM}: install it (as root) with `apt-get update && apt-get install -y chromium` "
                    f"to run the report's browser test")
    from playwright.sync_api import sync_playwright
    root, _, rows = sudoku_report
    n = len(rows["preds"])
    steps = rows["step_preds"].reshape(n, -1, COPIES, 36)
    page_url = (root / "run" / report.PAGE).as_uri()
    errors, requests = [], []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=BROWSER_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.on("request", lambda r: requests.append(r.url))
        page.goto(page_url)
        page.wait_for_selector("#step-grid")
        state = lambda: page.evaluate("({i: TRM_REPORT.state.i, step: TRM_REPORT.state.step, copy: TRM_REPORT.state.copy})")  # noqa: E731
        drawn = lambda: [int(v) for v in page.eval_on_selector_all("#step-grid .cell", "cs => cs.map(c => c.dataset.v)")]  # noqa: E731
        first = state()
        for _ in range(3):                                       # back to step 1, then through every step
            page.keyboard.press("ArrowLeft")
        for s in range(1, steps.shape[1] + 1):
            now = state()
            assert now["step"] == s and now["i"] == first["i"]
            assert drawn() == steps[now["i"], s - 1, now["copy"]].tolist()
            page.keyboard.press("ArrowRight")
        page.keyboard.press("ArrowDown")                          # the next puzzle (another data file if past 5)
        page.wait_for_function(f"TRM_REPORT.state.i !== {first['i']}")
        now = state()
        assert drawn() == steps[now["i"], now["step"] - 1, now["copy"]].tolist()
        page.select_option("#filter", "wrong")
        page.wait_for_timeout(100)
        shown = page.eval_on_selector_all(".vrow", "rs => rs.map(r => +r.dataset.i)")
        assert sorted(shown) == np.flatnonzero(~rows["exact"]).tolist()
        page.click("#tab-0")                                     # the training tab: plotly charts drawn
        page.wait_for_selector(".chart .main-svg")
        browser.close()
    assert errors == []
    assert [u for u in requests if not u.startswith("file://")] == []


def test_arc_items_rank_the_voted_answers_with_their_versions():
    """eval_arc predictions -> per test input: answers ranked by votes with the versions that gave them, the
    true output's rank and the filters' flags (no Ray: the page's data from the files' columns)."""
    from pipeline.tasks.arc import voting
    grids = {name: np.full((2, 3), colour, np.uint8) for colour, name in enumerate("abc")}
    puzzles = {"t1": {"train": [{"input": [[1]], "output": [[2]]}], "test": [{"input": [[0]], "output": grids["b"].tolist()},
                                                                           {"input": [[0]], "output": grids["c"].tolist()}]},
               "t2": {"train": [], "test": [{"input": [[0]], "output": [[5]]}]}}
    # t1:0 votes a a a b (true output b at rank 2); t1:1 votes c c a (c at rank 1); t2:0 no prediction
    voted = [("t1", 0, "a"), ("t1", 0, "a"), ("t1", 0, "b"), ("t1", 0, "a"), ("t1", 1, "c"), ("t1", 1, "a"), ("t1", 1, "c")]
    rows = {"task_id": np.array([t for t, _, _ in voted], dtype=object),
            "example_index": np.array([e for _, e, _ in voted], np.int16),
            "aug_index": np.arange(len(voted), dtype=np.int32),
            "answer_hash": np.array([voting.grid_hash(grids[g]) for _, _, g in voted], dtype=object),
            "height": np.full(len(voted), 2, np.int8), "width": np.full(len(voted), 3, np.int8),
            "answer": np.array([grids[g].tobytes() for _, _, g in voted], dtype=object),
            "q_halt": np.zeros(len(voted), np.float32)}
    index, details = report.arc_items(rows, puzzles, shown=1)
    assert index["id"] == ["t1:0", "t1:1", "t2:0"]
    assert index["flags"] == [report.IN_ATTEMPTS, report.RIGHT | report.IN_ATTEMPTS, 0]
    first = details[0]
    assert [(a["rank"], a["count"], a["versions"], a["correct"]) for a in first["answers"]] == \
        [(1, 3, [0, 1, 3], False), (2, 1, [2], True)]          # rank 2 shown (beyond shown=1): it is the true output
    assert first["answers"][1]["grid"] == grids["b"].tolist() and first["train"] == puzzles["t1"]["train"]
    assert details[1]["correct_rank"] == 1 and details[2]["answers"] == [] and details[2]["predictions"] == 0


def test_report_of_a_run_dir_on_s3(sudoku_report, s3_bucket, tmp_path):
    """A run folder on S3 gets its report there; copied down, it is the same page and data."""
    import fsspec
    root, _, _ = sudoku_report
    fs = fsspec.filesystem("s3")
    fs.put(str(_evaluation_dir(root)), f"{s3_bucket}/run/eval/plain", recursive=True)
    run_stage(compose("stage=report", f"run_dir={s3_bucket}/run", f"data_dir={tmp_path / 'none'}"))
    fs.get(f"{s3_bucket}/run", str(tmp_path / "copy"), recursive=True)
    index = _data_files(tmp_path / "copy")["index"]
    assert [e["name"] for e in index["evaluations"]] == ["eval/plain"] and index["evaluations"][0]["count"] == 12
    assert (tmp_path / "copy" / report.PAGE).read_text() == (root / "run" / report.PAGE).read_text()
    assert (tmp_path / "copy" / report.DATA / "plotly.min.js").stat().st_size > 1e6
