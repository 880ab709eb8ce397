"""What a stage's output was made from, so "done" can mean "complete and made from this".

A fingerprint is a plain dict: the config that determines the output, the seed, and the identity of the
input files (size and content digest; an object store's ETag where it has one). Two fingerprints are
compared key by key and the differences named, so a rerun with another config can say exactly what
changed instead of silently taking (or replacing) someone else's output.
"""
import hashlib

from omegaconf import OmegaConf

from pipeline import storage
from pipeline.config import redact

SOURCE_KEYS = ("source", "identifiers")       # task.* options naming input files or folders
DIGEST_CHUNK = 8 << 20


def dataset_fingerprint(cfg) -> dict:
    """What `stage=augment` output depends on: the task section, the seed and the source files."""
    task = OmegaConf.to_container(cfg.task, resolve=True)
    inputs = {}
    for key in SOURCE_KEYS:
        value = task.get(key)
        if isinstance(value, str) and value != "generate":
            inputs.update(file_identities(value))
    return redact({"task": task, "seed": int(cfg.seed), "inputs": inputs})


def file_identities(source: str) -> dict:
    """{file: "<size>:<digest>"} for a file, every file under a folder, or the files a prefix starts
    (an ARC Kaggle prefix); an `hf:` id that is no local folder names itself (the hub is not reachable)."""
    if source.startswith("hf:"):
        local = storage.to_absolute(source[3:])
        if not storage.exists(local):
            return {source: "hub dataset"}
        source = local
    source = storage.to_absolute(source)
    fs, path = storage.filesystem(source)
    fs.invalidate_cache()
    if fs.isdir(path):
        files = sorted(fs.find(path))
    elif fs.exists(path):
        files = [path]
    else:
        parent = path.rsplit("/", 1)[0]
        files = sorted(f for f in fs.find(parent, maxdepth=1) if f.startswith(path)) if fs.exists(parent) else []
    return {f: _identity(fs, f) for f in files}


def _identity(fs, path: str) -> str:
    info = fs.info(path)
    etag = info.get("ETag") or info.get("etag")
    if etag:
        return f"{info['size']}:etag {str(etag).strip(chr(34))}"
    digest = hashlib.blake2b(digest_size=16)
    with fs.open(path, "rb") as f:
        while chunk := f.read(DIGEST_CHUNK):
            digest.update(chunk)
    return f"{info['size']}:{digest.hexdigest()}"


def describe(changes: list[str], shown: int = 3) -> str:
    """The first `shown` differences, `; `-joined, and how many more there are."""
    more = f" (and {len(changes) - shown} more)" if len(changes) > shown else ""
    return "; ".join(changes[:shown]) + more


def differences(saved: dict, wanted: dict, prefix: str = "") -> list[str]:
    """`key: <saved> there, <wanted> here` for every dotted key whose values differ (missing = null)."""
    out = []
    for key in sorted(set(saved) | set(wanted), key=str):
        a, b = saved.get(key), wanted.get(key)
        name = f"{prefix}{key}"
        if isinstance(a, dict) and isinstance(b, dict):
            out += differences(a, b, f"{name}.")
        elif a != b:
            out.append(f"{name}: {a!r} there, {b!r} here")
    return out


def evaluation_fingerprint(cfg, stage: str, checkpoint: str | None, step: int | None, manifest: dict) -> dict:
    """What `stage=eval` / `eval_arc` metrics depend on: the checkpoint (folder and step), the stage's
    options, the seed, and the data scored (the dataset's fingerprint, or `eval.source`'s files)."""
    options = {key: OmegaConf.to_container(cfg[key], resolve=True) for key in ("eval", stage)}
    source = cfg.eval.get("source") if stage == "eval" else None
    data = file_identities(str(source)) if source else manifest.get("fingerprint")
    return redact({"checkpoint": checkpoint, "step": step, "options": options, "seed": int(cfg.seed), "data": data})
