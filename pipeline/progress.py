"""Progress in the driver's terminal: training (one live line, a short line per evaluation) and data
generation (puzzles made so far).

Ray forwards a worker's output line by line, so a progress bar drawn on a worker arrives as one new line
per refresh (hundreds per demo). Instead the workers post to a small actor (`Board` for training records,
`Tally` for counts), and the driver, which owns the terminal, polls it and draws the bar itself.
"""
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


class Poster:
    """Rank 0's side: posts records to the board, throttled, never waiting for it."""

    def __init__(self, board):
        self.board, self.last = board, 0.0

    def post(self, record: dict) -> None:
        now = time.monotonic()
        if self.board is not None and (now - self.last >= SEND_EVERY_S or _has_evaluation(record)):
            self.board.post.remote(record)
            self.last = now


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

    def __init__(self, total: int, initial: int, desc: str, unit: str):
        from tqdm import tqdm
        self.bar = tqdm(total=total, initial=initial, desc=desc, unit=unit, dynamic_ncols=True,
                        mininterval=POLL_EVERY_S, file=sys.stderr)
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


class DriverProgress(_PolledBar):
    """Training: the step, loss, accuracy and speed from the board; a line per evaluation."""

    def __init__(self, board, total_steps: int, start_step: int):
        super().__init__(total_steps, start_step, "train", "step")
        self.board = board

    def _show(self) -> None:
        latest, evaluations = ray.get(self.board.take.remote(), timeout=10)
        for record in evaluations:
            self.bar.write(evaluation_line(record), file=sys.stderr)
        if latest is not None:
            self.bar.set_postfix(train_postfix(latest), refresh=False)
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
