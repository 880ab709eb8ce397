"""ARC puzzle identifiers by name: the reference's `identifiers.json` against this project's versions.

The reference names row r of its puzzle-embedding table `identifiers.json[r]`: `<task_id>` for a task's
original version and `<task_id>|||t<dihedral id>|||<10 digits>` for an augmented one, digit c being the new
colour of colour c; row 0 is `<blank>`. A version here is (task_id, dihedral, colour_map) with the same
meaning (`augment.arc`), listed with its puzzle_identifier in the data stage's `identifiers.parquet`. So
a row trained by the reference serves a version here exactly when the names agree; the table is permuted
into this dataset's rows by name.
"""
import numpy as np
import pyarrow.parquet as pq
import torch

from pipeline import storage
from pipeline.errors import PipelineError

SEPARATOR = "|||"
BLANK = "<blank>"
EXAMPLES_SHOWN = 3
# The data stage's fields that fix what each puzzle identifier means: a checkpoint must match them.
IDENTIFIER_FIELDS = ("seed", "versions", "test_subset", "subsets")


def version_names(task_ids, aug_index, dihedral, colour_maps) -> list[str]:
    """Reference names of versions: the task id for the original (aug_index 0), else with its transform."""
    digits = ["".join(str(int(c)) for c in m) for m in np.asarray(colour_maps)]
    return [str(t) if int(a) == 0 else f"{t}{SEPARATOR}t{int(d)}{SEPARATOR}{m}"
            for t, a, d, m in zip(task_ids, aug_index, dihedral, digits)]


def read_names(path: str) -> list:
    """An identifiers.json: a JSON list of names, row 0 `<blank>`."""
    try:
        names = storage.read_json(path)
    except (OSError, ValueError) as err:
        raise PipelineError(f"{path} is unreadable: {type(err).__name__}: {err}") from err
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise PipelineError(f"{path} is not an identifiers list (a JSON list of names, row 0 '{BLANK}')")
    return names


def named_versions(names: list, task_ids: list, source: str) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per task of `task_ids`: (dihedral ids [V], colour maps [V, 10]) of the identity, then every augmented
    version `names` lists for it, in the names' order (what the data stage builds with task.identifiers=)."""
    identity = np.arange(10)
    listed = {}
    for name in names:
        parts = name.split(SEPARATOR)
        if len(parts) == 1:
            continue      # an original version (always built) or the blank row
        ok = len(parts) == 3 and parts[1][:1] == "t" and parts[1][1:].isdigit() and parts[2].isdigit()
        colours = np.array([int(c) for c in parts[2]]) if ok else None
        if not ok or not 0 <= int(parts[1][1:]) < 8 or len(colours) != 10 or colours[0] != 0 \
                or sorted(colours) != list(identity):
            raise PipelineError(f"{source}: {name!r} is not a version name (<task>{SEPARATOR}t<0-7>{SEPARATOR}"
                                f"<10 digits, a permutation keeping 0>)")
        if int(parts[1][1:]) or (colours != identity).any():
            listed.setdefault(parts[0], []).append((int(parts[1][1:]), colours))
    plans = []
    for tid in task_ids:
        versions = [(0, identity)] + listed.get(tid, [])
        plans.append((np.array([d for d, _ in versions], dtype=np.int8),
                      np.stack([m for _, m in versions]).astype(np.uint8)))
    return plans


def dataset_versions(data_dir: str, manifest: dict) -> dict:
    """Columns of the data stage's identifiers file (puzzle_identifier, subset, task_id, aug_index, ...) plus
    each version's reference `name`."""
    path = storage.join(data_dir, manifest.get("identifiers_file", "identifiers.parquet"))
    if not storage.exists(path):
        raise PipelineError(f"{path} is missing: rebuild the ARC dataset with stage=augment")
    fs, p = storage.filesystem(path)
    with fs.open(p, "rb") as f:
        table = pq.read_table(f)
    columns = {name: table.column(name).to_numpy(zero_copy_only=False) for name in
               ("puzzle_identifier", "subset", "task_id", "aug_index", "dihedral")}
    columns["colour_map"] = np.stack(table.column("colour_map").to_pylist()) if table.num_rows else np.zeros((0, 10))
    columns["name"] = np.array(version_names(columns["task_id"], columns["aug_index"], columns["dihedral"],
                                             columns["colour_map"]), dtype=object)
    return columns


def remap_table(table: torch.Tensor, names: list, versions: dict, rows: int) -> tuple[torch.Tensor, np.ndarray]:
    """The puzzle-embedding table [len(names), D] re-indexed to this dataset's `rows` identifiers by name.

    Returns (new table, matched [rows] bool). Row 0 (blank) keeps the reference's blank row; a version the
    reference never named gets the mean of its trained rows (what the reference's own fine-tuning resize
    does), for fine-tuning to start from.
    """
    if len(names) != len(table):
        raise PipelineError(f"identifiers file has {len(names):,} names but the puzzle-embedding table has "
                            f"{len(table):,} rows: they belong to different data")
    index = {name: row for row, name in enumerate(names)}
    source = np.array([index.get(n, -1) for n in versions["name"]], dtype=np.int64)
    matched = np.zeros(rows, dtype=bool)
    trained = table[1:] if len(table) > 1 else table.new_zeros(1, table.shape[1])
    new = trained.mean(dim=0, keepdim=True).expand(rows, -1).clone()
    new[0] = table[0]
    matched[0] = True
    ours = versions["puzzle_identifier"].astype(np.int64)
    found = source >= 0
    new[torch.from_numpy(ours[found])] = table[torch.from_numpy(source[found])]
    matched[ours[found]] = True
    return new, matched


def check_test_versions(matched: np.ndarray, versions: dict, manifest: dict, num_aug: int | None) -> None:
    """Refuse when a version the test split uses (up to `num_aug`) has no trained row."""
    need = versions["subset"] == manifest.get("test_subset")
    if num_aug is not None:
        need &= versions["aug_index"] <= num_aug
    missing = need & ~matched[versions["puzzle_identifier"].astype(np.int64)]
    if missing.any():
        shown = ", ".join(repr(n) for n in versions["name"][missing][:EXAMPLES_SHOWN])
        originals = int((missing & (versions["aug_index"] == 0)).sum())
        raise PipelineError(
            f"{int(missing.sum()):,} of the {int(need.sum()):,} task versions the test split uses have no trained "
            f"row in the checkpoint's puzzle-embedding table (e.g. {shown}; {originals} of them original versions): "
            f"the reference trained other augmentations (its builder's own random draws). Build the data with "
            f"stage=augment task.identifiers=<its identifiers.json> (exactly the versions it names), score only the "
            f"original versions with eval_arc.num_aug=0 (when the checkpoint knows the test tasks), or train rows for "
            f"tasks it never saw with test-time training (stage=adapt: not yet available)")
