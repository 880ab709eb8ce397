"""`stage=augment task=maze` end to end on a local Ray: generated, from CSV (local and s3), bad input."""
import numpy as np
import pytest

from augment import maze
from augment.dihedral import dihedral_transform
from pipeline import storage
from pipeline.data import dataset_format as fmt
from pipeline.errors import PipelineError
from pipeline.run import run_stage
from tests.conftest import split_columns

SMALL = ("stage=augment", "task=maze", "preset=none", "task.size=9", "task.chunk_size=16", "task.num_val=0",
         "ray.dashboard=false")


def read_split(data_dir, split, size):
    rows = split_columns(data_dir, split)
    rows["inputs"], rows["labels"] = (rows[k].reshape(-1, size, size) for k in ("inputs", "labels"))
    order = np.lexsort([rows["aug_index"], rows["group_id"]])
    return {k: v[order] for k, v in rows.items()}


def test_generated_mazes_are_valid_augmented_and_reproducible(ray_local, make_cfg, tmp_path):
    args = SMALL + ("task.num_train=40", "task.num_val=5", "task.num_test=12", "task.num_aug=3")
    manifest = run_stage(make_cfg(*args, f"data_dir={tmp_path / 'a'}"))
    assert (manifest["seq_len"], manifest["vocab_size"], manifest["num_puzzle_identifiers"]) == (81, 6, 1)
    assert manifest["splits"]["train"]["examples"] == 160 and manifest["splits"]["train"]["groups"] == 40
    assert manifest["splits"]["test"]["examples"] == 12
    assert manifest["min_path_len"] == maze.default_min_path_len(9) and manifest["style"] == "random"
    assert sum(manifest["path_len_histogram"]["train"].values()) == 40
    train, test = read_split(tmp_path / "a", "train", 9), read_split(tmp_path / "a", "test", 9)
    val = read_split(tmp_path / "a", "val", 9)
    assert manifest["splits"]["val"]["examples"] == 5 and (val["aug_index"] == 0).all()
    assert not set(val["group_id"].tolist()) & set(train["group_id"].tolist())
    for split in (train, val, test):
        assert (maze.validate(split["inputs"], split["labels"]) == "").all()
        assert maze.shortest_path_is_unique(split["inputs"]).all()
        assert (split["path_len"] >= manifest["min_path_len"]).all()
        assert (split["puzzle_identifier"] == 0).all()
    assert (test["aug_index"] == 0).all() and (test["dihedral_id"] == 0).all()
    # Per maze: the original and 3 distinct non-identity symmetries of it.
    ids = train["dihedral_id"].reshape(40, 4)
    assert (ids[:, 0] == 0).all() and all(len(set(r[1:])) == 3 and 0 not in r[1:] for r in ids)
    originals = train["inputs"][::4]
    for row in range(len(train["group_id"])):
        base = originals[row // 4]
        assert np.array_equal(train["inputs"][row], dihedral_transform(base, train["dihedral_id"][row]))
    for held_out in (val, test):
        assert not np.isin(maze.canonical_hash(held_out["inputs"]), maze.canonical_hash(originals)).any()
    # Same seed, same data; another seed, other mazes.
    run_stage(make_cfg(*args, f"data_dir={tmp_path / 'b'}"))
    again = read_split(tmp_path / "b", "train", 9)
    assert all(np.array_equal(train[k], again[k]) for k in train)
    run_stage(make_cfg(*args, "seed=1", f"data_dir={tmp_path / 'c'}"))
    assert not np.array_equal(read_split(tmp_path / "c", "train", 9)["inputs"], train["inputs"])


def test_perfect_maze_style(ray_local, make_cfg, tmp_path):
    manifest = run_stage(make_cfg(*SMALL, "task.style=dfs", "task.num_train=20", "task.num_test=5",
                                  "task.num_aug=0", f"data_dir={tmp_path}"))
    train = read_split(tmp_path, "train", 9)
    assert manifest["style"] == "dfs" and len(train["inputs"]) == 20
    assert (maze.validate(train["inputs"], train["labels"]) == "").all()


def write_csv(path, questions, answers):
    lines = ["source,question,answer,rating"]
    lines += [f"gen,{q},{a},0" for q, a in zip(maze.format_grids(questions), maze.format_grids(answers))]
    path.write_text("\n".join(lines) + "\n")


def make_csv_dir(folder, size=9):
    folder.mkdir()
    rng = np.random.default_rng(0)
    questions, answers, _ = maze.generate(rng, 100, size, "random", 0.37)
    write_csv(folder / "train.csv", questions[:20], answers[:20])
    write_csv(folder / "test.csv", questions[20:28], answers[20:28])
    return questions, answers


def test_csv_directory_source(ray_local, make_cfg, tmp_path):
    questions, answers = make_csv_dir(tmp_path / "src")
    manifest = run_stage(make_cfg(*SMALL, f"task.source={tmp_path / 'src'}", "task.num_train=20",
                                  "task.num_test=8", "task.num_aug=1", f"data_dir={tmp_path / 'out'}"))
    assert manifest["style"] == "csv" and manifest["dropped_equivalent_test"] == 0
    assert manifest["tied_shortest_paths"] == {"train": 0, "val": 0, "test": 0}
    train = read_split(tmp_path / "out", "train", 9)
    test = read_split(tmp_path / "out", "test", 9)
    assert len(train["inputs"]) == 40 and len(test["inputs"]) == 8
    expected = {q.tobytes() for q in questions[20:28]}
    assert {q.tobytes() for q in test["inputs"]} == expected
    assert (maze.validate(train["inputs"], train["labels"]) == "").all()


def test_bad_csv_row_names_file_and_line_and_writes_nothing(ray_local, make_cfg, tmp_path):
    questions, answers = make_csv_dir(tmp_path / "src")
    broken = answers[20:28].copy()
    cell = tuple(np.argwhere(broken[2] == maze.PATH)[0])
    broken[2][cell] = maze.OPEN                        # a gap in the path of the test file's 3rd maze
    write_csv(tmp_path / "src" / "test.csv", questions[20:28], broken)
    out = tmp_path / "out"
    with pytest.raises(PipelineError, match=r"test\.csv, line 4: answer marks"):
        run_stage(make_cfg(*SMALL, f"task.source={tmp_path / 'src'}", "task.num_train=20", "task.num_test=8",
                           f"data_dir={out}"))
    assert not fmt.dataset_complete(str(out))
    assert not storage.list_files(str(out / "train"), ".parquet")
    assert not storage.list_files(str(out / "test"), ".parquet")


def test_unreachable_min_path_len_is_a_config_error(ray_local, make_cfg, tmp_path):
    with pytest.raises(PipelineError, match="task.min_path_len=80"):
        run_stage(make_cfg(*SMALL, "task.min_path_len=80", f"data_dir={tmp_path}"))


def test_s3_source_and_destination(ray_local, make_cfg, tmp_path, s3_bucket):
    rng = np.random.default_rng(1)
    questions, answers, _ = maze.generate(rng, 80, 9, "random", 0.37)
    write_csv(tmp_path / "mazes.csv", questions[:30], answers[:30])
    fs, _ = storage.filesystem(s3_bucket)
    fs.put(str(tmp_path / "mazes.csv"), f"{s3_bucket[5:]}/in/mazes.csv")
    data_dir = f"{s3_bucket}/maze"
    manifest = run_stage(make_cfg(*SMALL, f"task.source={s3_bucket}/in/mazes.csv", "task.num_train=15",
                                  "task.num_val=5", "task.num_test=10", "task.num_aug=0", f"data_dir={data_dir}"))
    assert fmt.dataset_complete(data_dir)
    assert [manifest["splits"][s]["examples"] for s in ("train", "val", "test")] == [15, 5, 10]
    splits = {s: read_split(data_dir, s, 9) for s in ("train", "val", "test")}
    assert (maze.validate(splits["test"]["inputs"], splits["test"]["labels"]) == "").all()
    seen = [{q.tobytes() for q in split["inputs"]} for split in splits.values()]
    assert not (seen[0] & seen[1] or seen[0] & seen[2] or seen[1] & seen[2])


def test_hf_source_loads_a_local_dataset_offline(ray_local, make_cfg, tmp_path):
    questions, _ = make_csv_dir(tmp_path / "src")
    manifest = run_stage(make_cfg(*SMALL, f"task.source=hf:{tmp_path / 'src'}", "task.num_train=20",
                                  "task.num_test=8", "task.num_aug=0", f"data_dir={tmp_path / 'out'}"))
    assert manifest["source"] == f"hf:{tmp_path / 'src'}" and manifest["splits"]["test"]["examples"] == 8
    test = read_split(tmp_path / "out", "test", 9)
    assert {q.tobytes() for q in test["inputs"]} == {q.tobytes() for q in questions[20:28]}


def test_csv_test_maze_seen_in_training_is_dropped_and_ties_are_counted(ray_local, make_cfg, tmp_path):
    questions, answers, _ = maze.generate(np.random.default_rng(5), 100, 9, "random", 0.37)
    open_room = np.full((9, 9), maze.OPEN, dtype=np.uint8)          # many shortest paths
    open_room[0, 0], open_room[8, 8] = maze.START, maze.GOAL
    room_answer = open_room.copy()
    room_answer[0, 1:] = maze.PATH
    room_answer[1:8, 8] = maze.PATH
    (tmp_path / "src").mkdir()
    write_csv(tmp_path / "src" / "train.csv", np.concatenate([questions[:10], open_room[None]]),
              np.concatenate([answers[:10], room_answer[None]]))
    rotated = [dihedral_transform(x[3], 1)[None] for x in (questions, answers)]
    write_csv(tmp_path / "src" / "test.csv", np.concatenate([questions[10:15], rotated[0]]),
              np.concatenate([answers[10:15], rotated[1]]))
    manifest = run_stage(make_cfg(*SMALL, f"task.source={tmp_path / 'src'}", "task.num_train=11",
                                  "task.num_test=6", "task.num_aug=0", f"data_dir={tmp_path / 'out'}"))
    assert manifest["dropped_equivalent_test"] == 1 and manifest["splits"]["test"]["examples"] == 5
    assert manifest["tied_shortest_paths"] == {"train": 1, "val": 0, "test": 0}
