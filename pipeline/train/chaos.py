"""Chaos testing (`train.fail_once_at_step`): the last rank raises once at that step, so a test or bench sees
Ray Train restart the worker group from the latest checkpoint."""
from pipeline import storage

CHAOS_MARKER = ".chaos_failed_once"


def maybe_fail(at: int | None, run_dir: str, step: int, rank: int, world: int) -> None:
    """Raise once at step `at` on the last rank (a marker in run_dir remembers it happened)."""
    if at is None or step != at or rank != world - 1:
        return
    marker = storage.join(run_dir, CHAOS_MARKER)
    if storage.exists(marker):
        return
    storage.write_json_atomic(marker, {"step": step, "rank": rank})
    raise RuntimeError(f"chaos: train.fail_once_at_step={at} (rank {rank})")
