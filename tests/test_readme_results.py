"""The README's measured tables agree with the latest recorded output of the command each one names.

A table preceded by `<!-- record: <command> -->` must match, row for row, the newest block of
`bench/results/*.txt` whose header is `# <command> (...)`: same runs, seeds, wall seconds and
percentages (to the README's precision). Re-recording a bench without updating the README fails here.
"""
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MARKER = re.compile(r"<!-- record: (.+?) -->\n((?:\|.*\n)+)")


def readme_tables() -> list[tuple[str, list[list[str]]]]:
    text = (ROOT / "README.md").read_text()
    tables = []
    for command, block in MARKER.findall(text):
        rows = [[c.strip() for c in line.strip().strip("|").split("|")] for line in block.splitlines()]
        tables.append((command.strip(), [r for r in rows[2:]]))      # past the header and the --- line
    return tables


def latest_record(command: str) -> list[list[str]]:
    """Rows of the newest recorded block for `command` (files in bench/results, later blocks win)."""
    found = None
    for path in sorted((ROOT / "bench" / "results").glob("*.txt")):
        blocks = re.split(r"\n(?=# )", "\n" + path.read_text())
        for block in blocks:
            lines = block.strip().splitlines()
            if lines and re.fullmatch(rf"# {re.escape(command)}\s+\(.*\)", lines[0].strip()):
                found = [line.split() for line in lines[2:] if line.strip()]
    if found is None:
        raise AssertionError(f"no record of `{command}` in bench/results/")
    return found


def as_record_row(row: list[str]) -> tuple:
    """README cells -> (model, seed, wall, [val,] exact, per-step...) as the bench prints them (ARC: val, pass@1,
    pass@2; a cell the bench prints as `-`, such as the identity baseline's seed, stays `-`)."""
    name, seed, wall, *accuracies, steps = row         # accuracies: [exact] or [validation, exact]
    model = next((m for m in ("no recursion", "identity") if name.startswith(m)), "TRM")
    fraction = lambda cell: cell if cell == "-" else f"{float(cell.removesuffix(' %')) / 100:.3f}"  # noqa: E731
    per_step = [f"{float(v) / 100:.3f}" for v in steps.replace("%", "").split("/")]
    return (model, seed, wall.removesuffix(" s"), *map(fraction, accuracies), *per_step)


def parse_record_row(words: list[str]) -> tuple:
    model = "no recursion" if words[:2] == ["no", "recursion"] else words[0]
    rest = words[2:] if model == "no recursion" else words[1:]
    return (model, *rest)


TABLES = readme_tables()


def test_every_measured_demo_table_names_its_record():
    commands = [c for c, _ in TABLES]
    sudoku = [c for c in commands if c.startswith("python bench/bench_demo.py") and "--task" not in c]
    assert sudoku and len(commands) >= 3


@pytest.mark.parametrize("command, rows", TABLES, ids=[c for c, _ in TABLES])
def test_readme_table_matches_the_latest_record(command, rows):
    recorded = [parse_record_row(words) for words in latest_record(command)]
    shown = [as_record_row(row) for row in rows]
    assert shown == recorded, f"README table for `{command}` differs from its latest record"
