"""Progress in the driver's terminal: training (one live line, a short line per evaluation) and data
generation (puzzles made so far).

Ray forwards a worker's output line by line, so a progress bar drawn on a worker arrives as one new line
per refresh (hundreds per demo). Instead the workers post to a small actor (`Board` for training records,
`Tally` for counts), and the driver, which owns the terminal, polls it and draws the bar itself.
"""
import math
import sys
import threading
import time

import ray

SEND_EVERY_S = 0.5      # rank 0 posts at most this often (and always when a record holds evaluation results)
POLL_EVERY_S = 1.0      # the driver reads the board this often


def _has_evaluation(record: dict) -> bool:
    return any(k.startswith("eval/") for k in record)


@ray.remote(num_cpus=0)
class Board:
    """The latest training record and the evaluation records not yet shown."""

    def __init__(self):
        self.latest, self.evaluations = None, []

    def post(self, record: dict) -> None:
        self.latest = record
        if _has_evaluation(record):
            self.evaluations.append(record)

    def take(self) -> tuple:
        shown, self.evaluations = self.evaluations, []
        return self.latest, shown


def _due(after: int, upto: int, every: int) -> int:
    """How many multiples of `every` lie in (after, upto]."""
    return upto // every - after // every if every > 0 and upto > after else 0


class TrainingEta:
    """Seconds left in a training run, from its records (rank 0's `Poster` sees every one).

    Steps, periodic evaluations and checkpoint saves are timed apart, so a pause is not read as slow
    training (a rate over wall time counts an evaluation's seconds as steps' time: the ETA then swung from
    22 min to 1 h 28 and back after each evaluation). The estimate is
        (steps left) x (seconds a step takes: wall time since the first record, less the evaluations and
                        saves within it, over the steps since)
      + (evaluations left) x (the last evaluation's seconds, less its one-off compile)
      + (saves left) x (the last save's seconds: writing and reporting the checkpoint).
    An evaluation or a save counts 0 until the first one has been timed (its cost is unknown until then).
    Records give the timings: `time`, `train/evaluation_s` and `eval/compile_s` on an evaluation's record,
    `train/checkpoint_write_s` and `train/checkpoint_report_s` on the record after a save.
    """

    def __init__(self, total_steps: int, eval_every: int, checkpoint_every: int, has_eval: bool):
        self.total, self.checkpoint_every = int(total_steps), int(checkpoint_every or 0)
        self.eval_every = int(eval_every or 0) if has_eval else 0
        self.anchor = None            # (step, time) of the first record: its step came after compiling
        self.step = self.time = None
        self.paused = 0.0             # seconds of evaluations and saves since the anchor
        self.eval_s = self.save_s = 0.0

    def observe(self, record: dict) -> None:
        step, now = int(record["step"]), float(record["time"])
        if "train/evaluation_s" in record:
            self.eval_s = float(record["train/evaluation_s"]) - float(record.get("eval/compile_s", 0.0))
        saved = record.get("train/checkpoint_write_s", 0.0) + record.get("train/checkpoint_report_s", 0.0)
        if saved:
            self.save_s = saved
        if self.anchor is None:
            self.anchor = (step, now)
        else:
            self.paused += float(record.get("train/evaluation_s", 0.0)) + saved
        self.step, self.time = step, now

    def evaluations_left(self) -> int:
        """Evaluations after the current step: every eval_every-th step, and the last step."""
        if not self.eval_every or self.step >= self.total:
            return 0
        return _due(self.step, self.total, self.eval_every) + (self.total % self.eval_every != 0)

    def saves_left(self) -> int:
        """Saves from the current step on (a step's record is posted before its save): every
        checkpoint_every-th step, every evaluation's, the last step's."""
        c, e, after = self.checkpoint_every, self.eval_every, max(self.step - 1, 0)
        if after >= self.total:
            return 0
        both = _due(after, self.total, math.lcm(c, e)) if c and e else 0
        on_schedule = _due(after, self.total, c) + _due(after, self.total, e) - both
        last_on_schedule = any(every and self.total % every == 0 for every in (c, e))
        return on_schedule + (not last_on_schedule)

    def step_seconds(self) -> float | None:
        if self.anchor is None or self.step <= self.anchor[0]:
            return None
        return max(0.0, self.time - self.anchor[1] - self.paused) / (self.step - self.anchor[0])

    def seconds_left(self) -> float | None:
        per_step = self.step_seconds()
        if per_step is None:
            return None
        return ((self.total - self.step) * per_step + self.evaluations_left() * self.eval_s
                + self.saves_left() * self.save_s)


class Poster:
    """Rank 0's side: posts records to the board, throttled, never waiting for it; each posted record
    carries `eta_s`, the seconds the training run has left (`TrainingEta`, fed every record)."""

    def __init__(self, board, eta: TrainingEta | None = None):
        self.board, self.last, self.eta = board, 0.0, eta

    def post(self, record: dict) -> None:
        if self.eta is not None:
            self.eta.observe(record)
        now = time.monotonic()
        if self.board is not None and (now - self.last >= SEND_EVERY_S or _has_evaluation(record)):
            left = self.eta.seconds_left() if self.eta is not None else None
            self.board.post.remote(record if left is None else {**record, "eta_s": left})
            self.last = now


def evaluation_seconds_per_example(record: dict) -> float | None:
    """The periodic evaluation's seconds per validation example (its one-off compile left out), from an
    evaluation's record; None without its timing."""
    if "train/evaluation_s" not in record or not record.get("eval/count"):
        return None
    return max(0.0, record["train/evaluation_s"] - record.get("eval/compile_s", 0.0)) / record["eval/count"]


def evaluation_stage_seconds(per_example_s: float | None, compile_s: float, examples: float | None) -> float | None:
    """The evaluation stage after training (`stage=all`), estimated from the periodic evaluation: `examples`
    (in its unit: one example through N_sup steps) at its seconds per example, plus its compile seconds where
    it compiled (the evaluation stage compiles its own step by the same `auto` rule). Ray's start-up and
    loading the checkpoint are not counted. None without a timed periodic evaluation or a known size."""
    if per_example_s is None or examples is None:
        return None
    return per_example_s * examples + compile_s


def run_seconds_left(record: dict, evaluation_s: float | None) -> float | None:
    """Seconds left in `stage=all` while it trains: the training's (`eta_s`) plus the evaluation stage's
    (`evaluation_stage_seconds`); None until both are known (the first periodic evaluation times the second)."""
    if record.get("eta_s") is None or evaluation_s is None:
        return None
    return record["eta_s"] + evaluation_s


def duration(seconds: float) -> str:
    """`under 1 s`, `42 s`, `3 min 05 s`, `1 h 28 min`."""
    if seconds < 0.5:
        return "under 1 s"
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"


def evaluation_line(record: dict) -> str:
    """`eval @ step 500: exact 93.8 % (per supervision step 10.8 / 93.8 / 98.4 / 96.4), token 99.1 %` (ARC: then
    `, pass@1 ... %, pass@2 ... %` after voting)."""
    steps = sorted((int(k.rsplit("step", 1)[1]), v) for k, v in record.items() if k.startswith("eval/exact_accuracy_step"))
    per_step = " / ".join(f"{100 * v:.1f}" for _, v in steps)
    voted = "".join(f", {k} {100 * record[f'eval/{k}']:.1f} %" for k in ("pass@1", "pass@2") if f"eval/{k}" in record)
    return (f"eval @ step {record['step']:,}: exact {100 * record['eval/exact_accuracy']:.1f} %"
            + (f" (per supervision step {per_step})" if per_step else "")
            + f", token {100 * record['eval/accuracy']:.1f} %" + voted)


def train_postfix(record: dict) -> dict:
    """The progress line's fields from a training record: loss, accuracy, samples/s, tokens/s, and the MFU
    where the record has one (on a GPU of `trm.device.PEAK_BF16_TFLOPS`)."""
    shown = {"loss": "train/lm_loss", "acc": "train/accuracy", "samples/s": "train/samples_per_s",
             "tokens/s": "train/tokens_per_s", "MFU": "train/mfu"}
    return {k: f"{100 * record[v]:.1f}%" if k == "MFU" else f"{record[v]:.3g}" for k, v in shown.items() if v in record}


class _PolledBar:
    """Context manager: a tqdm bar in the driver, redrawn by a thread that calls `_show` every poll."""

    def __init__(self, total: int, initial: int, desc: str, unit: str, bar_format: str | None = None):
        from tqdm import tqdm
        self.bar = tqdm(total=total, initial=initial, desc=desc, unit=unit, dynamic_ncols=True,
                        mininterval=POLL_EVERY_S, file=sys.stderr, bar_format=bar_format)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True, name=f"{desc}-progress")

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(timeout=10)
        self._safe_show()          # the last posts, once the work has ended
        self.bar.close()

    def _poll(self) -> None:
        while not self._stop.wait(POLL_EVERY_S):
            self._safe_show()

    def _safe_show(self) -> None:
        try:
            self._show()
        except Exception:     # progress must never stop the work
            pass

    def _show(self) -> None:
        raise NotImplementedError


def eta_postfix(record: dict, run_left_s: float | None) -> dict:
    """The ETA fields of the training line: the training's (`TrainingEta`) and, in stage=all, the run's."""
    shown = {"ETA": duration(record["eta_s"]) if record.get("eta_s") is not None else "?"}
    if run_left_s is not None:
        shown["run ETA"] = duration(run_left_s)
    return shown


class DriverProgress(_PolledBar):
    """Training: the step, the ETA, loss, accuracy and speed from the board; a line per evaluation.
    The ETA is `TrainingEta`'s (tqdm's own counts evaluation pauses as slow steps); with `then_evaluates`
    (stage=all: the examples its evaluation stage will run) also the whole run's (`run_seconds_left`)."""

    def __init__(self, board, total_steps: int, start_step: int, then_evaluates: float | None = None):
        super().__init__(total_steps, start_step, "train", "step",
                         bar_format="{l_bar}{bar}| {n_fmt}/{total_fmt} [{elapsed}{postfix}]")
        self.board, self.then_evaluates = board, then_evaluates
        self.per_example_s, self.compile_s = None, 0.0

    def _show(self) -> None:
        latest, evaluations = ray.get(self.board.take.remote(), timeout=10)
        for record in evaluations:
            self.bar.write(evaluation_line(record), file=sys.stderr)
            self.per_example_s = evaluation_seconds_per_example(record) or self.per_example_s
            self.compile_s = record.get("eval/compile_s", self.compile_s)
        if latest is not None:
            run_left = run_seconds_left(latest, evaluation_stage_seconds(self.per_example_s, self.compile_s,
                                                                         self.then_evaluates))
            self.bar.set_postfix({**eta_postfix(latest, run_left), **train_postfix(latest)}, refresh=False)
            self.bar.update(latest["step"] - self.bar.n)


@ray.remote(num_cpus=0)
class Tally:
    """Counts posted by Ray tasks (e.g. puzzles generated), read by the driver."""

    def __init__(self):
        self.count = 0

    def add(self, n: int) -> None:
        self.count += int(n)

    def read(self) -> int:
        return self.count


class TallyBar(_PolledBar):
    """A `Tally`'s count out of `total` (e.g. puzzles generated)."""

    def __init__(self, tally, total: int, desc: str, unit: str):
        super().__init__(total, 0, desc, unit)
        self.tally, self.total = tally, total

    def _show(self) -> None:
        count = ray.get(self.tally.read.remote(), timeout=10)
        self.bar.update(min(count, self.total) - self.bar.n)   # a retried task may count twice
