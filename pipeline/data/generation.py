"""Generated chunks: try batches of candidates until a chunk has enough that pass its filter."""
from typing import Callable

import numpy as np

MAX_TRIES = 1000   # per chunk; a seeded probe sizes each try, so running out is a sign of a bug, not of bad luck


def collect_kept(need: int, attempt: Callable[[], tuple], what: str, max_tries: int = MAX_TRIES) -> tuple:
    """The first `need` rows kept by repeated `attempt()` calls.

    `attempt` makes one try and returns the arrays of the candidates it kept (equally long, rows first).
    `what` names the chunk and its filter for the error raised after `max_tries` tries without enough.
    """
    parts, kept = [], 0
    for _ in range(max_tries):
        part = attempt()
        parts.append(part)
        kept += len(part[0])
        if kept >= need:
            return tuple(np.concatenate(columns)[:need] for columns in zip(*parts))
    raise RuntimeError(f"{what}: only {kept} of {need} kept after {max_tries} tries")
