"""Storage helpers on local disk and on the loopback S3 server."""
import pytest

from pipeline import storage


@pytest.fixture(params=["local", "s3"])
def base(request, tmp_path, s3_bucket):
    return str(tmp_path) if request.param == "local" else f"{s3_bucket}/prefix"


def test_json_round_trip_and_listing(base):
    path = storage.join(base, "d", "m.json")
    assert not storage.exists(path)
    storage.write_json_atomic(path, {"a": 1})
    assert storage.read_json(path) == {"a": 1}
    storage.write_json_atomic(path, {"a": 2})
    assert storage.read_json(path) == {"a": 2}
    assert storage.list_files(storage.join(base, "d")) == [path]   # no temporary file left
    storage.remove(storage.join(base, "d"))
    assert not storage.exists(path)


def test_folders_are_listed_apart_from_files(base):
    for name in ("b/x.json", "a/y.json", "top.json"):
        storage.write_json_atomic(storage.join(base, "d", name), {})
    assert storage.list_folders(storage.join(base, "d")) == [storage.join(base, "d", "a"), storage.join(base, "d", "b")]
    assert storage.list_folders(storage.join(base, "absent")) == []


def test_to_absolute_keeps_urls(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert storage.to_absolute("x") == str(tmp_path / "x")
    assert storage.to_absolute("s3://b/p/") == "s3://b/p"
    assert storage.to_absolute("hf:org/name") == "hf:org/name"
