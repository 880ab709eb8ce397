"""One command per output folder: a lock beside each folder a stage writes (`<folder>.lock`).

A user who starts the same job twice gets the second refused at once, naming the first (host, pid, start
time, command); a lock left by a process that died is taken over with a warning.

- Local folders (and shared file systems with POSIX locks, such as NFSv4): the kernel's `flock` on the lock
  file. The kernel drops it when the holding process dies, however it dies, so a lock can be stale only in
  name: the file's content then names a process that no longer holds it, and the next command takes over.
- Object stores (`s3://`) have no locks: the holder rewrites the lock object every `lock.heartbeat_s`
  seconds, and a lock whose heartbeat is older than `lock.stale_s` (or whose process on this same host is
  gone) counts as abandoned. Best effort: two commands starting within the same second can both win.
"""
import contextlib
import datetime
import fcntl
import json
import logging
import os
import socket
import threading
import time
import uuid

from pipeline import storage
from pipeline.config import command_line
from pipeline.errors import PipelineError

log = logging.getLogger(__name__)

# The folders each stage writes: a second command writing the same one is refused. The evaluations write
# their own sub-folder of run_dir, so evaluating a run while it trains is allowed; export writes outside both.
LOCKED = {"augment": ("data_dir",), "all": ("data_dir", "run_dir"), "train": ("run_dir",), "adapt": ("run_dir",),
          "import": ("run_dir",), "eval": ("run_dir/eval",), "eval_arc": ("run_dir/eval_arc",), "export": ()}


def lock_path(folder: str) -> str:
    return folder.rstrip("/") + ".lock"


def folders(cfg) -> list[tuple[str, str]]:
    """(option shown to the user, folder) of each folder `cfg.stage` writes."""
    found = []
    for key in LOCKED.get(cfg.stage, ("data_dir", "run_dir")):
        option, _, sub = key.partition("/")
        folder = storage.join(cfg[option], sub) if sub else cfg[option]
        found.append((f"{option}={cfg[option]}" + (f" ({sub}/)" if sub else ""), folder))
    return found


def _holder() -> dict:
    now = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    return {"host": socket.gethostname(), "pid": os.getpid(), "started": now, "heartbeat": time.time(),
            "command": command_line(), "token": uuid.uuid4().hex}


def describe(holder: dict) -> str:
    return (f"pid {holder.get('pid')} on host {holder.get('host')}, started {holder.get('started')} "
            f"({holder.get('command', 'unknown command')})")


def _process_alive(pid: int) -> bool:
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except (PermissionError, ValueError, TypeError):
        return True        # another user's process, or a pid we cannot judge: assume it runs
    return True


def _refusal(option: str, path: str, holder: dict) -> PipelineError:
    return PipelineError(f"{option} is in use by another command: {describe(holder)}; wait for it to finish or stop "
                         f"it (lock file {path})")


def _parse(text: str) -> dict | None:
    try:
        holder = json.loads(text)
    except ValueError:
        return None
    return holder if isinstance(holder, dict) else None


class _LocalLock:
    """flock on `<folder>.lock`; the file is removed on release."""

    def __init__(self, option: str, path: str):
        self.option, self.path, self.fd = option, path, None

    def acquire(self, options) -> None:
        os.makedirs(os.path.dirname(self.path) or ".", exist_ok=True)
        for _ in range(10):       # the file may be removed by its releasing holder between open and flock
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = _parse(os.pread(fd, 1 << 16, 0).decode(errors="replace")) or {}
                os.close(fd)
                raise _refusal(self.option, self.path, holder) from None
            try:
                same = os.fstat(fd).st_ino == os.stat(self.path).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)          # locked a file its holder had just removed: lock the new one
        else:
            raise PipelineError(f"could not lock {self.path}: it keeps being replaced by another command")
        previous = _parse(os.pread(fd, 1 << 16, 0).decode(errors="replace"))
        if previous:
            log.warning("taking over the lock %s left by %s: that process no longer holds it", self.path,
                        describe(previous))
        self.fd = fd
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, json.dumps(_holder(), sort_keys=True).encode(), 0)
        except OSError:          # a full disk: leave no empty lock file behind
            self.release()
            raise

    def release(self) -> None:
        if self.fd is None:
            return
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)      # before unlocking: a command waiting on this file retries on the new one
        os.close(self.fd)
        self.fd = None


class _RemoteLock:
    """A lock object refreshed by a heartbeat thread; abandoned when its heartbeat is older than stale_s."""

    def __init__(self, option: str, path: str):
        self.option, self.path = option, path
        self.holder, self.stop, self.thread = None, threading.Event(), None

    def _read(self) -> dict | None:
        if not storage.exists(self.path):
            return None
        fs, p = storage.filesystem(self.path)
        try:
            with fs.open(p, "r") as f:
                return _parse(f.read()) or {}
        except FileNotFoundError:
            return None

    def acquire(self, options) -> None:
        stale_s = float(options.stale_s)
        current = self._read()
        if current is not None:
            age = time.time() - float(current.get("heartbeat") or 0)
            gone = current.get("host") == socket.gethostname() and not _process_alive(current.get("pid"))
            if age <= stale_s and not gone:
                raise _refusal(self.option, self.path, current)
            why = "that process is gone" if gone else f"no heartbeat for {age:.0f} s > lock.stale_s={stale_s:g}"
            log.warning("taking over the lock %s left by %s: %s", self.path, describe(current), why)
        self.holder = _holder()
        storage.write_json_atomic(self.path, self.holder)
        written = self._read() or {}
        if written.get("token") != self.holder["token"]:     # another command wrote in between: it won
            raise _refusal(self.option, self.path, written)
        self.thread = threading.Thread(target=self._beat, args=(float(options.heartbeat_s),), daemon=True,
                                       name=f"lock heartbeat {self.path}")
        self.thread.start()

    def _beat(self, every_s: float) -> None:
        while not self.stop.wait(every_s):
            self.holder["heartbeat"] = time.time()
            try:
                storage.write_json_atomic(self.path, self.holder)
            except Exception as err:      # a failed heartbeat only shortens the lock's life; the run goes on
                log.warning("could not refresh the lock %s: %s", self.path, err)

    def release(self) -> None:
        if self.thread is None:
            return
        self.stop.set()
        self.thread.join()
        self.thread = None
        if (self._read() or {}).get("token") == self.holder["token"]:
            storage.remove(self.path)


@contextlib.contextmanager
def hold(cfg):
    """Lock every folder `cfg.stage` writes (cfg resolved: absolute paths) for the duration of the block."""
    held = []
    try:
        for option, folder in folders(cfg):
            path = lock_path(folder)
            lock = (_RemoteLock if storage.is_remote(path) else _LocalLock)(option, path)
            lock.acquire(cfg.lock)
            held.append(lock)
        yield
    finally:
        for lock in reversed(held):
            lock.release()
