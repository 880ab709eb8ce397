"""A full disk as one line: which folder, how much space its file system has, how much the stage needs.

Every stage already writes so that a failure publishes nothing (a dataset's manifest last, a checkpoint's
meta.json last, the evaluations' metrics.json last) and removes what it half-wrote; what was missing is
the message: a full disk surfaced as a Ray task's traceback (augment), a training failure after every
restart had hit the same wall (train), or an arrow error (eval). `reported` turns any error whose cause
is "no space left on device" (ENOSPC, or EDQUOT: a quota) into a `PipelineError` naming the folder.
"""
import contextlib
import errno
import os
import tempfile

from pipeline import run_lock, storage
from pipeline.errors import PipelineError
from pipeline.options import Options
from pipeline.results import evaluations as eval_results

NO_SPACE = (errno.ENOSPC, errno.EDQUOT)
NO_SPACE_TEXT = tuple(f"[Errno {code}]" for code in NO_SPACE)   # the cause as Ray Train hands it on: text only


def no_space_cause(err: BaseException) -> OSError | str | None:
    """The OSError "no space left" among `err`'s causes (`__cause__`, `__context__`, a Ray task error's
    `cause`), or the line saying so when only text survived (Ray Train's worker errors); else None."""
    pending, seen = [err], set()
    while pending:
        cause = pending.pop()
        if id(cause) in seen:
            continue
        seen.add(id(cause))
        if isinstance(cause, OSError) and cause.errno in NO_SPACE:
            return cause
        pending += [c for c in (cause.__cause__, cause.__context__, getattr(cause, "cause", None))
                    if isinstance(c, BaseException)]
    for line in str(err).splitlines():
        if any(text in line for text in NO_SPACE_TEXT):
            return line.strip()
    return None


def _size(n: float) -> str:
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20)):
        if n >= scale:
            return f"{n / scale:,.1f} {unit}"
    return f"{n / 2**10:,.1f} KiB"


def _free_and_total(path: str) -> tuple[int, int]:
    """Free and total bytes of the file system holding `path` (its nearest existing ancestor)."""
    while not os.path.exists(path) and os.path.dirname(path) != path:
        path = os.path.dirname(path)
    stat = os.statvfs(path)
    return stat.f_bavail * stat.f_frsize, stat.f_blocks * stat.f_frsize


def _folder_bytes(path: str) -> int:
    return sum(os.path.getsize(os.path.join(root, f)) for root, _, files in os.walk(path) for f in files)


def _needed(cfg, option: str, folder: str, free: int) -> str:
    """What the stage needs there, as far as it is known after the failure."""
    from pipeline.checkpoints import checkpoint as ckpt  # torch: imported only by the stages that need it
    if option.startswith("run_dir=") and cfg.stage in ("train", "all", "adapt"):
        complete = [path for _, path in ckpt.folders(folder, "checkpoint") if ckpt.is_complete(path)]
        if complete:
            each, keep = _folder_bytes(complete[-1]), Options.of(cfg).train.keep_last
            return (f"each checkpoint takes {_size(each)} ({os.path.basename(complete[-1])}) and train.keep_last="
                    f"{keep} are kept, plus the best: about {_size(each * (keep + 2))}")
    return f"the stage needs more than the {_size(free)} free now that its partial output is removed"


def message(cfg, cause) -> str:
    """One line: the folder (the file the error names, else each local folder the stage writes), its file
    system's free and total space, and what is needed."""
    named = getattr(cause, "filename", None)
    written = [(option, folder) for option, folder in run_lock.folders(cfg) if not storage.is_remote(folder)]
    if named:
        matching = [(o, f) for o, f in written if os.path.abspath(named).startswith(f.rstrip("/") + "/")]
        written = matching or [(f"the file {named}", os.path.dirname(os.path.abspath(named)))]
    if not written:     # only remote outputs: the local disk that filled is this machine's temporary folder
        written = [("the temporary folder", tempfile.gettempdir())]
    parts = []
    for option, folder in written:
        free, total = _free_and_total(folder)
        parts.append(f"{option}: {_size(free)} free of {_size(total)}; {_needed(cfg, option, folder, free)}")
    return (f"no space left on device writing {'; '.join(parts)}. Nothing incomplete was published and earlier "
            f"outputs are intact: free space (or choose another folder) and rerun the same command")


def remove_partial(cfg) -> list[str]:
    """Remove what the failed stage half-wrote where it does not clean up itself (augment does): a checkpoint
    Ray Train was copying, an evaluation without its metrics.json. Returns the paths removed."""
    from pipeline.checkpoints import checkpoint as ckpt
    removed = []
    if cfg.stage in ("train", "all", "adapt"):
        removed += ckpt.remove_unfinished(cfg.run_dir)
    for stage in eval_results.STAGES:
        # this evaluation's own folder (run_dir/<stage>/<name>/); the others kept beside it are not touched
        out_dir = eval_results.output_dir(cfg, stage)
        if cfg.stage not in (stage, "all") or storage.exists(eval_results.metrics_path(out_dir)):
            continue
        if storage.exists(out_dir):
            storage.remove(out_dir)
            removed.append(out_dir)
    return removed


@contextlib.contextmanager
def reported(cfg):
    """Re-raise a "no space left" failure of the block as a one-line `PipelineError` (see `message`)."""
    try:
        yield
    except PipelineError:
        raise
    except Exception as err:
        cause = no_space_cause(err)
        if cause is None:
            raise
        remove_partial(cfg)
        raise PipelineError(message(cfg, cause)) from err
