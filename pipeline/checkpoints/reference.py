"""Checkpoints of the original TRM code (`pretrain.py`): read them into this project's format and back.

A reference run folder holds `step_<N>` (a `torch.save`d state_dict of the compiled loss-head wrapper,
EMA weights when the run set `ema=True`), `all_config.yaml` (the trainer and `arch:` model fields) and
copies of the model's `.py` files, which are never imported or executed here. An ARC run needs its data
folder's `identifiers.json` (the name of every puzzle-embedding row) to be scored on other data; see
`pipeline.checkpoints.arc_identifiers`.

The tensors are the same as `trm.TRM`'s under other names (the fused qkv and gate|up layouts agree), so a
conversion is a renaming plus checks: every key accounted for, every shape as the config implies. Key
prefixes `_orig_mod.` (torch.compile), `model.` (loss head), `inner.` (ACT wrapper) and `module.`
(DataParallel) are stripped in any combination.

Config mapping (reference -> here): `arch` fields keep their names; `loss.loss_type` -> `loss_type`;
`forward_dtype: bfloat16` -> `auto` (bfloat16 on CUDA, as the reference always runs; float32 on CPU, this
project's deliberate difference); `puzzle_emb_ndim` equal to `hidden_size` -> null (the same model);
`puzzle_emb_len: 0` -> its computed value. `H_layers` is ignored as the reference ignores it;
`no_ACT_continue: false` (the reference's broken HRM halting path) has no counterpart and is refused.
`seq_len`, `vocab_size` and `num_puzzle_identifiers` are not in `all_config.yaml`: vocab and table rows
come from the tensors' shapes, the sequence length (and the task) as `pipeline.checkpoints.reference_data` says: from
the weights where they fix it, `+model.seq_len=`, a `data_manifest:` block, or the data given; never guessed.
"""
import hashlib
import io
import json
import logging
import os
import re
import tempfile
from dataclasses import asdict, dataclass, replace

import fsspec
import torch
import yaml

from pipeline import storage
from pipeline.checkpoints import arc_identifiers, load_errors, reference_data
from pipeline.checkpoints import checkpoint as ckpt
from pipeline.checkpoints.reference_data import DataGiven
from pipeline.config import redact
from pipeline.data import dataset_format as fmt
from pipeline.errors import PipelineError
from trm import TRM, TRMConfig

log = logging.getLogger(__name__)

CONFIG_FILE = "all_config.yaml"
IDENTIFIERS_FILE = ckpt.IDENTIFIERS     # the same name and content in both layouts
STEP_FILE = re.compile(r"^step_(\d+)$")
PREFIXES = ("_orig_mod.", "model.", "inner.", "module.")
EXPORT_PREFIX = "_orig_mod.model.inner."          # what pretrain.py's compiled runs write
ARCH_NAME = "recursive_reasoning.trm@TinyRecursiveReasoningModel_ACTV1"
LOSS_NAME = "losses@ACTLossHead"
# arch fields that are TRMConfig fields under the same name
SAME_NAME = ("hidden_size", "num_heads", "expansion", "L_layers", "H_cycles", "L_cycles", "halt_max_steps",
             "halt_exploration_prob", "puzzle_emb_ndim", "puzzle_emb_len", "pos_encodings", "mlp_t", "rms_norm_eps",
             "rope_theta", "forward_dtype")
# The dtype the reference stores H_init / L_init in, per TRMConfig.forward_dtype (`auto` exports as bfloat16);
# every other tensor it saves is float32.
INITIAL_STATES = ("H_init", "L_init")
REFERENCE_DTYPES = {"auto": torch.bfloat16, "bfloat16": torch.bfloat16, "float16": torch.float16,
                    "float32": torch.float32}
# This project's top-level names in the order of the reference's state_dict (see `_reference_position`)
REFERENCE_ORDER = ("H_init", "L_init", "embed_tokens", "lm_head", "q_head", "puzzle_emb", "embed_pos", "net")

# (reference inner name, this project's name) prefixes, per tensor; `{i}` is the layer index. Read in
# order both ways (mlp_t before mlp).
_NAMES = [
    ("embed_tokens.embedding_weight", "embed_tokens.weight"),
    ("embed_pos.embedding_weight", "embed_pos.weight"),
    ("L_level.layers.{i}.self_attn.", "net.layers.{i}.attn."),
    ("L_level.layers.{i}.mlp_t.", "net.layers.{i}.token_mlp."),
    ("L_level.layers.{i}.mlp.", "net.layers.{i}.mlp."),
]


def _rules(pairs) -> list[tuple[str, str]]:
    """(regex, replacement) rules mapping each pair's first name onto its second."""
    return [(re.escape(src).replace(re.escape("{i}"), r"(\d+)"), dst.replace("{i}", r"\1")) for src, dst in pairs]


_RENAMES = _rules(_NAMES)
_BACK = _rules((ours, reference) for reference, ours in _NAMES)


@dataclass
class Imported:
    """A reference checkpoint in this project's terms."""

    weights: dict            # TRM state_dict (float32)
    config: TRMConfig
    manifest: dict           # the data it expects (task, seq_len, vocab_size, num_puzzle_identifiers, ...)
    step: int
    source: str              # the step file read
    sha256: str
    reference_config: dict   # all_config.yaml as read
    names: list | None       # identifiers.json (ARC), row -> name


def _rename(key: str, rules) -> str:
    for pattern, repl in rules:
        key, n = re.subn("^" + pattern, repl, key)
        if n:
            break
    return key


def strip_prefixes(key: str) -> str:
    while True:
        for prefix in PREFIXES:
            if key.startswith(prefix):
                key = key[len(prefix):]
                break
        else:
            return key


# ---------------------------------------------------------------------------------------------------
# Locating and reading a reference run

def is_reference(path: str) -> bool:
    """True for a `step_<N>` file or a folder holding one beside `all_config.yaml`."""
    path = storage.to_absolute(str(path))
    if STEP_FILE.match(path.rstrip("/").rsplit("/", 1)[-1]):
        return storage.exists(path)
    return storage.exists(storage.join(path, CONFIG_FILE)) and bool(_step_files(path))


def _step_files(folder: str) -> list[tuple[int, str]]:
    fs, root = storage.filesystem(folder)
    fs.invalidate_cache()
    if not fs.isdir(root):
        return []
    found = [(int(m.group(1)), storage.join(folder, name)) for entry in fs.ls(root, detail=False)
             if (m := STEP_FILE.match(name := entry.rstrip("/").rsplit("/", 1)[-1]))]
    return sorted(found)


def locate(source: str) -> tuple[str, str, int]:
    """(folder, step file, step) of a reference run folder (its highest step) or a `step_<N>` file."""
    path = storage.to_absolute(str(source))
    name = path.rstrip("/").rsplit("/", 1)[-1]
    if STEP_FILE.match(name):
        if not storage.exists(path):
            raise PipelineError(f"checkpoint={source}: no such file")
        folder = path.rstrip("/")[: -len(name) - 1]
        return folder, path, int(STEP_FILE.match(name).group(1))
    steps = _step_files(path)
    if not steps:
        raise PipelineError(f"checkpoint={source}: no step_<N> file in {path} (not a reference run folder)")
    step, file = steps[-1]
    return path, file, step


def read_reference(source: str, identifiers: str | None = None, given: DataGiven = DataGiven()) -> Imported:
    """Read and check a reference checkpoint (folder or step file, local or remote); `given` is what the command
    line says about its data (`pipeline.checkpoints.reference_data`). PipelineError on any problem, before anything is
    written."""
    folder, step_file, step = locate(source)
    config_path = storage.join(folder, CONFIG_FILE)
    if not storage.exists(config_path):
        raise PipelineError(f"checkpoint={source}: {config_path} is missing; the model config is read from it")
    with fsspec.open(config_path, "r") as f:
        try:
            reference_config = yaml.safe_load(f) or {}
        except (yaml.YAMLError, UnicodeDecodeError) as err:
            where = " ".join(str(err).split())      # PyYAML's message spans lines: the problem, then its line/column
            raise PipelineError(f"{config_path} is not valid YAML: {type(err).__name__}: {where}") from err
    if not isinstance(reference_config, dict):
        raise PipelineError(f"{config_path}: expected a mapping of options (arch: ...), found a "
                            f"{type(reference_config).__name__}")
    with fsspec.open(step_file, "rb") as f:
        raw = f.read()
    sha256 = hashlib.sha256(raw).hexdigest()
    try:
        loaded = torch.load(io.BytesIO(raw), map_location="cpu", weights_only=True)
    except Exception as err:  # a pickle with code in it, a truncated file, not a torch file at all
        raise PipelineError(f"{step_file} was not loaded as a plain state_dict: {load_errors.describe(err)}") from None
    del raw
    raw_state = _state_dict_of(loaded, step_file)
    names = _read_identifiers(identifiers, folder)
    config, manifest = _config(reference_config, raw_state, config_path, step_file, given)
    weights = to_trm_weights(raw_state, config, step_file)
    if names is not None and "puzzle_emb.weights" in weights and len(names) != len(weights["puzzle_emb.weights"]):
        raise PipelineError(f"identifiers file has {len(names):,} names but the puzzle-embedding table of "
                            f"{step_file} has {len(weights['puzzle_emb.weights']):,} rows: it belongs to other data")
    if names is not None:
        manifest["identifiers_file"] = IDENTIFIERS_FILE
    return Imported(weights, config, manifest, step, step_file, sha256, reference_config, names)


def _state_dict_of(loaded, step_file: str) -> dict:
    """The state_dict in a loaded step file: the file itself, or the `model` entry of the training-state
    dicts some forks write."""
    if isinstance(loaded, dict) and isinstance(loaded.get("model"), dict):
        loaded = loaded["model"]
    if not isinstance(loaded, dict) or not loaded or not all(isinstance(v, torch.Tensor) for v in loaded.values()):
        raise PipelineError(f"{step_file} is not a TRM state_dict (expected a dict of tensors, got "
                            f"{type(loaded).__name__})")
    return loaded


def _read_identifiers(identifiers: str | None, folder: str) -> list | None:
    """identifiers.json from `task.identifiers=` or beside the checkpoint; None when neither exists."""
    path = storage.to_absolute(str(identifiers)) if identifiers else storage.join(folder, IDENTIFIERS_FILE)
    if not storage.exists(path):
        if identifiers:
            raise PipelineError(f"task.identifiers={identifiers}: no such file")
        return None
    return arc_identifiers.read_names(path)


# ---------------------------------------------------------------------------------------------------
# Config

# the type each SAME_NAME field must have in all_config.yaml (a user-edited file may hold anything)
_FIELD_TYPES = {**dict.fromkeys(("hidden_size", "num_heads", "L_layers", "H_cycles", "L_cycles", "halt_max_steps",
                                 "puzzle_emb_ndim", "puzzle_emb_len"), (int,)),
                **dict.fromkeys(("expansion", "halt_exploration_prob", "rms_norm_eps", "rope_theta"), (int, float)),
                "pos_encodings": (str,), "forward_dtype": (str,), "mlp_t": (bool,)}


def _check_types(arch, config_path: str) -> None:
    """arch: a mapping whose loss is a mapping and whose TRM fields have their types (numbers are not bools)."""
    if not isinstance(arch, dict) or not isinstance(arch.get("loss", {}), (dict, type(None))):
        raise PipelineError(f"{config_path}: arch and arch.loss must be mappings of options")
    for key, types in _FIELD_TYPES.items():
        value = arch.get(key)
        if key in arch and (not isinstance(value, types) or (isinstance(value, bool) and bool not in types)):
            raise PipelineError(f"{config_path}: arch.{key}={value!r} is not a {' or '.join(t.__name__ for t in types)}")


def _config(reference_config: dict, raw_state: dict, config_path: str, step_file: str,
            given: DataGiven) -> tuple[TRMConfig, dict]:
    _check_types(reference_config.get("arch") or {}, config_path)
    arch = dict(reference_config.get("arch") or {})
    if arch.get("name") != ARCH_NAME:
        raise PipelineError(f"{config_path}: arch.name={arch.get('name')!r} is not TRM ({ARCH_NAME})")
    loss = dict(arch.pop("loss", None) or {})
    if loss.get("name") != LOSS_NAME or set(loss) - {"name", "loss_type"}:
        raise PipelineError(f"{config_path}: arch.loss={loss} has no counterpart here (expected name {LOSS_NAME} "
                            f"with only loss_type)")
    arch.pop("name")
    arch.pop("H_layers", None)    # ignored by the reference's TRM
    if arch.pop("no_ACT_continue", True) is not True:
        raise PipelineError(f"{config_path}: arch.no_ACT_continue=false (HRM's Q-continue halting, broken in the "
                            f"reference's TRM) has no counterpart here: TRM halts on q_halt > 0 only")
    unknown = sorted(set(arch) - set(SAME_NAME))
    if unknown:
        raise PipelineError(f"{config_path}: arch field(s) {unknown} have no counterpart in this project's TRM")
    values = {k: arch[k] for k in SAME_NAME if k in arch}
    if "loss_type" in loss:
        values["loss_type"] = loss["loss_type"]
    if "expansion" in values:
        values["expansion"] = float(values["expansion"])
    if values.get("forward_dtype") == "bfloat16":
        values["forward_dtype"] = "auto"
    hidden = int(values.get("hidden_size", TRMConfig.hidden_size))
    ndim = values.get("puzzle_emb_ndim", 0)     # the reference's default is 0 (no table)
    values["puzzle_emb_ndim"] = None if ndim == hidden else int(ndim)
    if int(values.get("puzzle_emb_len", 16)) == 0:
        values["puzzle_emb_len"] = -(-int(ndim) // hidden)
    elif int(ndim) == 0:
        raise PipelineError(f"{config_path}: puzzle_emb_ndim=0 with puzzle_emb_len={values['puzzle_emb_len']} "
                            f"(prefix positions without a table) has no counterpart here")
    state = {strip_prefixes(k): v for k, v in raw_state.items()}
    manifest = _data_fields(reference_config, state, values, config_path, step_file, given)
    try:
        config = TRMConfig.from_dict({**values, **{k: manifest[k] for k in ckpt.MANIFEST_FIELDS}})
    except (ValueError, TypeError) as err:        # TypeError: a data_manifest value of the wrong type
        raise PipelineError(f"{config_path}: {err}") from err
    return config, manifest


def _data_fields(reference_config: dict, state: dict, values: dict, config_path: str, step_file: str,
                 given: DataGiven) -> dict:
    tokens = state.get("embed_tokens.embedding_weight")
    if tokens is None or tokens.ndim != 2:
        raise PipelineError(f"{step_file} is not a TRM state_dict: no embed_tokens.embedding_weight "
                            f"(keys: {sorted(state)[:8]}...)")
    vocab = int(tokens.shape[0])
    table = state.get("puzzle_emb.weights")
    rows = int(table.shape[0]) if table is not None and table.ndim == 2 else 1
    hidden = int(values.get("hidden_size", TRMConfig.hidden_size))
    has_table = (hidden if values["puzzle_emb_ndim"] is None else values["puzzle_emb_ndim"]) > 0
    prefix_len = int(values.get("puzzle_emb_len", TRMConfig.puzzle_emb_len)) if has_table else 0
    manifest = reference_data.data_fields(reference_config, state, vocab, prefix_len, given, config_path)
    manifest.update(vocab_size=vocab, num_puzzle_identifiers=rows, pad_id=0, ignore_label_id=0, blank_identifier_id=0,
                    reference_data_paths=list(reference_config.get("data_paths") or []))
    if manifest["task"] == "arc":
        manifest["identifier_order"] = "reference"    # rows as the reference's identifiers.json names them
    return manifest


# ---------------------------------------------------------------------------------------------------
# Weights

def to_trm_weights(raw_state: dict, config: TRMConfig, source: str) -> dict:
    """The reference state_dict renamed to `trm.TRM`'s keys, checked key by key and shape by shape, float32."""
    renamed = {}
    for key, value in raw_state.items():
        name = _rename(strip_prefixes(key), _RENAMES)
        if name in renamed:
            raise PipelineError(f"{source}: two keys map to {name!r} (mixed prefixes?)")
        renamed[name] = value
    _check_keys(renamed, shapes_of(config)[0], source, reference_names=True)
    return {k: v.to(torch.float32).contiguous() for k, v in renamed.items()}


def shapes_of(config: TRMConfig) -> tuple[dict, list]:
    """({key: shape} of a TRM's state_dict, its trainable parameter names), without allocating its puzzle table
    (1.8 GB for ARC): the model is built with one row."""
    model = TRM(replace(config, num_puzzle_identifiers=1), verbose=False)
    shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    if "puzzle_emb.weights" in shapes:
        shapes["puzzle_emb.weights"] = (config.num_puzzle_identifiers, config.emb_ndim)
    return shapes, [n for n, p in model.named_parameters() if p.requires_grad]


def _check_keys(found: dict, expected: dict, source: str, reference_names: bool) -> None:
    show = (lambda k: _rename(k, _BACK)) if reference_names else (lambda k: k)
    missing = sorted(set(expected) - set(found))
    if missing:
        raise PipelineError(f"{source}: missing key(s) {[show(k) for k in missing]} for this model config")
    extra = sorted(set(found) - set(expected))
    if extra:
        raise PipelineError(f"{source}: unexpected key(s) {[show(k) for k in extra]} (not part of TRM with this config)")
    for key, value in found.items():
        if tuple(value.shape) != expected[key]:
            raise PipelineError(f"{source}: {show(key)} has shape {list(value.shape)} but the config implies "
                                f"{list(expected[key])}")
        if not value.is_floating_point():
            raise PipelineError(f"{source}: {show(key)} holds {value.dtype}, not floating-point weights")


def to_reference_weights(weights: dict, config: TRMConfig) -> dict:
    """A `trm.TRM` state_dict as the reference's `pretrain.py` saves that model: its key names (prefix of a
    compiled run), its key order (module registration order) and its dtypes: H_init / L_init are buffers in
    the forward dtype (bfloat16 for `forward_dtype: bfloat16`, which the reference then runs its whole
    recursion in), everything else float32. Importing the result gives back these weights exactly, except
    H_init / L_init values that the forward dtype cannot hold, which are rounded as the reference would store
    them (a warning says by how much)."""
    initial = REFERENCE_DTYPES[config.forward_dtype]
    out = {}
    for key in sorted(weights, key=_reference_position):
        value = weights[key].detach().cpu()
        dtype = initial if key in INITIAL_STATES else torch.float32
        stored = value.to(dtype)
        if key in INITIAL_STATES and not torch.equal(stored.to(value.dtype), value):
            change = float((stored.to(torch.float32) - value.to(torch.float32)).abs().max())
            log.warning("%s rounded to %s as the reference stores it for forward_dtype=%s (largest change %.3g)",
                        key, str(dtype).removeprefix("torch."), config.forward_dtype, change)
        out[EXPORT_PREFIX + _rename(key, _BACK)] = stored.contiguous()
    return out


def _reference_position(key: str) -> int:
    """Where `key` (this project's name) comes in the reference's state_dict: its inner module registers
    H_init / L_init on itself (first), then embed_tokens, lm_head, q_head, puzzle_emb, embed_pos, L_level."""
    return next(i for i, prefix in enumerate(REFERENCE_ORDER) if key == prefix or key.startswith(prefix + "."))


# ---------------------------------------------------------------------------------------------------
# This project's checkpoint from an imported one

def to_checkpoint(imported: Imported, path: str) -> ckpt.Checkpoint:
    """`imported` as a checkpoint of this project, in memory (`path`: what it was opened as): the weights as
    both raw and EMA, its model config, the data it expects, ARC row names where it has them."""
    expected, parameters = shapes_of(imported.config)
    weights = {k: imported.weights[k] for k in expected}           # TRM's key order
    rate = float(imported.reference_config.get("ema_rate", 0.999))
    state = ckpt.start_state(weights, imported.step, ema={"rate": rate, "shadow": {k: weights[k] for k in parameters}})
    model_fields = {k: v for k, v in asdict(imported.config).items() if k not in ckpt.MANIFEST_FIELDS}
    config = {"model": model_fields, "train": {"ema": True, "ema_rate": rate},
              "reference_config": redact(imported.reference_config)}
    meta = {"step": imported.step, "imported_from": imported.source, "source_sha256": imported.sha256,
            "source_step": imported.step, "weights": "the step file's (EMA weights when the run set ema=True), "
                                                     "as both raw and EMA"}
    return ckpt.Checkpoint(path, config, imported.manifest, meta, state, imported.names, converted=True)


def imported_name(step: int) -> str:
    return f"imported_{step:08d}"


def from_checkpoint(checkpoint: ckpt.Checkpoint, identifiers: str | None = None) -> Imported:
    """An imported checkpoint of this project's format back as `Imported` (to fit it to a dataset)."""
    meta = checkpoint.meta
    names = _read_identifiers(identifiers, checkpoint.path)
    return Imported(checkpoint.weights(ema=False), checkpoint.model_config, checkpoint.manifest, checkpoint.step,
                    meta.get("imported_from", checkpoint.path), meta.get("source_sha256", ""),
                    checkpoint.config.get("reference_config", {}), names)


def fit_to_dataset(imported: Imported, data_dir: str, num_aug: int | None = None,
                   require_test: bool = True) -> Imported:
    """An ARC checkpoint whose table rows follow the reference's identifiers.json, permuted into the rows of
    the dataset at `data_dir` by name. With `require_test`, every version its test split uses (up to
    `num_aug`) must have a trained row; otherwise unnamed versions start at the trained rows' mean."""
    if imported.manifest.get("identifier_order") != "reference":
        return imported
    rows = imported.config.num_puzzle_identifiers
    if imported.names is None:
        raise PipelineError(
            f"checkpoint {imported.source}: its ARC puzzle-embedding table ({rows:,} rows) follows the reference "
            f"builder's identifiers, and no {IDENTIFIERS_FILE} says which task version each row is: pass "
            f"task.identifiers=<the reference data folder>/{IDENTIFIERS_FILE} (e.g. data/arc1concept-aug-1000/), or "
            f"train rows for this data with test-time training (stage=adapt: not yet available)")
    manifest = fmt.read_manifest(data_dir)
    if manifest.get("task") != "arc":
        raise PipelineError(f"checkpoint {imported.source} is an ARC model, but data_dir={data_dir} holds a "
                            f"{manifest.get('task')!r} dataset")
    versions = arc_identifiers.dataset_versions(data_dir, manifest)
    table, matched = arc_identifiers.remap_table(imported.weights["puzzle_emb.weights"], imported.names, versions,
                                                 int(manifest["num_puzzle_identifiers"]))
    if require_test:
        arc_identifiers.check_test_versions(matched, versions, manifest, num_aug)
    fitted = {k: manifest[k] for k in ("task", *ckpt.MANIFEST_FIELDS, *arc_identifiers.IDENTIFIER_FIELDS)
              if k in manifest}
    fitted.update(identifier_order="data", data_dir=data_dir, trained_rows_matched=int(matched.sum()),
                  reference_data_paths=imported.manifest.get("reference_data_paths", []))
    return replace(imported, weights={**imported.weights, "puzzle_emb.weights": table}, manifest=fitted, names=None,
                   config=replace(imported.config, num_puzzle_identifiers=len(table)))


# ---------------------------------------------------------------------------------------------------
# Export

def reference_config(config: TRMConfig, saved: dict, manifest: dict) -> dict:
    """all_config.yaml for a model trained here: the reference's fields, plus a `data_manifest:` block
    (ignored by the reference's pydantic config) that lets the import recover data this project made. An
    imported checkpoint keeps the trainer fields of the all_config.yaml it came from."""
    t = saved.get("train", {})
    arch = {"name": ARCH_NAME, "loss": {"name": LOSS_NAME, "loss_type": config.loss_type}, "H_layers": 0,
            "no_ACT_continue": True, **{k: getattr(config, k) for k in SAME_NAME}}
    arch["puzzle_emb_ndim"] = config.emb_ndim
    arch["puzzle_emb_len"] = config.prefix_len     # without a table the reference needs 0 prefix positions
    arch["forward_dtype"] = "bfloat16" if config.forward_dtype == "auto" else config.forward_dtype
    examples = manifest.get("splits", {}).get("train", {}).get("examples", 0)
    batch, steps = int(t.get("global_batch_size", 768)), int(t.get("steps", 1))
    out = {"arch": arch, "data_paths": [saved.get("data_dir") or ""], "data_paths_test": [],
           "evaluators": [{"name": "arc@ARC"}] if manifest.get("task") == "arc" else [],
           # the reference counts epochs and derives the steps: the epochs that cover this run's steps
           "epochs": max(1, -(-steps * batch // examples)) if examples else 1, "global_batch_size": batch,
           "ema": bool(t.get("ema", True)), "ema_rate": float(t.get("ema_rate", 0.999)),
           "seed": int(saved.get("seed", 0)), "checkpoint_every_eval": True, "eval_interval": None,
           "min_eval_interval": 0, "eval_save_outputs": [], "freeze_weights": False, "load_checkpoint": None,
           "checkpoint_path": None, "project_name": None, "run_name": None,
           "data_manifest": {k: manifest[k] for k in ("task", "seq_len", "size", "box") if k in manifest}}
    if saved.get("reference_config"):
        out = {**saved["reference_config"], "arch": arch, "data_manifest": out["data_manifest"]}
    for key, default in (("lr", 1e-4), ("lr_min_ratio", 1.0), ("lr_warmup_steps", 2000), ("weight_decay", 0.1),
                         ("beta1", 0.9), ("beta2", 0.95), ("puzzle_emb_lr", 1e-2), ("puzzle_emb_weight_decay", 0.1)):
        out.setdefault(key, type(default)(t.get(key, default)))
    return out


def write_reference(weights: dict, config: TRMConfig, saved: dict, manifest: dict, step: int, dest: str,
                    names: list | None = None) -> list[str]:
    """`dest/step_<step>`, `dest/all_config.yaml` (+ `identifiers.json`), each written to a temporary
    name and published; returns the files written."""
    files = {f"step_{step}": lambda f: torch.save(to_reference_weights(weights, config), f),
             CONFIG_FILE: lambda f: f.write(yaml.safe_dump(reference_config(config, saved, manifest)).encode())}
    if names is not None:
        files[IDENTIFIERS_FILE] = lambda f: f.write(json.dumps(names).encode())
    with tempfile.TemporaryDirectory() as local:
        for name, write in files.items():
            with open(os.path.join(local, name), "wb") as f:
                write(f)
        order = [n for n in files if n != CONFIG_FILE] + [CONFIG_FILE]   # the config marks a complete folder
        ckpt.upload_files(local, order, dest)
    return [storage.join(dest, n) for n in files]


