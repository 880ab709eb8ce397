"""The data beside the project (../shared/data/) that benches read by default; never copied into it."""
from pathlib import Path

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
SHARED_ARC = SHARED_DATA / "arc" / "arc-agi"     # the Kaggle prefix of the ARC JSON files


def with_arc_source(overrides: list) -> list:
    """Hydra `overrides` with task.source set to the shared ARC files unless they name a source."""
    named = any(o.startswith("task.source=") for o in overrides)
    return list(overrides) if named else [f"task.source={SHARED_ARC}", *overrides]
