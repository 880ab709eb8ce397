"""`stage=augment task=sudoku` end to end on a local Ray: generated, CSV (file, folder, hf:, s3), bad input."""
import csv

import numpy as np
import pytest

from augment import sudoku
from pipeline import storage
from pipeline.data import dataset_format as fmt
from pipeline.errors import PipelineError
from pipeline.run import run_stage
from pipeline.tasks.sudoku import group_transforms
from tests.conftest import split_columns

SMALL = ("stage=augment", "task=sudoku", "preset=none", "task.chunk_size=8", "task.num_val=0", "ray.dashboard=false")


def read_split(data_dir, split, n):
    rows = split_columns(data_dir, split)
    order = np.lexsort([rows["aug_index"], rows["group_id"]])
    return {k: v[order] for k, v in rows.items()}


def grids(split, n):
    return sudoku.from_tokens(split["inputs"], n), sudoku.from_tokens(split["labels"], n)


def test_generated_puzzles_are_valid_augmented_and_reproducible(ray_local, make_cfg, tmp_path):
    args = SMALL + ("task.size=6", "task.num_train=24", "task.num_val=6", "task.num_test=10", "task.num_aug=3")
    manifest = run_stage(make_cfg(*args, f"data_dir={tmp_path / 'a'}"))
    assert (manifest["seq_len"], manifest["vocab_size"], manifest["num_puzzle_identifiers"]) == (36, 8, 1)
    assert manifest["box"] == [2, 3] and manifest["source"] == "generate"
    assert manifest["splits"]["train"] == {**manifest["splits"]["train"], "examples": 96, "groups": 24, "puzzles": 96}
    test_count = manifest["splits"]["test"]["examples"]
    assert test_count + manifest["dropped_equivalent_test"] == 10
    assert sum(manifest["rating_histogram"]["train"].values()) == 24
    train, test = read_split(tmp_path / "a", "train", 6), read_split(tmp_path / "a", "test", 6)
    val = read_split(tmp_path / "a", "val", 6)
    assert manifest["splits"]["val"]["examples"] + manifest["dropped_equivalent_val"] == 6
    assert len(val["group_id"]) == manifest["splits"]["val"]["examples"] and (val["aug_index"] == 0).all()
    assert not set(val["group_id"].tolist()) & set(train["group_id"].tolist())
    for split in (train, val, test):
        questions, solutions = grids(split, 6)
        assert split["inputs"].min() >= 1 and split["labels"].min() >= 2 and split["inputs"].max() <= 7
        assert sudoku.is_valid_solution(solutions).all() and sudoku.givens_consistent(questions, solutions).all()
        solved = sudoku.solve(questions)
        original = split["aug_index"] == 0      # copies carry their original's rating
        assert (solved.count == 1).all() and np.array_equal(solved.guesses[original], split["rating"][original])
        assert (split["puzzle_identifier"] == 0).all()
    assert (test["aug_index"] == 0).all()
    # Copy k of a group is transform k of (seed, group id) applied to the original.
    questions, solutions = grids(train, 6)
    originals = questions[train["aug_index"] == 0]
    assert np.array_equal(train["aug_index"].reshape(24, 4), np.tile(np.arange(4), (24, 1)))
    t = group_transforms(0, train["group_id"][::4], 3, 6)
    assert np.array_equal(questions.reshape(24, 4, 6, 6)[:, 1:].reshape(-1, 6, 6),
                          sudoku.apply_transform(np.repeat(originals, 3, axis=0), t))
    # No test puzzle is equivalent to a training one.
    canon_train = sudoku.canonical_form(originals, solutions[train["aug_index"] == 0])
    for held_out in (val, test):          # and no validation puzzle either: neither is ever trained on
        canon = sudoku.canonical_form(*grids(held_out, 6))
        assert not {c.tobytes() for c in canon} & {c.tobytes() for c in canon_train}
    # Same seed, same data; another seed, other puzzles.
    run_stage(make_cfg(*args, f"data_dir={tmp_path / 'b'}"))
    again = read_split(tmp_path / "b", "train", 6)
    assert all(np.array_equal(train[k], again[k]) for k in train)
    assert np.array_equal(read_split(tmp_path / "b", "val", 6)["inputs"], val["inputs"])
    run_stage(make_cfg(*args, "seed=1", f"data_dir={tmp_path / 'c'}"))
    assert not np.array_equal(read_split(tmp_path / "c", "train", 6)["labels"], train["labels"])


def test_existing_dataset_is_kept_only_when_made_from_the_same_inputs(ray_local, make_cfg, tmp_path):
    args = SMALL + ("task.size=4", "task.num_train=8", "task.num_test=0", "task.num_aug=1", f"data_dir={tmp_path / 'd'}")
    first = run_stage(make_cfg(*args))
    assert first["splits"]["test"]["examples"] == 0 and first["splits"]["train"]["examples"] == 16
    kept = run_stage(make_cfg(*args))
    assert kept["created"] == first["created"]
    # Another config: refused, naming the option and both values; the dataset is untouched.
    with pytest.raises(PipelineError, match=r"task\.num_train: 8 there, 4 here\. Pass overwrite=true"):
        run_stage(make_cfg(*args, "task.num_train=4"))
    with pytest.raises(PipelineError, match=r"seed: 0 there, 1 here"):
        run_stage(make_cfg(*args, "seed=1"))
    # overwrite=true with a bad source fails before the old dataset is touched.
    write_csv(tmp_path / "bad.csv", [{"source": "x", "question": "1234", "answer": "1234", "rating": "0"}])
    with pytest.raises(PipelineError, match="bad.csv"):
        run_stage(make_cfg(*args, f"task.source={tmp_path / 'bad.csv'}", "overwrite=true"))
    assert fmt.read_manifest(str(tmp_path / "d"))["created"] == first["created"]
    assert not (tmp_path / "d.rebuild").exists()
    rebuilt = run_stage(make_cfg(*args, "task.num_train=4", "overwrite=true"))
    assert rebuilt["splits"]["train"]["examples"] == 8 and not (tmp_path / "d.rebuild").exists()
    assert len(storage.list_files(str(tmp_path / "d" / "train"), ".parquet")) == 1


def test_a_csv_source_is_identified_by_its_content(ray_local, make_cfg, tmp_path, shared_data):
    rows = hard_rows(shared_data, 12)
    write_csv(tmp_path / "hard.csv", rows)
    csv_args = (*SMALL, f"task.source={tmp_path / 'hard.csv'}", "task.num_train=8", "task.num_test=4",
                "task.num_aug=0", f"data_dir={tmp_path / 'csv'}")
    run_stage(make_cfg(*csv_args))
    write_csv(tmp_path / "hard.csv", rows[::-1])
    with pytest.raises(PipelineError, match=r"inputs\..*hard\.csv: '\d+:[0-9a-f]+' there"):
        run_stage(make_cfg(*csv_args))


def hard_rows(shared_data, count):
    with open(shared_data / "sudoku" / "magictour_top1465.csv") as f:
        return list(csv.DictReader(f))[:count]


def write_csv(path, rows):
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["source", "question", "answer", "rating"])
        writer.writeheader()
        writer.writerows(rows)


def test_csv_file_is_split_validated_and_keeps_its_ratings(ray_local, make_cfg, tmp_path, shared_data):
    rows = hard_rows(shared_data, 30)
    write_csv(tmp_path / "hard.csv", rows)
    manifest = run_stage(make_cfg(*SMALL, f"task.source={tmp_path / 'hard.csv'}", "task.num_train=20",
                                  "task.num_test=10", "task.num_aug=2", f"data_dir={tmp_path / 'out'}"))
    assert manifest["dropped_equivalent_test"] == 0 and manifest["box"] == [3, 3]
    train, test = read_split(tmp_path / "out", "train", 9), read_split(tmp_path / "out", "test", 9)
    assert len(train["inputs"]) == 60 and len(test["inputs"]) == 10
    by_question = {r["question"]: int(r["rating"]) for r in rows}
    original = train["aug_index"] == 0
    chosen = sudoku.format_grids(grids(train, 9)[0][original]) + sudoku.format_grids(grids(test, 9)[0])
    assert sorted(chosen) == sorted(by_question)                 # every row used once, in one split
    assert [by_question[q] for q in chosen] == list(train["rating"][original]) + list(test["rating"])
    assert sudoku.is_valid_solution(grids(train, 9)[1]).all()


def test_min_rating_filters_csv_rows(ray_local, make_cfg, tmp_path, shared_data):
    rows = hard_rows(shared_data, 40)
    for r in rows[:5]:
        r["rating"] = ""                                          # missing: rated by the solver
    write_csv(tmp_path / "hard.csv", rows)
    manifest = run_stage(make_cfg(*SMALL, f"task.source={tmp_path / 'hard.csv'}", "task.num_train=8",
                                  "task.num_test=4", "task.num_aug=0", "task.min_rating=10",
                                  f"data_dir={tmp_path / 'out'}"))
    assert manifest["min_rating"] == 10
    for split in ("train", "test"):
        assert (read_split(tmp_path / "out", split, 9)["rating"] >= 10).all()


def test_folder_and_hf_sources_keep_their_split(ray_local, make_cfg, tmp_path, shared_data):
    rows = hard_rows(shared_data, 24)
    (tmp_path / "src").mkdir()
    write_csv(tmp_path / "src" / "train.csv", rows[:16])
    write_csv(tmp_path / "src" / "test.csv", rows[16:])
    for name, source in (("dir", str(tmp_path / "src")), ("hf", f"hf:{tmp_path / 'src'}")):
        manifest = run_stage(make_cfg(*SMALL, f"task.source={source}", "task.num_train=16", "task.num_test=8",
                                      "task.num_aug=1", f"data_dir={tmp_path / name}"))
        assert manifest["source"] == source
        test = read_split(tmp_path / name, "test", 9)
        assert sorted(sudoku.format_grids(grids(test, 9)[0])) == sorted(r["question"] for r in rows[16:])
        assert manifest["splits"]["train"]["examples"] == 32


def test_bad_csv_row_names_file_line_and_reason_and_writes_nothing(ray_local, make_cfg, tmp_path, shared_data):
    rows = hard_rows(shared_data, 12)
    answer = rows[6]["answer"]
    rows[6]["answer"] = answer[1] + answer[0] + answer[2:]       # line 8: two digits swapped in row 1
    write_csv(tmp_path / "hard.csv", rows)
    out = tmp_path / "out"
    with pytest.raises(PipelineError, match=r"hard\.csv, line 8: answer is not a valid grid"):
        run_stage(make_cfg(*SMALL, f"task.source={tmp_path / 'hard.csv'}", "task.num_train=8", "task.num_test=4",
                           f"data_dir={out}"))
    assert not fmt.dataset_complete(str(out))
    assert not storage.list_files(str(out / "train"), ".parquet") and not storage.list_files(str(out / "test"))


def test_csv_puzzles_with_several_solutions_are_refused_or_counted(ray_local, make_cfg, tmp_path, shared_data):
    rows = hard_rows(shared_data, 12)
    rows[3]["question"] = "." * 81                                # line 5: a blank grid (any solution fits)
    rows[9]["question"] = rows[9]["answer"][:10] + "." * 71      # line 11: ten givens, many solutions
    write_csv(tmp_path / "loose.csv", rows)
    args = (*SMALL, f"task.source={tmp_path / 'loose.csv'}", "task.num_train=8", "task.num_test=4", "task.num_aug=0")
    with pytest.raises(PipelineError, match=r"loose\.csv, line (5|11): the question has more than one solution "
                                            r"\(and 1 more such rows\)|loose\.csv, line (5|11): the question has more"):
        run_stage(make_cfg(*args, f"data_dir={tmp_path / 'refused'}"))
    assert not fmt.dataset_complete(str(tmp_path / "refused"))
    manifest = run_stage(make_cfg(*args, "task.allow_non_unique=true", f"data_dir={tmp_path / 'kept'}"))
    assert sum(manifest["non_unique"].values()) == 2
    assert manifest["splits"]["train"]["examples"] + manifest["splits"]["test"]["examples"] == 12


def test_config_errors_name_the_option(ray_local, make_cfg, tmp_path):
    with pytest.raises(PipelineError, match=r"task.size=5"):
        run_stage(make_cfg(*SMALL, "task.size=5", f"data_dir={tmp_path}"))
    with pytest.raises(PipelineError, match=r"task.min_rating=100000"):
        run_stage(make_cfg(*SMALL, "task.size=4", "task.min_rating=100000", f"data_dir={tmp_path}"))


def test_s3_source_and_destination(ray_local, make_cfg, tmp_path, shared_data, s3_bucket):
    write_csv(tmp_path / "hard.csv", hard_rows(shared_data, 20))
    fs, _ = storage.filesystem(s3_bucket)
    fs.put(str(tmp_path / "hard.csv"), f"{s3_bucket[5:]}/in/hard.csv")
    data_dir = f"{s3_bucket}/sudoku"
    manifest = run_stage(make_cfg(*SMALL, f"task.source={s3_bucket}/in/hard.csv", "task.num_train=12",
                                  "task.num_test=6", "task.num_aug=2", f"data_dir={data_dir}"))
    assert fmt.dataset_complete(data_dir)
    assert manifest["splits"]["train"]["examples"] == 36 and manifest["splits"]["test"]["examples"] == 6
    questions, solutions = grids(read_split(data_dir, "train", 9), 9)
    assert sudoku.is_valid_solution(solutions).all() and sudoku.givens_consistent(questions, solutions).all()
