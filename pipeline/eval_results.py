"""Where each `stage=eval` evaluation is kept, and the results table across them.

Each evaluation writes `run_dir/eval/<name>/`, `<name>` listing the settings that differ from the plain
pass of the latest checkpoint (`plain`; e.g. `tta8`, `k8-noise0.1-select-q_halt`, `best-tta8`), so a
second evaluation with other settings never erases the first. `run_dir/eval/results.json` holds one row
per (name, checkpoint): the headline numbers of each evaluation ever kept there, which `stage=eval` and
the `stage=all` summary print.
"""
import posixpath
import re

from pipeline import storage

EVAL_DIR = "eval"
RESULTS_FILE = "results.json"
PLAIN = "plain"


def _number(value) -> str:
    return f"{float(value):g}"


def evaluation_name(cfg) -> str:
    """The settings of `cfg.eval` (and `checkpoint=`) that differ from the plain pass, joined by '-'."""
    e = cfg.eval
    select = [e.select] if isinstance(e.select, str) else list(e.select)
    stochastic = (int(e.trajectories) > 1 and float(e.noise) > 0) or int(e.tta) > 1
    parts = []
    if cfg.checkpoint not in (None, "latest"):
        parts.append("best" if cfg.checkpoint == "best" else posixpath.basename(str(cfg.checkpoint).rstrip("/")))
    parts += ["raw"] * (not e.ema) + ["halt_on_q"] * bool(e.halt_on_q)
    if e.max_steps is not None:
        parts.append(f"steps{int(e.max_steps)}")
    if int(e.trajectories) > 1:
        parts.append(f"k{int(e.trajectories)}")
    if float(e.noise) > 0:
        parts.append(f"noise{_number(e.noise)}")
    if int(e.tta) > 1:
        parts.append(f"tta{int(e.tta)}")
    if select != ["vote"]:
        parts.append("select-" + "+".join(select))
    if stochastic and e.seed is not None:
        parts.append(f"seed{int(e.seed)}")
    if e.limit:
        parts.append(f"limit{int(e.limit)}")
    if e.source:
        parts.append("source-" + posixpath.basename(str(e.source).rstrip("/")).rsplit(".", 1)[0])
    return re.sub(r"[^A-Za-z0-9_.+-]", "_", "-".join(parts)) or PLAIN


def output_dir(cfg) -> str:
    """`run_dir/eval/<name>/` for this config."""
    return storage.join(cfg.run_dir, EVAL_DIR, evaluation_name(cfg))


def results_path(run_dir: str) -> str:
    return storage.join(run_dir, EVAL_DIR, RESULTS_FILE)


def read_results(run_dir: str) -> list[dict]:
    path = results_path(run_dir)
    return storage.read_json(path) if storage.exists(path) else []


def record(run_dir: str, name: str, metrics: dict) -> list[dict]:
    """Add (or replace) this evaluation's row of the results table; returns the table."""
    row = {"name": name, "checkpoint": metrics["checkpoint"], "checkpoint_step": metrics.get("checkpoint_step"),
           "source": metrics.get("source"), "count": metrics.get("count"), "puzzles": metrics.get("puzzles"),
           "settings": metrics.get("settings", [])}
    rows = [r for r in read_results(run_dir) if (r["name"], r["checkpoint"]) != (name, row["checkpoint"])]
    rows.append(row)
    rows.sort(key=lambda r: (r["checkpoint_step"] or 0, r["name"] != PLAIN, r["name"]))
    storage.write_json_atomic(results_path(run_dir), rows)
    return rows


def _percent(value) -> str:
    return "-" if value is None else f"{value:.1%}"


def table_lines(rows: list[dict]) -> list[str]:
    """The results table: one line per evaluation and selector, the plain pass first for each checkpoint."""
    if not rows:
        return []
    lines = [f"{'evaluation':<28} {'step':>7} {'select':>10} {'scored':>7} {'exact':>8} {'oracle':>8} {'s/puzzle':>9}"]
    for r in rows:
        step = "-" if r["checkpoint_step"] is None else r["checkpoint_step"]
        for s in r["settings"] or [{}]:
            exact, oracle = (_percent(s.get(k)) for k in ("exact_accuracy", "oracle_rate"))
            lines.append(f"{r['name']:<28} {step:>7} {s.get('select', '-'):>10} {r['count'] or 0:>7,} {exact:>8} "
                         f"{oracle:>8} {s.get('seconds_per_puzzle', 0):>9.4f}")
    return lines
