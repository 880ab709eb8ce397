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

`Checkpoint` is the one reader and writer of these files: training, stage=adapt's start and stage=import write
through it (one `state.pt` layout: `trm.training_state`'s, a start's without optimiser, carry or RNG state), every
stage reads through it, and a reference run (`pipeline.checkpoints.reference`) converts into it in memory.
"""
import functools
import json
import logging
import os
import posixpath
import re
import tempfile
import zipfile
from dataclasses import asdict

import ray
import torch

from pipeline import storage
from pipeline.checkpoints import load_errors
from pipeline.data import fingerprint
from pipeline.errors import PipelineError

log = logging.getLogger(__name__)

STATE = "state.pt"
META = "meta.json"
CONFIG = "config.json"
MANIFEST = "manifest.json"
IDENTIFIERS = "identifiers.json"   # an imported ARC table's row names, in the reference builder's order
_NAME = re.compile(r"^(checkpoint|best|imported)_(\d{8})$")   # imported_: stage=import's
MANIFEST_FIELDS = ("seq_len", "vocab_size", "num_puzzle_identifiers")


def checkpoint_name(step: int) -> str:
    return f"checkpoint_{step:08d}"


def best_name(step: int) -> str:
    return f"best_{step:08d}"


def rank_file(rank: int) -> str:
    return f"rank_{rank}.pt"


def write_rank_state(local_dir: str, rank: int, state: dict) -> None:
    """Write one rank's part of a training checkpoint (carry, RNG, data position) into `local_dir`."""
    torch.save(state, os.path.join(local_dir, rank_file(rank)))


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


def start_state(weights: dict, step: int, ema: dict | None) -> dict:
    """state.pt of a checkpoint that training starts from rather than resumes (stage=import's, stage=adapt's
    start): `trm.training_state`'s layout with no optimiser, carry or RNG state yet. `ema`: {rate, shadow}."""
    return {"model": weights, "optimizers": [], "step": step, "ema": ema, "carry": None, "rng": None,
            "best_metric": None}


class Checkpoint:
    """One checkpoint: its saved config (`config.json`: the resolved, redacted config; `model` holds the
    network's options), the data it was trained on or expects (`manifest.json`), `meta.json` (step, world size,
    evaluation metrics or where it was imported from) and its training state (`state.pt`), read when asked for.

    `Checkpoint.read(folder)` reads a folder of this project; `Checkpoint.open(path)` takes whatever a user
    names: such a folder, or a reference run converted in memory (`converted`: nothing is written). A
    checkpoint built in memory (`Checkpoint(...)`) is written with `write` (into a local folder, as Ray
    Train's report wants it) or `save`.
    """

    def __init__(self, path: str, config: dict, manifest: dict, meta: dict, state=None, row_names: list | None = None,
                 converted: bool = False):
        self.path, self.config, self.manifest, self.meta = path, config, manifest, meta
        self.converted = converted
        self._state = state            # None: state.pt under path, read when asked for; or a Ray object ref
        self._row_names = row_names    # IDENTIFIERS of a converted ARC checkpoint

    @classmethod
    def read(cls, path: str) -> "Checkpoint":
        """The checkpoint folder at `path` (its JSON files; the weights are read by `state`)."""
        if not storage.exists(storage.join(path, META)):
            raise PipelineError(f"no checkpoint at {path}: {META} is missing (an interrupted save, or not a "
                                f"checkpoint folder)")
        try:
            config, manifest, meta = (storage.read_json(storage.join(path, name)) for name in (CONFIG, MANIFEST, META))
        except Exception as err:  # JSON and filesystem errors all mean the same to the user
            raise PipelineError(f"checkpoint {path} is unreadable: {load_errors.describe(err)}") from None
        return cls(path, config, manifest, meta)

    @classmethod
    def open(cls, source, option: str = "checkpoint", data_dir: str | None = None, identifiers: str | None = None,
             num_aug: int | None = None, require_test: bool = True, given=None) -> "Checkpoint":
        """The checkpoint `option=source` names: a checkpoint folder of this project, or a reference run folder
        or `step_<N>` file converted in memory (its data as `given` or `data_dir` says). With `data_dir`, an
        ARC table in the reference's row order (a reference run, or stage=import's folder of one) gets its rows
        fitted to that dataset's task versions by name (`pipeline.checkpoints.reference.fit_to_dataset`, with
        `identifiers`, `num_aug`, `require_test`)."""
        from pipeline.checkpoints import reference  # which converts into this module's type
        from pipeline.checkpoints.reference_data import DataGiven
        path = storage.to_absolute(str(source))
        if reference.is_reference(path):
            imported = reference.read_reference(path, identifiers, given or DataGiven(data_dir=data_dir))
        elif is_complete(path, need_ranks=False):
            checkpoint = cls.read(path)
            if data_dir is None or checkpoint.manifest.get("identifier_order") != "reference":
                return checkpoint
            imported = reference.from_checkpoint(checkpoint, identifiers)
        else:
            raise PipelineError(f"{option}={source}: not a complete checkpoint folder ({META} or {STATE} missing "
                                f"under {path}), and not a reference run (a step_<N> file, or step_<N> beside "
                                f"{reference.CONFIG_FILE})")
        if data_dir is not None:
            imported = reference.fit_to_dataset(imported, data_dir, num_aug, require_test)
        return reference.to_checkpoint(imported, path)

    @property
    def step(self) -> int:
        return int(self.meta["step"])

    @property
    def world_size(self) -> int | None:
        """The workers that wrote it (a training checkpoint's rank files), else None."""
        return int(self.meta["world_size"]) if "world_size" in self.meta else None

    @functools.cached_property
    def model_config(self):
        """The network (`trm.TRMConfig`): the saved `model` options with the manifest's data fields."""
        return model_config(self.config["model"], self.manifest, source=f"checkpoint {self.path}: model")

    def state(self) -> dict:
        """The training state (state.pt's layout); read from the folder at each call (memory-mapped)."""
        if self._state is None:
            try:
                return _torch_load(storage.join(self.path, STATE))
            except Exception as err:  # torch and filesystem errors all mean the same to the user
                raise PipelineError(f"checkpoint {self.path} is unreadable: {load_errors.describe(err)}") from None
        return ray.get(self._state) if isinstance(self._state, ray.ObjectRef) else self._state

    def weights(self, ema: bool, required_by: str | None = None) -> dict:
        """The model's state_dict: with `ema`, its parameters replaced by the EMA weights where the checkpoint
        saved them, required when `required_by` (the option that asked for them) is given."""
        state = self.state()
        weights = dict(state["model"])
        if not ema:
            return weights
        shadow = (state.get("ema") or {}).get("shadow")
        if shadow is None and required_by:
            raise PipelineError(f"checkpoint {self.path} has no EMA weights (trained with train.ema=false, or "
                                f"stage=adapt's adapt_start/, whose weights already are its base's EMA weights); set "
                                f"{required_by}=false")
        weights.update(shadow or {})
        return weights

    def rank_state(self, rank: int) -> dict:
        """The per-rank part (carry, RNG, data position) of a training checkpoint."""
        file = storage.join(self.path, rank_file(rank))
        try:
            return _torch_load(file)
        except Exception as err:
            raise PipelineError(f"checkpoint file {file} is unreadable: {load_errors.describe(err)}") from None

    def row_names(self) -> list | None:
        """The name of each puzzle-embedding row where the table follows the reference builder's order (an
        imported ARC checkpoint's IDENTIFIERS), else None."""
        if self._row_names is not None or self._state is not None:
            return self._row_names
        path = storage.join(self.path, IDENTIFIERS)
        return storage.read_json(path) if storage.exists(path) else None

    def check_fits(self, manifest: dict, where: str, also=(), same_dataset: bool = False) -> None:
        """It was trained on data of the same task and shape as `manifest` (read from `where`); with
        `same_dataset` (resuming), on that very dataset (its fingerprint, the differences named)."""
        for key in ("task", *MANIFEST_FIELDS, *also):
            if self.manifest.get(key) != manifest.get(key):
                raise PipelineError(f"checkpoint {self.path} was trained on data with "
                                    f"{key}={self.manifest.get(key)!r}, but {where} has {key}={manifest.get(key)!r}; "
                                    f"pass the matching checkpoint= or data_dir=")
        trained_on, here = self.manifest.get("fingerprint"), manifest.get("fingerprint")
        changed = fingerprint.differences(trained_on, here) if same_dataset and trained_on and here else []
        if changed:
            raise PipelineError(f"checkpoint {self.path} was trained on another dataset than the one at {where} "
                                f"({fingerprint.describe(changed)}); use another run_dir for this dataset, or the "
                                f"data_dir it was trained on")

    def check_model(self, configured, what: str) -> None:
        """It holds the configured network (`trm.TRMConfig`); `what` (the option that chose it) names it in the
        error."""
        if self.model_config == configured:
            return
        saved, wanted = asdict(self.model_config), asdict(configured)
        changed = fingerprint.differences(saved, wanted)
        overrides = " ".join(f"model.{k}={v}" for k, v in saved.items() if v != wanted[k] and k not in MANIFEST_FIELDS)
        raise PipelineError(f"{what} holds another model than configured (different model options: "
                            f"{fingerprint.describe(changed, len(changed))}); pass "
                            f"{overrides or 'data of the same shape (data_dir=)'}")

    def shared(self) -> "Checkpoint":
        """This checkpoint as Ray workers are to receive it: a folder's state is read by each worker from its
        path; a state held in memory (a conversion) is put into Ray's object store once, instead of into every
        worker's arguments, and is readable on every node (the reference run may lie on the driver's disk)."""
        if self._state is None or isinstance(self._state, ray.ObjectRef):
            return self
        return Checkpoint(self.path, self.config, self.manifest, self.meta, ray.put(self._state), self._row_names,
                          self.converted)

    def write(self, local_dir: str) -> list[str]:
        """Write rank 0's files into the local folder `local_dir`; returns their names, META last (its
        presence marks a folder complete)."""
        torch.save(self.state(), os.path.join(local_dir, STATE))
        write_json(os.path.join(local_dir, CONFIG), self.config)
        write_json(os.path.join(local_dir, MANIFEST), self.manifest)
        names = [STATE, CONFIG, MANIFEST]
        if self._row_names is not None:
            write_json(os.path.join(local_dir, IDENTIFIERS), self._row_names)
            names.append(IDENTIFIERS)
        write_json(os.path.join(local_dir, META), self.meta)
        return names + [META]

    def save(self, dest: str) -> str:
        """`dest` (local or remote) as this checkpoint's folder, replacing what was there; returns `dest`."""
        storage.remove(dest)
        with tempfile.TemporaryDirectory() as local:
            upload_files(local, self.write(local), dest)
        return dest


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
