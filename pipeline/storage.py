"""Paths that may be local or remote (`s3://bucket/prefix`), through fsspec.

Credentials are never handled here: s3fs/boto read them from the environment (`AWS_*`,
`AWS_ENDPOINT_URL`) or their own config files, so nothing secret reaches a config or manifest.
"""
import json
import os
import posixpath
import uuid

import fsspec


def is_remote(path: str) -> bool:
    return "://" in str(path)


def to_absolute(path: str) -> str:
    """Local paths become absolute; URLs and `hf:` ids are returned as given."""
    path = str(path)
    if is_remote(path) or path.startswith("hf:"):
        return path.rstrip("/")
    return os.path.abspath(os.path.expanduser(path))


def join(base: str, *parts: str) -> str:
    return posixpath.join(base, *parts) if is_remote(base) else os.path.join(base, *parts)


def filesystem(path: str):
    """(fsspec filesystem, path within it) for a local path or URL."""
    return fsspec.core.url_to_fs(str(path))


def exists(path: str) -> bool:
    fs, p = filesystem(path)
    fs.invalidate_cache()
    return fs.exists(p)


def read_json(path: str):
    with fsspec.open(str(path), "r") as f:
        return json.load(f)


def write_json_atomic(path: str, obj) -> None:
    """Write JSON so a reader sees either nothing or the whole file (`write_text_atomic`)."""
    write_text_atomic(path, json.dumps(obj, indent=2, sort_keys=True, default=str))


def write_text_atomic(path: str, text: str) -> None:
    """Write text so a reader sees either nothing or the whole file.

    Local: write a temporary sibling, then rename over the target. Object stores: a single PUT is
    already all-or-nothing.
    """
    fs, p = filesystem(path)
    parent = posixpath.dirname(p) if is_remote(path) else os.path.dirname(p)
    fs.makedirs(parent, exist_ok=True)
    if is_remote(path):
        with fs.open(p, "w") as f:
            f.write(text)
        return
    tmp = os.path.join(parent, f".{os.path.basename(p)}.{uuid.uuid4().hex}.tmp")
    with open(tmp, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, p)


def move(source: str, destination: str) -> None:
    """Move a file or directory tree (a rename on local disk; copy then delete on an object store)."""
    fs, src = filesystem(source)
    _, dst = filesystem(destination)
    fs.invalidate_cache()
    fs.mv(src, dst, recursive=True)


def remove(path: str) -> None:
    """Remove a file or directory tree if it exists."""
    fs, p = filesystem(path)
    fs.invalidate_cache()
    if fs.exists(p):
        fs.rm(p, recursive=True)


def list_files(path: str, suffix: str = "") -> list[str]:
    """Files directly under a directory, as full paths/URLs in the input's form, sorted."""
    fs, p = filesystem(path)
    fs.invalidate_cache()
    if not fs.exists(p):
        return []
    names = sorted(fs.ls(p, detail=False))
    if is_remote(path):
        scheme = str(path).split("://", 1)[0]
        names = [f"{scheme}://{n}" for n in names]
    return [n for n in names if n.endswith(suffix)]


def list_folders(path: str) -> list[str]:
    """Folders directly under a directory, as full paths/URLs in the input's form, sorted (an object store's
    common prefixes count as folders)."""
    fs, p = filesystem(path)
    fs.invalidate_cache()
    if not fs.exists(p):
        return []
    names = sorted(entry["name"] for entry in fs.ls(p, detail=True) if entry["type"] == "directory")
    return [join(path, posixpath.basename(n.rstrip("/"))) for n in names]
