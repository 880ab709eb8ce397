"""ARC-AGI-1 data stage as a user runs it: wall time from process start to exit, peak memory, size on disk.

python bench/bench_arc.py [--num-aug 100|1000] [--source ../shared/data/arc/arc-agi] [--out DIR]

Times the command `python -m pipeline.run stage=augment preset=arc_agi_1 task.source=<source>
data_dir=<dir>` (plus `task.num_aug=N` below 1000) in a subprocess, from its start (Python, imports, Ray)
to its exit: training + evaluation + concept, evaluation as the test subset, as the preset builds it.
Memory is sampled over that process and all its descendants (the Ray daemons and workers): the sum of RSS
counts pages shared between processes (the object store, libraries) once per process; PSS splits each
shared page between its users, so it adds up to what the run holds. CPU time (user + system, all those
processes) is less sensitive than wall time to other work on a shared machine. Ratios are against the
reference builder on a 2-core machine (trm_reference.md 1.6).
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from proc_memory import PeakMemory
from record import commit_label
from shared_data import SHARED_ARC

# Reference builder (TRM e7b6871), 2 vCPU: wall s, peak RSS GB, output GB.
REFERENCE = {10: (9.38, 0.25, 0.0901), 100: (59.1, 1.77, 0.799), 1000: (636.9, 15.5, 7.27)}


def _bytes_under(folder: Path, suffix: str) -> int:
    return sum(p.stat().st_size for p in folder.rglob(f"*{suffix}"))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num-aug", type=int, default=100, help="augmentations per task (the paper: 1000)")
    parser.add_argument("--source", default=str(SHARED_ARC), help="Kaggle prefix of the ARC JSON files")
    parser.add_argument("--out", default=None, help="data_dir (default: a temporary folder, removed after)")
    args = parser.parse_args()
    out = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="bench-arc-")) / "data"
    command = [sys.executable, "-m", "pipeline.run", "stage=augment", "preset=arc_agi_1", f"task.source={args.source}",
               f"data_dir={out}", "overwrite=true"] + ([f"task.num_aug={args.num_aug}"] if args.num_aug != 1000 else [])
    print(f"# python bench/bench_arc.py --num-aug {args.num_aug}   (commit {commit_label()}, {os.cpu_count()} CPUs)")
    began = time.perf_counter()
    child = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    sampler = PeakMemory(child.pid)
    sampler.start()
    _, errors = child.communicate()
    wall = time.perf_counter() - began
    sampler.stop()
    if child.returncode:
        sys.exit(f"the build failed ({child.returncode}):\n{errors[-3000:]}")
    manifest = json.loads((out / "dataset.json").read_text())
    cpu = sum(sampler.cpu.values())
    parquet = sum(_bytes_under(out / split, ".parquet") for split in ("train", "val", "test"))
    side = sum((out / manifest[k]).stat().st_size for k in ("identifiers_file", "test_puzzles_file"))
    splits = manifest["splits"]
    print(f"{' '.join(command[1:])}")
    print(f"ARC-AGI-1, num_aug {args.num_aug}: train {splits['train']['examples']:,} "
          f"examples, test {splits['test']['examples']:,}, identifiers {manifest['num_puzzle_identifiers']:,}, "
          f"tasks short of versions {manifest['augmentation_shortfall']}, {sampler.processes} processes")
    ref = REFERENCE.get(args.num_aug)
    rows = [("wall (s)", wall, ref and ref[0]),
            ("CPU, all processes (s)", cpu, None),
            ("peak RSS, sum over processes (GB)", sampler.peak_rss / 1e9, ref and ref[1]),
            ("peak PSS, sum over processes (GB)", sampler.peak_pss / 1e9, ref and ref[1]),
            ("Parquet on disk (GB)", parquet / 1e9, ref and ref[2]),
            ("side files (MB)", side / 1e6, None)]
    print(f"{'measurement':<42} {'this':>10} {'reference':>10} {'ratio':>8}")
    for name, value, reference in rows:
        ratio = f"{reference / value:>7.1f}x" if reference else f"{'-':>8}"
        print(f"{name:<42} {value:>10.3f} {reference if reference else '-':>10} {ratio}")
    print("\nlargest processes at the PSS peak (GB PSS):")
    for pss, name in sorted(sampler.at_peak.values(), key=lambda m: -m[0])[:6]:
        print(f"  {pss / 1e9:6.2f}  {name[:90]}")
    print("\nCPU seconds by process:")
    for pid, seconds in sorted(sampler.cpu.items(), key=lambda kv: -kv[1])[:8]:
        print(f"  {seconds:7.1f}  {sampler.names.get(pid, '?')[:90]}")
    if not args.out:
        shutil.rmtree(out.parent)


if __name__ == "__main__":
    main()
