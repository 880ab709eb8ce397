"""What every bench record's header names: the commit it ran on (with `+changes` for a dirty tree)."""
import subprocess


def commit_label() -> str:
    def git(*args):
        return subprocess.run(["git", *args], capture_output=True, text=True).stdout.strip()
    dirty = git("status", "--porcelain", "--untracked-files=no")
    return git("rev-parse", "--short", "HEAD") + ("+changes" if dirty else "")
