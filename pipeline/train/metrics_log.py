"""Training metrics: `run_dir/metrics.jsonl`, optional wandb, and a PNG of the curves (the progress line is
`pipeline.progress`).

One JSON object per line, each with `step`. Lines are kept in memory and written out at `flush()`; the
trainer flushes right before each checkpoint, and a resumed run first truncates the file to the
checkpoint's step, so every step appears exactly once however often the run restarts.
"""
import hashlib
import io
import json
import logging
import os
import socket

from pipeline import storage

log = logging.getLogger(__name__)

METRICS = "metrics.jsonl"
CURVES = "curves.png"


def metrics_path(run_dir: str) -> str:
    return storage.join(run_dir, METRICS)


def read_metrics(run_dir: str) -> list[dict]:
    path = metrics_path(run_dir)
    if not storage.exists(path):
        return []
    fs, p = storage.filesystem(path)
    with fs.open(p, "r") as f:
        return [json.loads(line) for line in f if line.strip()]


def _write_text(path: str, text: str) -> None:
    fs, p = storage.filesystem(path)
    with fs.open(p, "w") as f:
        f.write(text)


class MetricsLog:
    """Rank 0's log. `upto_step`: keep only the lines of steps <= it (the checkpoint resumed from)."""

    def __init__(self, run_dir: str, upto_step: int, logger: str = "none", wandb_project: str = "trm",
                 config: dict | None = None):
        self.path = metrics_path(run_dir)
        kept = [r for r in read_metrics(run_dir) if r["step"] <= upto_step]
        # Rewritten once at start (dropping the steps after the checkpoint); appended to afterwards.
        _write_text(self.path, "".join(json.dumps(r) + "\n" for r in kept))
        self.pending: list[dict] = []
        self.wandb_run = start_wandb(run_dir, wandb_project, config or {}) if logger == "wandb" else None

    def log(self, record: dict) -> None:
        self.pending.append(record)
        if self.wandb_run is not None:
            self.wandb_run.log({k: v for k, v in record.items() if k != "step"}, step=record["step"])

    def flush(self) -> None:
        """Append the pending lines (object stores cannot append: the whole file is rewritten there)."""
        if not self.pending:
            return
        lines = "".join(json.dumps(r) + "\n" for r in self.pending)
        fs, p = storage.filesystem(self.path)
        if storage.is_remote(self.path):
            with fs.open(p, "r") as f:
                lines = f.read() + lines
            _write_text(self.path, lines)
        else:
            with open(p, "a") as f:
                f.write(lines)
        self.pending = []

    def close(self) -> None:
        self.flush()
        if self.wandb_run is not None:
            self.wandb_run.finish()


def wandb_mode() -> str:
    """`WANDB_MODE` if set; else online only with an API key and a reachable server (2 s check)."""
    if os.environ.get("WANDB_MODE"):
        return os.environ["WANDB_MODE"]
    has_key = bool(os.environ.get("WANDB_API_KEY")) or os.path.exists(os.path.expanduser("~/.netrc"))
    if not has_key:
        return "offline"
    host = os.environ.get("WANDB_BASE_URL", "https://api.wandb.ai").split("://")[-1].split("/")[0]
    try:
        socket.create_connection((host.split(":")[0], 443), timeout=2).close()
        return "online"
    except OSError:
        return "offline"


def start_wandb(run_dir: str, project: str, config: dict):
    """A wandb run (offline without key or network), or None if wandb fails: logging never blocks training."""
    try:
        import wandb
        mode = wandb_mode()
        # wandb writes locally; a remote run_dir gets its files in the temp folder (`wandb sync` later).
        local = run_dir if not storage.is_remote(run_dir) else os.path.join("/tmp", "trm-wandb")
        os.makedirs(local, exist_ok=True)
        run = wandb.init(project=project, name=os.path.basename(run_dir.rstrip("/")), config=config,
                         dir=local, mode=mode, resume="allow",
                         id="trm-" + hashlib.sha1(run_dir.encode()).hexdigest()[:12],
                         settings=wandb.Settings(init_timeout=30, x_disable_stats=True))
        log.info("wandb: %s mode, files under %s", mode, local)
        return run
    except Exception as err:  # a logger must not stop training
        log.warning("wandb disabled: %s", err)
        return None


def write_curves(run_dir: str) -> str | None:
    """Plot loss, accuracies and evaluation accuracy against step into `run_dir/curves.png`."""
    records = read_metrics(run_dir)
    if not records:
        return None
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    # (title, y-axis label, [(metric, legend label)]); a panel whose metrics never vary is left out (the
    # supervision steps of a run that always runs all of them)
    panels = [("loss", "loss", [("train/lm_loss", "answer loss (train)"), ("train/q_halt_loss", "halting loss (train)")]),
              ("accuracy", "fraction", [("train/accuracy", "token accuracy (train)"),
                                        ("train/exact_accuracy", "whole grid exact (train)"),
                                        ("eval/accuracy", "token accuracy (validation)"),
                                        ("eval/exact_accuracy", "whole grid exact (validation)"),
                                        ("eval/pass@2", "ARC pass@2 (validation: picks best_)")]),
              ("supervision steps per example (train)", "steps", [("train/steps", "mean steps before halting")])]
    series = {key: [(r["step"], r[key]) for r in records if key in r] for _, _, keys in panels for key, _ in keys}
    panels = [p for p in panels if len({round(v, 6) for key, _ in p[2] for _, v in series[key]}) > 1 or p[0] != panels[2][0]]
    fig, axes = plt.subplots(1, len(panels), figsize=(5.5 * len(panels), 4), squeeze=False)
    for ax, (title, ylabel, keys) in zip(axes[0], panels):
        for key, label in keys:
            if series[key]:
                xs, ys = zip(*series[key])
                ax.plot(xs, ys, marker="o" if key.startswith("eval/") else None, label=label)
        ax.set_title(title)
        ax.set_xlabel("training step")
        ax.set_ylabel(ylabel)
        if ax.lines:
            ax.legend(fontsize=8)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    plt.close(fig)
    path = storage.join(run_dir, CURVES)
    fs, p = storage.filesystem(path)
    with fs.open(p, "wb") as f:
        f.write(buffer.getvalue())
    return path
