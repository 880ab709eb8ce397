"""Training checkpoints under `run_dir`: layout, writing, finding and loading (local or `s3://`).

A checkpoint is a folder `run_dir/checkpoint_<step:08d>/` written through Ray Train's storage: every rank
reports its own files into the same folder.
- `state.pt` (rank 0): `trm.training_state` (model with the puzzle table, EMA, both optimisers, step,
  torch RNG) plus `best_metric`;
- `rank_<r>.pt` (each rank): that rank's carry, torch RNG (halting exploration) and data position;
- `config.json` (resolved, redacted config), `manifest.json` (the dataset's), `meta.json` (step,
  world size, evaluation metrics), all from rank 0.
A checkpoint is complete when `meta.json`, `state.pt` and every rank's file exist. The best checkpoint by
the periodic evaluation is kept apart as `run_dir/best_<step:08d>/` (rank 0's files only: enough to
evaluate, not to resume). Everything loads with `torch.load(weights_only=True)`.
"""
import json
import logging
import os
import posixpath
import re
import tempfile
import zipfile

import torch

from pipeline import storage

from pipeline.checkpoints import load_errors
from pipeline.errors import PipelineError

log = logging.getLogger(__name__)

STATE = "state.pt"
META = "meta.json"
CONFIG = "config.json"
MANIFEST = "manifest.json"
_NAME = re.compile(r"^(checkpoint|best|imported)_(\d{8})$")   # imported_: stage=import's
MANIFEST_FIELDS = ("seq_len", "vocab_size", "num_puzzle_identifiers")


def checkpoint_name(step: int) -> str:
    return f"checkpoint_{step:08d}"


def best_name(step: int) -> str:
    return f"best_{step:08d}"


def rank_file(rank: int) -> str:
    return f"rank_{rank}.pt"


def folders(run_dir: str, kind: str) -> list[tuple[int, str]]:
    """(step, path) of the `kind`_<step> folders directly under run_dir, by step."""
    fs, root = storage.filesystem(run_dir)
    fs.invalidate_cache()
    if not fs.exists(root):
        return []
    found = []
    for entry in fs.ls(root, detail=True):
        name = entry["name"].rstrip("/").rsplit("/", 1)[-1]
        match = _NAME.match(name)
        if entry["type"] == "directory" and match and match.group(1) == kind:
            found.append((int(match.group(2)), storage.join(run_dir, name)))
    return sorted(found)


def _read_meta(path: str) -> dict | None:
    meta_path = storage.join(path, META)
    if not storage.exists(meta_path):
        return None
    try:
        return storage.read_json(meta_path)
    except (OSError, ValueError):
        return None


def is_complete(path: str, need_ranks: bool = True) -> bool:
    meta = _read_meta(path)
    if meta is None or not storage.exists(storage.join(path, STATE)):
        return False
    if not need_ranks:
        return True
    return all(storage.exists(storage.join(path, rank_file(r))) for r in range(int(meta["world_size"])))


def _torch_file_problem(path: str) -> str | None:
    """Why a torch.save file cannot be loaded, from its zip directory alone (a truncated or overwritten
    file loses it), without reading the tensors; None when it looks whole."""
    fs, p = storage.filesystem(path)
    try:
        size = fs.size(p)
        with fs.open(p, "rb") as f, zipfile.ZipFile(f) as archive:
            for entry in archive.infolist():
                if entry.header_offset + entry.compress_size > size:
                    return f"{entry.filename} runs past the end of the file"
    except (OSError, zipfile.BadZipFile, ValueError) as err:
        return f"{type(err).__name__}: {err}"
    return None


def unreadable_reason(path: str) -> str | None:
    """Why the complete checkpoint folder at `path` cannot be resumed from (naming the file), or None."""
    parsed = {}
    for name in (META, CONFIG, MANIFEST):
        try:
            parsed[name] = storage.read_json(storage.join(path, name))
        except (OSError, ValueError) as err:
            return f"{name}: {type(err).__name__}: {err}"
    world = int(parsed[META]["world_size"])
    for name in (STATE, *(rank_file(r) for r in range(world))):
        problem = _torch_file_problem(storage.join(path, name))
        if problem:
            return f"{name} is unreadable ({problem})"
    return None


def resumable_checkpoint(run_dir: str) -> tuple[str | None, list[tuple[str, str]]]:
    """(the newest complete and readable checkpoint or None, [(path, reason) of newer ones skipped])."""
    skipped = []
    for _, path in reversed(folders(run_dir, "checkpoint")):
        if not is_complete(path):
            continue
        reason = unreadable_reason(path)
        if reason is None:
            return path, skipped
        skipped.append((path, reason))
    return None, skipped


def remove_unfinished(run_dir: str) -> list[str]:
    """Remove the checkpoint folders newer than the newest resumable one and the best_ folders newer than the
    newest complete one (what a failed save left: a resume would skip them anyway); returns their paths."""
    newest, _ = resumable_checkpoint(run_dir)
    best = best_checkpoint(run_dir)
    removed = [path for kind, keep in (("checkpoint", newest), ("best", best)) for step, path in folders(run_dir, kind)
               if keep is None or step > int(_NAME.match(posixpath.basename(keep.rstrip("/"))).group(2))]
    for path in removed:
        storage.remove(path)
    return removed


def latest_checkpoint(run_dir: str) -> str | None:
    """Path of the complete, readable checkpoint with the highest step, or None (newer unreadable ones are
    skipped with a warning that names the file and the reason)."""
    path, skipped = resumable_checkpoint(run_dir)
    for bad, reason in skipped:
        log.warning("skipping checkpoint %s: %s", bad, reason)
    return path


def best_checkpoint(run_dir: str) -> str | None:
    """Path of the checkpoint with the best periodic evaluation, or None when no evaluation ran."""
    for _, path in reversed(folders(run_dir, "best")):
        if is_complete(path, need_ranks=False):
            return path
    return None


def latest_imported(run_dir: str) -> str | None:
    """Path of the newest complete `imported_<step>` folder (what `stage=import run_dir=` writes), or None."""
    for _, path in reversed(folders(run_dir, "imported")):
        if is_complete(path, need_ranks=False):
            return path
    return None


def training_complete(run_dir: str, steps: int) -> bool:
    """True when the final checkpoint (at `steps`) exists, is complete and readable."""
    path = storage.join(run_dir, checkpoint_name(int(steps)))
    return is_complete(path) and unreadable_reason(path) is None


def _torch_load(path: str):
    """torch.load, memory-mapped: tensors are read from the file as they are used instead of through a second
    copy in memory (a remote file is downloaded to a temporary file first; the mapping outlives the name)."""
    if not storage.is_remote(path):
        return torch.load(storage.filesystem(path)[1], map_location="cpu", weights_only=True, mmap=True)
    with tempfile.TemporaryDirectory() as local:
        copy = os.path.join(local, posixpath.basename(path))
        fs, remote = storage.filesystem(path)
        fs.get_file(remote, copy)
        return torch.load(copy, map_location="cpu", weights_only=True, mmap=True)


def load_checkpoint(path: str) -> tuple[dict, dict, dict]:
    """(state, config, manifest) of a checkpoint folder; PipelineError if it is missing or unreadable."""
    if not storage.exists(storage.join(path, META)):
        raise PipelineError(f"no checkpoint at {path}: {META} is missing (an interrupted save, or not a "
                            f"checkpoint folder)")
    try:
        state = _torch_load(storage.join(path, STATE))
        config = storage.read_json(storage.join(path, CONFIG))
        manifest = storage.read_json(storage.join(path, MANIFEST))
    except Exception as err:  # torch, JSON and filesystem errors all mean the same to the user
        raise PipelineError(f"checkpoint {path} is unreadable: {load_errors.describe(err)}") from None
    return state, config, manifest


def model_weights(state: dict, path: str, ema_option: str | None = None) -> dict:
    """The model's state_dict from a checkpoint's training state with its parameters replaced by the EMA
    weights: where the checkpoint saved them, or, when `ema_option` (the config key that asked for them) is
    given, required, the error naming that key. (For the raw weights, use `state["model"]`.)"""
    weights = dict(state["model"])
    shadow = (state.get("ema") or {}).get("shadow")
    if shadow is None and ema_option:
        raise PipelineError(f"checkpoint {path} has no EMA weights (trained with train.ema=false, or stage=adapt's "
                            f"adapt_start/, whose weights already are its base's EMA weights); set {ema_option}=false")
    weights.update(shadow or {})
    return weights


def load_rank_state(path: str, rank: int) -> dict:
    """The per-rank part (carry, RNG, data position) of a checkpoint folder."""
    file = storage.join(path, rank_file(rank))
    try:
        return _torch_load(file)
    except Exception as err:
        raise PipelineError(f"checkpoint file {file} is unreadable: {load_errors.describe(err)}") from None


def check_fits(path: str, saved_manifest: dict, manifest: dict, where: str, also=()) -> None:
    """The checkpoint was trained on data of the same task and shape as `manifest` (read from `where`)."""
    for key in ("task", *MANIFEST_FIELDS, *also):
        if saved_manifest.get(key) != manifest.get(key):
            raise PipelineError(f"checkpoint {path} was trained on data with {key}={saved_manifest.get(key)!r}, but "
                                f"{where} has {key}={manifest.get(key)!r}; pass the matching checkpoint= or data_dir=")


def model_config(model_cfg: dict, manifest: dict, source: str = "model"):
    """TRMConfig from the `model` config group plus the manifest's data fields.

    A data field set in the model config (e.g. `+model.seq_len=81`, or one saved in a checkpoint's
    config) must equal the manifest's: a model built for other data would fail deep inside torch.
    """
    from trm import TRMConfig
    values = {k: v for k, v in dict(model_cfg).items() if v is not None or k == "puzzle_emb_ndim"}
    for key in MANIFEST_FIELDS:
        if key not in manifest:
            raise PipelineError(f"dataset manifest lacks {key!r}; rebuild the dataset with stage=augment")
        if values.get(key) is not None and int(values[key]) != int(manifest[key]):
            raise PipelineError(f"{source}.{key}={values[key]} does not fit the dataset, whose manifest has "
                                f"{key}={manifest[key]}")
        values[key] = int(manifest[key])
    try:
        return TRMConfig.from_dict(values)
    except ValueError as err:
        raise PipelineError(f"{source}: {err}") from err


def upload_files(local_dir: str, names: list[str], dest: str) -> None:
    """Copy files from a local folder to `dest` (local or remote), in the order given (put `meta.json`
    last: its presence marks the folder complete)."""
    fs, root = storage.filesystem(dest)
    fs.makedirs(root, exist_ok=True)
    for name in names:
        fs.put_file(os.path.join(local_dir, name), storage.filesystem(storage.join(dest, name))[1])


def write_json(path: str, obj) -> None:
    with open(path, "w") as f:
        json.dump(obj, f, indent=2, sort_keys=True, default=str)
