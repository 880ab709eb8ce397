"""Where each `stage=eval` / `stage=eval_arc` evaluation is kept, and the results table across them.

Each evaluation writes `run_dir/<stage>/<name>/`, `<name>` listing the settings that differ from the plain
pass of the latest checkpoint (`plain`; e.g. `tta8`, `k8-noise0.1-select-q_halt`, `best-tta8`; for ARC
`aug100`, `best-steps8`, `rescored-plain`), so a second evaluation with other settings never erases the
first. `run_dir/<stage>/results.json` holds one row per (name, checkpoint): the headline numbers of each
evaluation ever kept there, which the stage and the `stage=all` summary print.
"""
import posixpath
import re

from pipeline import storage
from pipeline.options import Options

EVAL_DIR = "eval"
ARC_DIR = "eval_arc"
STAGES = (EVAL_DIR, ARC_DIR)
RESULTS_FILE = "results.json"
METRICS_FILE = "metrics.json"      # written last into an evaluation's folder: the folder is whole when it is there
PLAIN = "plain"


def _number(value) -> str:
    return f"{float(value):g}"


def _folder_name(path) -> str:
    return posixpath.basename(str(path).rstrip("/"))


def evaluation_name(cfg, stage: str = EVAL_DIR) -> str:
    """The settings of `cfg.eval` (and `checkpoint=`; for `stage=eval_arc`, `cfg.eval_arc`) that differ from
    the plain pass, joined by '-'."""
    options = Options.of(cfg)
    e, ea = options.eval, options.eval_arc
    if stage == ARC_DIR and ea.predictions:   # a re-scoring: named by the evaluation it re-scores
        return _safe("rescored-" + _folder_name(posixpath.dirname(ea.predictions.rstrip("/"))))
    parts = []
    if cfg.checkpoint not in (None, "latest"):
        parts.append("best" if cfg.checkpoint == "best" else _folder_name(cfg.checkpoint))
    parts += ["raw"] * (not e.ema) + ["halt_on_q"] * e.halt_on_q
    if e.max_steps is not None:
        parts.append(f"steps{e.max_steps}")
    if stage == ARC_DIR:     # eval_arc reads the inference settings above, not stage=eval's test-time compute
        if ea.num_aug is not None:
            parts.append(f"aug{ea.num_aug}")
        return _safe("-".join(parts))
    stochastic = (e.trajectories > 1 and e.noise > 0) or e.tta > 1
    if e.trajectories > 1:
        parts.append(f"k{e.trajectories}")
    if e.noise > 0:
        parts.append(f"noise{_number(e.noise)}")
    if e.tta > 1:
        parts.append(f"tta{e.tta}")
    if e.select != ("vote",):
        parts.append("select-" + "+".join(e.select))
    if stochastic and e.seed is not None:
        parts.append(f"seed{e.seed}")
    if e.limit:
        parts.append(f"limit{e.limit}")
    if e.source:
        parts.append("source-" + _folder_name(e.source).rsplit(".", 1)[0])
    return _safe("-".join(parts))


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.+-]", "_", name) or PLAIN


def output_dir(cfg, stage: str = EVAL_DIR) -> str:
    """`run_dir/<stage>/<name>/` for this config (`stage`: eval or eval_arc)."""
    return storage.join(cfg.run_dir, stage, evaluation_name(cfg, stage))


def metrics_path(out_dir: str) -> str:
    return storage.join(out_dir, METRICS_FILE)


def discover(run_dir: str) -> list[tuple[str, str]]:
    """[(stage, folder)] of every evaluation in run_dir: `<stage>/metrics.json` and `<stage>/<name>/metrics.json`
    (one folder per evaluation setting)."""
    found = []
    for stage in STAGES:
        base = storage.join(run_dir, stage)
        found += [(stage, folder) for folder in [base, *storage.list_folders(base)]
                  if storage.exists(metrics_path(folder))]
    return found


def results_path(run_dir: str, stage: str = EVAL_DIR) -> str:
    return storage.join(run_dir, stage, RESULTS_FILE)


def read_results(run_dir: str, stage: str = EVAL_DIR) -> list[dict]:
    path = results_path(run_dir, stage)
    return storage.read_json(path) if storage.exists(path) else []


def record(run_dir: str, name: str, metrics: dict, stage: str = EVAL_DIR) -> list[dict]:
    """Add (or replace) this evaluation's row of the results table; returns the table."""
    row = {"name": name, "checkpoint": metrics.get("checkpoint"), "checkpoint_step": metrics.get("checkpoint_step")}
    if stage == ARC_DIR:
        row.update({k: metrics.get(k) for k in ("num_aug", "tasks", "test_inputs", "predictions", "predictions_from")},
                   passes={k: v for k, v in metrics.items() if k.startswith("pass@")})
    else:
        row.update(source=metrics.get("source"), count=metrics.get("count"), puzzles=metrics.get("puzzles"),
                   settings=metrics.get("settings", []))
    rows = [r for r in read_results(run_dir, stage) if (r["name"], r["checkpoint"]) != (name, row["checkpoint"])]
    rows.append(row)
    rows.sort(key=lambda r: (r["checkpoint_step"] or 0, r["name"] != PLAIN, r["name"]))
    storage.write_json_atomic(results_path(run_dir, stage), rows)
    return rows


def _percent(value) -> str:
    return "-" if value is None else f"{value:.1%}"


def table_lines(rows: list[dict], stage: str = EVAL_DIR) -> list[str]:
    """The results table: one line per evaluation (stage=eval: and selector), the plain pass first for each
    checkpoint."""
    if not rows:
        return []
    if stage == ARC_DIR:
        return _arc_table_lines(rows)
    lines = [f"{'evaluation':<28} {'step':>7} {'select':>10} {'scored':>7} {'exact':>8} {'oracle':>8} {'s/puzzle':>9}"]
    for r in rows:
        step = "-" if r["checkpoint_step"] is None else r["checkpoint_step"]
        for s in r["settings"] or [{}]:
            exact, oracle = (_percent(s.get(k)) for k in ("exact_accuracy", "oracle_rate"))
            lines.append(f"{r['name']:<28} {step:>7} {s.get('select', '-'):>10} {r['count'] or 0:>7,} {exact:>8} "
                         f"{oracle:>8} {s.get('seconds_per_puzzle', 0):>9.4f}")
    return lines


def _arc_table_lines(rows: list[dict]) -> list[str]:
    """ARC rows: versions voting per test input, then pass@1 and pass@2 (the two attempts the ARC Prize scores)."""
    lines = [f"{'evaluation':<28} {'step':>7} {'inputs':>7} {'versions':>8} {'pass@1':>8} {'pass@2':>8}"]
    for r in rows:
        step = "-" if r["checkpoint_step"] is None else r["checkpoint_step"]
        versions = round((r["predictions"] or 0) / max(1, r["test_inputs"] or 0))
        passes = (_percent(r["passes"].get(f"pass@{k}")) for k in (1, 2))
        lines.append(f"{r['name']:<28} {step:>7} {r['test_inputs'] or 0:>7,} {versions:>8} "
                     + " ".join(f"{p:>8}" for p in passes))
    return lines
