"""Fingerprints of a stage's inputs: file identities (local, prefix, folder, S3) and named differences."""
from pipeline import storage
from pipeline.data import fingerprint
from tests.conftest import compose


def test_differences_name_every_changed_dotted_key():
    saved = {"task": {"num_train": 8, "size": 4, "extra": 1}, "seed": 0}
    wanted = {"task": {"num_train": 4, "size": 4}, "seed": 0, "inputs": {"a.csv": "3:ab"}}
    assert fingerprint.differences(saved, wanted) == [
        "inputs: None there, {'a.csv': '3:ab'} here", "task.extra: 1 there, None here",
        "task.num_train: 8 there, 4 here"]
    assert fingerprint.differences(wanted, wanted) == []


def test_file_identities_follow_content_not_time(tmp_path):
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "train.csv").write_text("a,b\n1,2\n")
    (tmp_path / "src" / "test.csv").write_text("a,b\n")
    (tmp_path / "arc_training_challenges.json").write_text("{}")
    (tmp_path / "arc_training_solutions.json").write_text("{}")
    folder = fingerprint.file_identities(str(tmp_path / "src"))
    assert sorted(folder) == [str(tmp_path / "src" / "test.csv"), str(tmp_path / "src" / "train.csv")]
    assert folder[str(tmp_path / "src" / "train.csv")].startswith("8:")
    assert len(fingerprint.file_identities(str(tmp_path / "arc"))) == 2             # a Kaggle prefix
    assert fingerprint.file_identities(f"hf:{tmp_path / 'src'}") == folder          # a local hf folder
    assert fingerprint.file_identities("hf:someone/dataset") == {"hf:someone/dataset": "hub dataset"}
    before = fingerprint.file_identities(str(tmp_path / "src" / "train.csv"))
    (tmp_path / "src" / "train.csv").write_text("a,b\n1,2\n")                        # rewritten, same bytes
    assert fingerprint.file_identities(str(tmp_path / "src" / "train.csv")) == before
    (tmp_path / "src" / "train.csv").write_text("a,b\n1,3\n")                        # same size, other bytes
    assert fingerprint.file_identities(str(tmp_path / "src" / "train.csv")) != before


def test_s3_files_are_identified_by_etag(s3_bucket, tmp_path):
    (tmp_path / "p.csv").write_text("question,answer\n")
    fs, _ = storage.filesystem(s3_bucket)
    fs.put(str(tmp_path / "p.csv"), f"{s3_bucket[5:]}/in/p.csv")
    (identity,) = fingerprint.file_identities(f"{s3_bucket}/in/p.csv").values()
    assert identity.startswith("16:etag ")


def test_dataset_fingerprint_holds_task_seed_and_inputs(tmp_path):
    (tmp_path / "s.csv").write_text("question,answer\n")
    fp = fingerprint.dataset_fingerprint(compose("task=sudoku", f"task.source={tmp_path / 's.csv'}", "seed=3"))
    assert fp["seed"] == 3 and fp["task"]["source"] == str(tmp_path / "s.csv")
    assert list(fp["inputs"]) == [str(tmp_path / "s.csv")]
    assert fingerprint.dataset_fingerprint(compose("task=sudoku"))["inputs"] == {}
