"""bench/bench_gpu.py (the GPU lease's prepared check) runs end to end on CPU with --tiny, so it cannot rot."""
import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.slow   # compiles, trains or starts Ray: not in the quick subset

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_bench_gpu_tiny_runs_every_part():
    done = subprocess.run([sys.executable, os.path.join(ROOT, "bench", "bench_gpu.py"), "--tiny"], cwd=ROOT,
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-2000:]
    lines = done.stdout.splitlines()
    assert [line.split()[0] for line in lines if line.startswith("  ")] == ["eager", "compiled"]
    assert all("samples/s" in line and "tokens/s" in line and "MFU -" in line for line in lines if line.startswith("  "))
    assert sum(line.startswith("inference (compiled)") for line in lines) == 2
