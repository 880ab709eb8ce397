"""Memory and CPU of a process tree, from /proc: what the benches that run the user's commands report."""
import os
import threading


def _tree(root: int) -> list:
    """Pids of `root` and all its descendants, from /proc."""
    children = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry))
    pids, todo = [], [root]
    while todo:
        pid = todo.pop()
        pids.append(pid)
        todo.extend(children.get(pid, []))
    return pids


def _cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of one process so far."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


PAGE = os.sysconf("SC_PAGE_SIZE")


def _rss(pid: int) -> int:
    """Resident bytes of one process (cheap: /proc/<pid>/statm)."""
    try:
        with open(f"/proc/{pid}/statm") as f:
            return int(f.read().split()[1]) * PAGE
    except (OSError, IndexError, ValueError):
        return 0


def _pss(pids: list) -> dict:
    """{pid: (PSS, name)} for the live processes among `pids` (smaps_rollup: costly, sampled less often)."""
    out = {}
    for pid in pids:
        try:
            with open(f"/proc/{pid}/smaps_rollup") as f:
                pss = next(int(line.split()[1]) * 1024 for line in f if line.startswith("Pss:"))
            with open(f"/proc/{pid}/cmdline") as f:
                name = f.read().replace("\0", " ").strip()
        except (OSError, StopIteration):
            continue
        out[pid] = (pss, name)
    return out


def _name(pid: int) -> str:
    """The command line of a process ('' once it has exited)."""
    try:
        with open(f"/proc/{pid}/cmdline") as f:
            return f.read().replace("\0", " ").strip()
    except OSError:
        return ""


class PeakMemory(threading.Thread):
    """Samples the process tree under `root`: RSS every `interval` s, PSS every `pss_every` samples; keeps the
    peaks and each process's CPU seconds."""

    def __init__(self, root: int, interval: float = 0.25, pss_every: int = 8):
        super().__init__(daemon=True)
        self.root = root
        self.interval, self.pss_every = interval, pss_every
        self.peak_rss = self.peak_pss = self.processes = 0
        self.at_peak = {}              # pid -> (PSS, name) when the PSS sum peaked
        self.peak_by_pid = {}          # pid -> its own peak RSS
        self.cpu = {}                  # pid -> CPU seconds at its last sample (kept after it exits)
        self.names = {}
        self._stop_event = threading.Event()

    def run(self):
        tick = 0
        while not self._stop_event.is_set():
            pids = _tree(self.root)
            rss = {pid: _rss(pid) for pid in pids}
            self.peak_rss = max(self.peak_rss, sum(rss.values()))
            for pid, value in rss.items():
                if value > self.peak_by_pid.get(pid, 0):
                    self.peak_by_pid[pid] = value
                    self.names[pid] = _name(pid) or self.names.get(pid, "?")   # Ray retitles its workers
            self.processes = max(self.processes, len(pids))
            self.cpu.update({pid: _cpu_seconds(pid) for pid in pids})
            if tick % self.pss_every == 0:
                memory = _pss(pids)
                self.names.update({pid: name for pid, (_, name) in memory.items()})
                pss = sum(m[0] for m in memory.values())
                if pss > self.peak_pss:
                    self.peak_pss, self.at_peak = pss, memory
            tick += 1
            self._stop_event.wait(self.interval)

    def stop(self):
        self._stop_event.set()
        self.join()
