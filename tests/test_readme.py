"""The README's two quickstart commands are the ones CI runs."""
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def quickstart_commands():
    text = (ROOT / "README.md").read_text()
    block = re.search(r"## Quickstart.*?```bash\n(.*?)```", text, re.S).group(1)
    return [line for line in block.splitlines() if line and not line.startswith("#")]


def test_two_commands_install_then_run_demo_and_tests():
    demo, tests = quickstart_commands()
    assert "scripts/install.sh &&" in demo and demo.endswith("python -m pipeline.run")
    assert "scripts/install.sh dev &&" in tests and tests.endswith("python -m pytest -q")


def test_ci_runs_the_readme_test_command():
    ci = (ROOT / ".ci" / "run").read_text()
    pattern = re.search(r"grep -m1 -E '(.*?)' README.md", ci).group(1)
    matches = [c for c in quickstart_commands() if re.search(pattern, c)]
    assert matches == [quickstart_commands()[1]]
