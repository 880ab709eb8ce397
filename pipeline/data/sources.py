"""Reading puzzle files in the Sudoku-Extreme / Maze-Hard CSV layout: `source,question,answer,rating`.

A source is a CSV file (local or `s3://`), a directory holding `train.csv` and `test.csv`, or
`hf:<dataset id>` loaded through the `datasets` library. Rows keep their file line numbers so a
validation error can name the file, line and reason.
"""
import dataclasses

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv

from pipeline import storage
from pipeline.errors import PipelineError

COLUMNS = ("source", "question", "answer", "rating")


@dataclasses.dataclass
class PuzzleRows:
    origin: str            # file path, URL or hf id: named in error messages
    question: list         # strings
    answer: list           # strings
    rating: np.ndarray     # float64, NaN where empty
    line: np.ndarray       # 1-based line in the file (the header is line 1), or row index + 2 for hf

    def __len__(self):
        return len(self.question)

    def take(self, idx) -> "PuzzleRows":
        idx = np.asarray(idx, dtype=np.int64)
        return PuzzleRows(self.origin, [self.question[i] for i in idx], [self.answer[i] for i in idx],
                          self.rating[idx], self.line[idx])


def raise_first_bad(rows: PuzzleRows, reasons: np.ndarray, *, option: str = "", note: str = "", hint: str = "",
                    kind: str = "bad") -> None:
    """Refuse `rows` if any reason is not "": name the first such row (file, line, reason + `note`) and how many
    more there are, then `hint`; `option` (e.g. `eval.source: `) leads the message."""
    bad = np.flatnonzero(reasons != "")
    if bad.size:
        more = f" (and {bad.size - 1} more {kind} rows)" if bad.size > 1 else ""
        raise PipelineError(f"{option}{rows.origin}, line {rows.line[bad[0]]}: {reasons[bad[0]]}{note}{more}{hint}")


def _from_table(table: pa.Table, origin: str) -> PuzzleRows:
    missing = [c for c in ("question", "answer") if c not in table.column_names]
    if missing:
        raise PipelineError(f"{origin}: missing column(s) {missing}; expected header {','.join(COLUMNS)}")
    if "rating" in table.column_names:
        rating_text = table.column("rating").cast(pa.string()).to_pylist()
        try:
            rating = np.array([float(r) if r not in (None, "") else np.nan for r in rating_text])
        except ValueError as err:
            raise PipelineError(f"{origin}: column 'rating' is not numeric ({err})") from None
    else:
        rating = np.full(table.num_rows, np.nan)
    question = [q if q is not None else "" for q in table.column("question").cast(pa.string()).to_pylist()]
    answer = [a if a is not None else "" for a in table.column("answer").cast(pa.string()).to_pylist()]
    return PuzzleRows(origin, question, answer, rating, np.arange(table.num_rows, dtype=np.int64) + 2)


def read_csv_file(path: str) -> PuzzleRows:
    if not storage.exists(path):
        raise PipelineError(f"{path}: file not found")
    fs, p = storage.filesystem(path)
    # Every column as text: digit-only answers would otherwise be parsed as integers.
    opts = pacsv.ConvertOptions(column_types={c: pa.string() for c in COLUMNS})
    try:
        with fs.open(p, "rb") as f:
            table = pacsv.read_csv(f, convert_options=opts)
        return _from_table(table, path)        # arrow decodes the header's names only when they are read
    except (pa.ArrowInvalid, UnicodeDecodeError) as err:
        raise PipelineError(f"{path}: not a readable CSV ({type(err).__name__}: {err})") from None


def read_hf(dataset_id: str) -> dict:
    """Splits of a `datasets` dataset (hub id, or a local folder loaded the same way)."""
    import datasets
    features = datasets.Features({c: datasets.Value("string") for c in COLUMNS})
    try:
        dd = datasets.load_dataset(dataset_id, features=features)
    except Exception as err:  # the library raises many types; the user needs the id and the reason
        raise PipelineError(f"hf:{dataset_id}: could not load ({type(err).__name__}: {err})") from None
    return {name: _from_table(split.data.table, f"hf:{dataset_id}[{name}]") for name, split in dd.items()}


def read_puzzle_source(source: str) -> dict:
    """Return {'train': rows, 'test': rows} for a split source, or {'all': rows} for a single file."""
    if source.startswith("hf:"):
        splits = read_hf(source[3:])
    else:
        fs, p = storage.filesystem(source)
        fs.invalidate_cache()
        if fs.isdir(p):
            splits = {s: read_csv_file(storage.join(source, f"{s}.csv")) for s in ("train", "test")}
        else:
            return {"all": read_csv_file(source)}
    if "train" in splits and "test" in splits:
        return {"train": splits["train"], "test": splits["test"]}
    if len(splits) == 1:
        return {"all": next(iter(splits.values()))}
    raise PipelineError(f"{source}: expected splits 'train' and 'test', found {sorted(splits)}")


def split_rows(rows: dict, num_train: int, num_test: int, rng: np.random.Generator) -> dict:
    """Choose `num_train`/`num_test` rows per split (seeded). A single file is split in two, disjointly.
    (Builders ask for `task.num_train + task.num_val` training rows and hold the validation ones out.)"""
    if "all" in rows:
        everything = rows["all"]
        if num_train + num_test > len(everything):
            raise PipelineError(f"{everything.origin}: has {len(everything)} puzzles, fewer than "
                                f"task.num_train + task.num_val + task.num_test = {num_train + num_test}")
        order = rng.permutation(len(everything))
        return {"train": everything.take(order[:num_train]),
                "test": everything.take(order[num_train:num_train + num_test])}
    out = {}
    for split, n in (("train", num_train), ("test", num_test)):
        part = rows[split]
        n = min(n, len(part))
        out[split] = part.take(np.sort(rng.choice(len(part), size=n, replace=False)))
    return out
