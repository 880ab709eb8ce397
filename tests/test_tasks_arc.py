"""`stage=augment task=arc` end to end on a local Ray: real tasks from each source layout, bad files, leakage."""
import json

import numpy as np
import pyarrow.parquet as pq
import pytest

from augment import arc
from pipeline import storage
from pipeline.data import dataset_format as fmt
from pipeline.errors import PipelineError
from pipeline.run import run_stage
from tests.conftest import compose, split_columns

TRAINING = ["007bbfb7", "0d3d703e", "8be77c9e"]
EVALUATION = ["00576224", "4cd1b7b2"]
NUM_AUG = 4
BASE = ("stage=augment", "task=arc", "preset=none", "task.subsets=[training,evaluation]",
        "task.test_subset=evaluation", f"task.num_aug={NUM_AUG}", "task.rows_per_file=40", "task.rows_per_group=15",
        "ray.dashboard=false")


def ids_override(ids):
    return f"task.task_ids=[{','.join(ids)}]"


def raw_tasks(shared_data, subset):
    """{task_id: task} with the solutions put into the test pairs, straight from the JSON files."""
    prefix = shared_data / "arc" / "arc-agi"
    challenges = json.loads(prefix.with_name(f"arc-agi_{subset}_challenges.json").read_text())
    solutions = json.loads(prefix.with_name(f"arc-agi_{subset}_solutions.json").read_text())
    for task_id, task in challenges.items():
        for pair, output in zip(task["test"], solutions[task_id]):
            pair["output"] = output
    return challenges


def read_split(data_dir, split):
    rows = split_columns(data_dir, split)
    order = np.lexsort([rows["example_index"], rows["is_test_pair"], rows["aug_index"], rows["group_id"]])
    return {k: v[order] for k, v in rows.items()}, len(storage.list_files(storage.join(str(data_dir), split), ".parquet"))


@pytest.fixture(scope="module")
def kaggle_build(ray_local, shared_data, tmp_path_factory):
    data_dir = tmp_path_factory.mktemp("arc") / "data"
    manifest = run_stage(compose(*BASE, f"task.source={shared_data / 'arc' / 'arc-agi'}",
                                 ids_override(TRAINING + EVALUATION), "task.num_val=1", f"data_dir={data_dir}"))
    return manifest, data_dir


def test_real_tasks_rows_map_back_to_the_json_grids(kaggle_build, shared_data):
    manifest, data_dir = kaggle_build
    raw = {**raw_tasks(shared_data, "training"), **raw_tasks(shared_data, "evaluation")}
    versions = NUM_AUG + 1
    assert (manifest["seq_len"], manifest["vocab_size"]) == (900, 12)
    assert manifest["num_puzzle_identifiers"] == 1 + 5 * versions and manifest["augmentation_shortfall"] == 0
    assert manifest["subsets"] == {"training": 3, "evaluation": 2}
    assert manifest["test_tasks"] == {t: len(raw[t]["test"]) for t in EVALUATION}
    train, train_files = read_split(data_dir, "train")
    test, _ = read_split(data_dir, "test")
    val, _ = read_split(data_dir, "val")
    # Routing: demo pairs of all tasks and test pairs of training tasks -> train, but those of one seeded
    # training task -> val; evaluation test pairs -> test.
    (held,) = set(val["task_id"])
    assert held in TRAINING and val["is_test_pair"].all()
    assert len(val["inputs"]) == manifest["splits"]["val"]["examples"] == versions * len(raw[held]["test"])
    assert not (train["is_test_pair"] & (train["task_id"] == held)).any()
    assert (train["task_id"] == held).sum() == versions * len(raw[held]["train"])   # its demos still train
    expected_train = versions * sum(len(raw[t]["train"]) + (len(raw[t]["test"]) if t in TRAINING and t != held
                                                            else 0) for t in TRAINING + EVALUATION)
    assert len(train["inputs"]) == manifest["splits"]["train"]["examples"] == expected_train
    assert len(test["inputs"]) == versions * sum(len(raw[t]["test"]) for t in EVALUATION)
    assert set(test["task_id"]) == set(EVALUATION) and test["is_test_pair"].all()
    assert train_files > 1                                    # rows_per_file=40 cuts it into several shards
    first_file = storage.list_files(str(data_dir / "train"), ".parquet")[0]
    assert pq.ParquetFile(first_file).metadata.num_row_groups > 1          # and each into row groups
    # Every row maps back exactly to its JSON grid through the transform it records.
    for split in (train, val, test):
        offsets = np.stack([split["offset_row"], split["offset_col"]], axis=1)
        for column, key in (("inputs", "input"), ("labels", "output")):
            back = arc.to_original(split[column], split["dihedral"], split["colour_map"], offsets)
            for grid, task_id, is_test, index in zip(back, split["task_id"], split["is_test_pair"],
                                                     split["example_index"]):
                assert grid.tolist() == raw[task_id]["test" if is_test else "train"][index][key]
    # One identifier per (task, version), consecutive; the test split reuses the train one.
    assert (test["offset_row"] == 0).all() and (test["offset_col"] == 0).all()
    assert train["offset_row"].max() > 0 and train["offset_col"].max() > 0
    puzzles = {(t, a): (p, d, m.tobytes()) for t, a, p, d, m in zip(train["task_id"], train["aug_index"],
               train["puzzle_identifier"], train["dihedral"], train["colour_map"])}
    assert sorted(p for p, _, _ in puzzles.values()) == list(range(1, 1 + 5 * versions))
    for t, a, p, d, m in zip(test["task_id"], test["aug_index"], test["puzzle_identifier"], test["dihedral"],
                             test["colour_map"]):
        assert puzzles[(t, a)] == (p, d, m.tobytes())
    assert all(puzzles[(t, a)][0] == p for t, a, p in zip(val["task_id"], val["aug_index"], val["puzzle_identifier"]))
    assert all((d == 0 and m == bytes(range(10))) == (a == 0) for (_, a), (_, d, m) in puzzles.items())
    # One example per puzzle keeps (0, 0).
    at_origin = (train["offset_row"] == 0) & (train["offset_col"] == 0)
    assert set(train["puzzle_identifier"][at_origin]) == set(train["puzzle_identifier"])
    # Side files: identifier -> (task, transform), and the raw test tasks for scoring.
    ids = pq.read_table(data_dir / manifest["identifiers_file"]).to_pydict()
    assert ids["puzzle_identifier"] == list(range(1, 1 + 5 * versions))
    for p, t, a, d in zip(ids["puzzle_identifier"], ids["task_id"], ids["aug_index"], ids["dihedral"]):
        assert puzzles[(t, a)][:2] == (p, d)
    assert json.loads((data_dir / manifest["test_puzzles_file"]).read_text()) == {t: raw[t] for t in EVALUATION}


def test_val_from_demos_lends_the_last_demonstration_of_each_test_task(ray_local, shared_data, tmp_path):
    """task.val_from_demos=true: 4cd1b7b2 (3 demonstrations) validates on its last one, which no longer trains;
    00576224 (2) keeps both; the test pairs stay in test and nothing else moves."""
    raw = {**raw_tasks(shared_data, "training"), **raw_tasks(shared_data, "evaluation")}
    manifest = run_stage(compose(*BASE, f"task.source={shared_data / 'arc' / 'arc-agi'}", "task.val_from_demos=true",
                                 ids_override(TRAINING + EVALUATION), f"data_dir={tmp_path / 'data'}"))
    val, _ = read_split(tmp_path / "data", "val")
    train, _ = read_split(tmp_path / "data", "train")
    test, _ = read_split(tmp_path / "data", "test")
    versions, lent = NUM_AUG + 1, len(raw["4cd1b7b2"]["train"]) - 1
    assert manifest["val_demonstrations"] == 1 and len(val["inputs"]) == versions
    assert set(val["task_id"]) == {"4cd1b7b2"} and (val["example_index"] == lent).all()
    assert not val["is_test_pair"].any() and (val["offset_row"] == 0).all() and (val["offset_col"] == 0).all()
    back = arc.to_original(val["labels"], val["dihedral"], val["colour_map"], np.zeros((versions, 2), np.int8))
    assert all(grid.tolist() == raw["4cd1b7b2"]["train"][lent]["output"] for grid in back)
    in_train = lambda task, index: ((train["task_id"] == task) & ~train["is_test_pair"]  # noqa: E731
                                    & (train["example_index"] == index)).sum()
    assert in_train("4cd1b7b2", lent) == 0 and in_train("4cd1b7b2", 0) == versions
    assert in_train("00576224", 1) == versions
    assert len(test["inputs"]) == versions * sum(len(raw[t]["test"]) for t in EVALUATION)


def write_task_folder(raw, folder):
    for subset, tasks in raw.items():
        (folder / subset).mkdir(parents=True)
        for task_id, task in tasks.items():
            (folder / subset / f"{task_id}.json").write_text(json.dumps(task))


def write_hf_folder(raw, folder):
    """A `datasets` folder with one split per subset, declared in its README as on the Hub."""
    folder.mkdir()
    configs = ["---", "configs:", "- config_name: default", "  data_files:"]
    for subset, tasks in raw.items():
        lines = [json.dumps({"id": task_id, **task}) for task_id, task in tasks.items()]
        (folder / f"{subset}.jsonl").write_text("\n".join(lines) + "\n")
        configs += [f"  - split: {subset}", f"    path: {subset}.jsonl"]
    (folder / "README.md").write_text("\n".join(configs + ["---", ""]))


def test_folder_s3_and_hf_sources_give_the_same_rows(kaggle_build, shared_data, tmp_path, s3_bucket):
    _, kaggle_dir = kaggle_build
    expected, _ = read_split(kaggle_dir, "train")
    raw = {"training": {t: v for t, v in raw_tasks(shared_data, "training").items() if t in TRAINING},
           "evaluation": {t: v for t, v in raw_tasks(shared_data, "evaluation").items() if t in EVALUATION}}
    write_task_folder(raw, tmp_path / "folder")
    fs, _ = storage.filesystem(s3_bucket)
    fs.put(str(tmp_path / "folder"), f"{s3_bucket[5:]}/src", recursive=True)
    write_hf_folder(raw, tmp_path / "hf")
    for source, data_dir in ((f"{s3_bucket}/src", f"{s3_bucket}/data"), (f"hf:{tmp_path / 'hf'}", tmp_path / "d")):
        manifest = run_stage(compose(*BASE, f"task.source={source}", "task.num_val=1", f"data_dir={data_dir}"))
        assert manifest["source"] == str(source)
        got, _ = read_split(data_dir, "train")
        assert all(np.array_equal(got[k], expected[k]) for k in expected), source
        assert storage.exists(storage.join(str(data_dir), manifest["identifiers_file"]))


def write_kaggle(folder, subset, challenges, solutions):
    folder.mkdir(exist_ok=True)
    (folder / f"bad_{subset}_challenges.json").write_text(json.dumps(challenges))
    (folder / f"bad_{subset}_solutions.json").write_text(json.dumps(solutions))
    return folder / "bad"


GOOD = {"train": [{"input": [[1, 2]], "output": [[2, 1]]}], "test": [{"input": [[3, 4]]}]}


@pytest.mark.parametrize("task,solution,message", [
    ({"train": [{"input": [[1] * 31], "output": [[1]]}], "test": [{"input": [[1]]}]}, [[[1]]],
     "task bad00001, train pair 0: input grid is 1x31"),
    ({"train": [{"input": [[1]], "output": [[1]]}], "test": [{"input": [[1, 10]]}]}, [[[1]]],
     "task bad00001, test pair 0: input grid has colour 10"),
    (GOOD, [[[1]], [[2]]], "task bad00001: 2 solution grids for the 1 test inputs"),
])
def test_malformed_kaggle_files_name_file_task_and_pair(ray_local, make_cfg, tmp_path, task, solution, message):
    prefix = write_kaggle(tmp_path / "src", "evaluation", {"good0001": GOOD, "bad00001": task},
                          {"good0001": [[[4, 3]]], "bad00001": solution})
    write_kaggle(tmp_path / "src", "training", {"good0002": GOOD}, {"good0002": [[[4, 3]]]})
    data_dir = tmp_path / "data"
    with pytest.raises(PipelineError) as err:
        run_stage(make_cfg(*BASE, f"task.source={prefix}", f"data_dir={data_dir}"))
    blamed = "solutions" if "solution grids" in message else "challenges"     # the file that holds the fault
    assert f"{prefix}_evaluation_{blamed}.json: {message}" in str(err.value)
    assert not fmt.dataset_complete(str(data_dir))


def test_malformed_task_file_in_a_folder_is_named(ray_local, make_cfg, tmp_path):
    bad = {"train": [{"input": [[1, 2], [3]], "output": [[1]]}], "test": [{"input": [[1]], "output": [[1]]}]}
    write_task_folder({"training": {"aaaa0001": {**GOOD, "test": [{"input": [[3]], "output": [[3]]}]}},
                       "evaluation": {"bbbb0002": bad}}, tmp_path / "src")
    with pytest.raises(PipelineError, match=r"evaluation/bbbb0002\.json: task bbbb0002, train pair 0: input grid "
                                            r"is not rectangular"):
        run_stage(make_cfg(*BASE, f"task.source={tmp_path / 'src'}", f"data_dir={tmp_path / 'data'}"))
    assert not fmt.dataset_complete(str(tmp_path / "data"))


def test_options_are_checked(ray_local, make_cfg, tmp_path, shared_data):
    with pytest.raises(PipelineError, match="task.source is not set"):
        run_stage(make_cfg("stage=augment", "task=arc", "preset=none", f"data_dir={tmp_path}"))
    source = f"task.source={shared_data / 'arc' / 'arc-agi'}"
    with pytest.raises(PipelineError, match=r"task.task_ids: \['nosuchid'\] not found"):
        run_stage(make_cfg(*BASE, source, ids_override(["007bbfb7", "nosuchid"]), f"data_dir={tmp_path}"))
    with pytest.raises(PipelineError, match="task.test_subset=concept is not one of"):
        run_stage(make_cfg(*BASE, source, "task.test_subset=concept", f"data_dir={tmp_path}"))
    with pytest.raises(PipelineError, match="arc-agi_nosuch_challenges.json not found"):
        run_stage(make_cfg(*BASE, source, "task.subsets=[evaluation,nosuch]", f"data_dir={tmp_path}"))


def test_leakage_guard_refuses_training2_with_evaluation_unless_allowed(ray_local, make_cfg, tmp_path, shared_data):
    args = ("stage=augment", "task=arc", "preset=none", "task.subsets=[training2,evaluation]",
            "task.test_subset=evaluation", "task.num_aug=1", "ray.dashboard=false", ids_override(["00576224"]),
            f"task.source={shared_data / 'arc' / 'arc-agi'}", f"data_dir={tmp_path}")
    with pytest.raises(PipelineError) as err:
        run_stage(make_cfg(*args))
    message = str(err.value)
    assert "evaluation/00576224 test pair 0 = training2/00576224" in message
    assert "appear in two subsets (training2/00576224 = evaluation/00576224)" in message
    assert "task.allow_overlap=true" in message and not fmt.dataset_complete(str(tmp_path))
    manifest = run_stage(make_cfg(*args, "task.allow_overlap=true"))
    assert manifest["overlap"]["count"] == 2 and manifest["splits"]["test"]["examples"] > 0


def test_small_canvas_keeps_the_tasks_that_fit_and_maps_back(ray_local, shared_data, tmp_path):
    """task.canvas=6: 007bbfb7 (9x9 outputs) is left out and counted; every row is a 6x6 canvas that maps
    back exactly to its JSON grid."""
    raw = {**raw_tasks(shared_data, "training"), **raw_tasks(shared_data, "evaluation")}
    manifest = run_stage(compose(*BASE, f"task.source={shared_data / 'arc' / 'arc-agi'}", "task.canvas=6",
                                 ids_override(TRAINING + EVALUATION), f"data_dir={tmp_path / 'data'}"))
    assert manifest["seq_len"] == 36 and manifest["canvas"] == 6
    assert manifest["too_large_for_canvas"] == {"training": 1, "evaluation": 0}
    assert manifest["subsets"] == {"training": 2, "evaluation": 2}
    for split in ("train", "test"):
        rows, _ = read_split(tmp_path / "data", split)
        assert rows["inputs"].shape[1] == 36 and "007bbfb7" not in set(rows["task_id"])
        offsets = np.stack([rows["offset_row"], rows["offset_col"]], axis=1)
        back = arc.to_original(rows["inputs"], rows["dihedral"], rows["colour_map"], offsets)
        for grid, task_id, is_test, index in zip(back, rows["task_id"], rows["is_test_pair"], rows["example_index"]):
            assert grid.tolist() == raw[task_id]["test" if is_test else "train"][index]["input"]
    with pytest.raises(PipelineError, match=r"no tasks left to test on \(task.canvas=2 left out 2 of them\)"):
        run_stage(compose(*BASE, f"task.source={shared_data / 'arc' / 'arc-agi'}", "task.canvas=2",
                          ids_override(TRAINING + EVALUATION), f"data_dir={tmp_path / 'tiny'}"))


def test_demo_preset_builds_the_tasks_the_readme_describes(ray_local, shared_data, tmp_path):
    """preset demo_arc: the 46 ARC-AGI-1 training tasks that fit 6x6 are scored (53 test inputs), the 43 of them
    with at least 3 demonstrations lend their last one to the validation split, 13 evaluation and 6 ConceptARC
    tasks only train."""
    manifest = run_stage(compose("stage=augment", "task=arc", f"task.source={shared_data / 'arc' / 'arc-agi'}",
                                 f"data_dir={tmp_path / 'data'}"))
    assert manifest["seq_len"] == 36
    assert manifest["subsets"] == {"training": 46, "evaluation": 13, "concept": 6}
    assert manifest["splits"]["test"]["groups"] == 46 and manifest["splits"]["val"]["groups"] == 43
    assert manifest["val_demonstrations"] == 43
    tasks = json.loads((tmp_path / "data" / "test_puzzles.json").read_text())
    assert len(tasks) == 46 and sum(len(t["test"]) for t in tasks.values()) == 53
