"""Checkpoints of the original TRM code: files built from the documented layout (random weights, small size)
import to exactly the model trm/ gives with hand-renamed weights; export and import invert each other; every
key prefix loads; each kind of bad file is refused with its reason; ARC rows are matched by name."""
import hashlib
import json
import os

import fsspec
import numpy as np
import pytest
import torch
import yaml

from pipeline import storage
from pipeline.checkpoints import arc_identifiers
from pipeline.checkpoints import checkpoint as ckpt
from pipeline.checkpoints import reference as ref
from pipeline.checkpoints.reference_data import DataGiven
from pipeline.errors import PipelineError
from pipeline.run import run_stage
from tests import tiny
from tests.conftest import compose
from trm import EMA, TRM, TRMConfig, refill, training_state

HIDDEN, HEADS, LAYERS = 32, 2, 2
PREFIX = "_orig_mod.model.inner."
SUDOKU = DataGiven(seq_len=81)          # what an attention model with rotary positions needs to be told
SUDOKU_OPTION = "+model.seq_len=81"


def swiglu_width(d: int, expansion: float = 4.0) -> int:
    """The documented SwiGLU inner width: round(expansion * d * 2/3), up to a multiple of 256."""
    return -(-round(expansion * d * 2 / 3) // 256) * 256


def documented_state(vocab=11, seq_len=81, rows=1, mlp_t=False, learned=False, prefix=PREFIX, seed=0,
                     forward_dtype=torch.bfloat16) -> dict:
    """A reference state_dict written from published_checkpoints.md section 1 alone: key names, shapes
    ([out, in]), float32 weights and H_init / L_init in the forward dtype (bfloat16 in every published run),
    in the order pretrain.py saves them (the inner module's own buffers H_init / L_init first)."""
    g = torch.Generator().manual_seed(seed)
    state = {prefix + name: torch.randn(HIDDEN, generator=g).to(forward_dtype) for name in ("H_init", "L_init")}
    total = 16 + seq_len
    inner = swiglu_width(HIDDEN)
    shapes = {"embed_tokens.embedding_weight": (vocab, HIDDEN), "lm_head.weight": (vocab, HIDDEN),
              "q_head.weight": (2, HIDDEN), "q_head.bias": (2,), "puzzle_emb.weights": (rows, HIDDEN)}
    if learned:
        shapes["embed_pos.embedding_weight"] = (total, HIDDEN)
    for i in range(LAYERS):
        layer = f"L_level.layers.{i}."
        if mlp_t:
            shapes[layer + "mlp_t.gate_up_proj.weight"] = (2 * swiglu_width(total), total)
            shapes[layer + "mlp_t.down_proj.weight"] = (total, swiglu_width(total))
        else:
            shapes[layer + "self_attn.qkv_proj.weight"] = (3 * HIDDEN, HIDDEN)
            shapes[layer + "self_attn.o_proj.weight"] = (HIDDEN, HIDDEN)
        shapes[layer + "mlp.gate_up_proj.weight"] = (2 * inner, HIDDEN)
        shapes[layer + "mlp.down_proj.weight"] = (HIDDEN, inner)
    state.update({prefix + k: 0.2 * torch.randn(s, generator=g) for k, s in shapes.items()})
    return state


def documented_config(mlp_t=False, learned=False, **arch) -> dict:
    """all_config.yaml as pretrain.py dumps it (trainer fields plus arch:)."""
    return {"arch": {"name": "recursive_reasoning.trm@TinyRecursiveReasoningModel_ACTV1",
                     "loss": {"name": "losses@ACTLossHead", "loss_type": "stablemax_cross_entropy"},
                     "H_cycles": 2, "L_cycles": 1, "H_layers": 0, "L_layers": LAYERS, "hidden_size": HIDDEN,
                     "num_heads": HEADS, "expansion": 4, "puzzle_emb_ndim": HIDDEN, "puzzle_emb_len": 16,
                     "pos_encodings": "learned" if learned else ("none" if mlp_t else "rope"),
                     "forward_dtype": "bfloat16", "mlp_t": mlp_t, "halt_max_steps": 3, "halt_exploration_prob": 0.1,
                     "no_ACT_continue": True, **arch},
            "data_paths": ["data/sudoku-extreme-1k-aug-1000"], "global_batch_size": 768, "epochs": 50000,
            "lr": 1e-4, "lr_min_ratio": 1.0, "lr_warmup_steps": 2000, "weight_decay": 1.0, "beta1": 0.9,
            "beta2": 0.95, "puzzle_emb_lr": 1e-4, "puzzle_emb_weight_decay": 1.0, "ema": True, "ema_rate": 0.999,
            "seed": 0, "evaluators": []}


def write_reference(folder, state, config, step=7, names=None) -> str:
    fs, root = storage.filesystem(str(folder))
    fs.makedirs(root, exist_ok=True)
    with fsspec.open(storage.join(str(folder), f"step_{step}"), "wb") as f:
        torch.save(state, f)
    with fsspec.open(storage.join(str(folder), "all_config.yaml"), "w") as f:
        yaml.safe_dump(config, f)
    if names is not None:
        with fsspec.open(storage.join(str(folder), "identifiers.json"), "w") as f:
            json.dump(names, f)
    return str(folder)


def hand_renamed(state: dict) -> dict:
    """What a user's remap script does: strip the prefix and rename, written independently of the module."""
    out = {}
    for key, value in state.items():
        key = key.removeprefix(PREFIX).replace("L_level.", "net.").replace(".self_attn.", ".attn.")
        out[key.replace(".mlp_t.", ".token_mlp.").replace(".embedding_weight", ".weight")] = value
    return out


def outputs(model: TRM, seed: int = 1, steps: int = 2) -> list:
    """Logits, halt logits and carries of `steps` supervision steps on random puzzles (float32 on CPU)."""
    c = model.config
    g = torch.Generator().manual_seed(seed)
    examples = {"inputs": torch.randint(1, c.vocab_size, (3, c.seq_len), generator=g),
                "labels": torch.randint(1, c.vocab_size, (3, c.seq_len), generator=g),
                "puzzle_identifiers": torch.randint(0, c.num_puzzle_identifiers, (3,), generator=g)}
    model.eval()
    carry = refill(model.empty_carry(3), examples)
    out = []
    with torch.no_grad():
        for _ in range(steps):
            carry, step = model(carry)
            out += [step.logits, step.q_halt, carry.y, carry.z]
    return out


@pytest.mark.parametrize("variant", [dict(), dict(mlp_t=True), dict(learned=True)], ids=["attention", "mlp_t", "learned"])
def test_documented_layout_imports_to_the_hand_renamed_model_bit_for_bit(tmp_path, variant):
    state = documented_state(**variant)
    imported = ref.read_reference(write_reference(tmp_path, state, documented_config(**variant)), given=SUDOKU)
    assert imported.step == 7 and imported.manifest["task"] == "sudoku" and imported.config.seq_len == 81
    # the token MLP and learned positions fix seq_len (the option then only has to agree); rotary ones do not
    source = {"mlp_t": "the token MLP's weights", "learned": "the learned position embeddings"}
    assert imported.manifest["seq_len_source"].startswith(next((v for k, v in source.items() if variant.get(k)),
                                                               "+model.seq_len"))
    assert imported.config.forward_dtype == "auto" and imported.config.mlp_t == variant.get("mlp_t", False)
    ours = TRM(imported.config, verbose=False)
    ours.load_state_dict(imported.weights)
    by_hand = TRM(TRMConfig(seq_len=81, vocab_size=11, num_puzzle_identifiers=1, hidden_size=HIDDEN, num_heads=HEADS,
                            L_layers=LAYERS, H_cycles=2, L_cycles=1, halt_max_steps=3, mlp_t=variant.get("mlp_t", False),
                            pos_encodings=documented_config(**variant)["arch"]["pos_encodings"]), verbose=False)
    by_hand.load_state_dict(hand_renamed(state))
    assert all(torch.equal(a, b) for a, b in zip(outputs(ours), outputs(by_hand)))
    assert ours.state_dict().keys() == by_hand.state_dict().keys()
    assert all(torch.equal(v, by_hand.state_dict()[k]) for k, v in ours.state_dict().items())


@pytest.mark.parametrize("prefix", ["_orig_mod.model.inner.", "model.inner.", "inner.", "", "_orig_mod.", "module.",
                                    "module._orig_mod.model.inner.", "module.model.inner."])
def test_every_key_prefix_loads(tmp_path, prefix):
    expected = hand_renamed(documented_state())
    imported = ref.read_reference(write_reference(tmp_path, documented_state(prefix=prefix), documented_config()),
                                  given=SUDOKU)
    assert imported.weights.keys() == expected.keys()
    assert all(torch.equal(imported.weights[k], v.float()) for k, v in expected.items())


def test_stage_import_writes_a_checkpoint_eval_loads(tmp_path):
    source = write_reference(tmp_path / "ref", documented_state(), documented_config(), step=1234)
    summary = run_stage(compose("stage=import", f"checkpoint={source}/step_1234", f"run_dir={tmp_path / 'run'}",
                                SUDOKU_OPTION))
    assert (summary["seq_len"], summary["seq_len_from"]) == (81, "+model.seq_len")
    path = str(tmp_path / "run" / "imported_00001234")
    assert summary["checkpoint"] == path and ckpt.is_complete(path, need_ranks=False)
    meta = storage.read_json(os.path.join(path, "meta.json"))
    raw = (tmp_path / "ref" / "step_1234").read_bytes()
    assert meta["step"] == 1234 and meta["source_sha256"] == hashlib.sha256(raw).hexdigest()
    manifest = storage.read_json(os.path.join(path, "manifest.json"))
    assert (manifest["task"], manifest["seq_len"], manifest["vocab_size"], manifest["size"]) == ("sudoku", 81, 11, 9)
    from pipeline.infer.predictor import load_model
    for ema in (True, False):
        model = load_model(ckpt.Checkpoint.read(path), use_ema=ema, device="cpu")
        by_hand = TRM(model.config, verbose=False)
        by_hand.load_state_dict(hand_renamed(documented_state()))
        assert all(torch.equal(a, b) for a, b in zip(outputs(model), outputs(by_hand)))


def test_import_reads_s3(tmp_path, s3_bucket):
    source = write_reference(f"{s3_bucket}/runs/sudoku", documented_state(), documented_config(), step=5)
    summary = run_stage(compose("stage=import", f"checkpoint={source}", f"run_dir={tmp_path / 'run'}", SUDOKU_OPTION))
    assert summary["step"] == 5 and summary["source"] == f"{source}/step_5"


def _our_checkpoint(path, config: TRMConfig, manifest: dict, step=42, seed=3, initial_dtype=None) -> TRM:
    """A checkpoint folder as training writes it (rank 0's files), with EMA weights that differ from the raw;
    H_init / L_init rounded to `initial_dtype` when given."""
    torch.manual_seed(seed)
    model = TRM(config, verbose=False)
    with torch.no_grad():
        if initial_dtype is not None:
            for state in (model.H_init, model.L_init):
                state.copy_(state.to(initial_dtype))
        for p in model.parameters():
            p.normal_(0, 0.2)
        if model.puzzle_emb is not None:
            model.puzzle_emb.weights.normal_()
    ema = EMA(model, rate=0.9)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)
    os.makedirs(path)
    torch.save(training_state(model, [], step, ema=ema), os.path.join(path, ckpt.STATE))
    model_fields = {k: v for k, v in vars(config).items() if k not in ckpt.MANIFEST_FIELDS}
    ckpt.write_json(os.path.join(path, ckpt.CONFIG), {"model": model_fields, "train": {"ema": True, "steps": 100,
                                                                                      "global_batch_size": 16}})
    ckpt.write_json(os.path.join(path, ckpt.MANIFEST), manifest)
    ckpt.write_json(os.path.join(path, ckpt.META), {"step": step, "world_size": 1})
    return ema.copy_model(model)


def _export_import(tmp_path, path) -> ref.Imported:
    run_stage(compose("stage=export", f"checkpoint={path}", f"export.dir={tmp_path / 'exported'}"))
    return ref.read_reference(str(tmp_path / "exported"))


@pytest.mark.parametrize("dtype", ["float32", "auto"])
def test_export_then_import_gives_the_same_model(tmp_path, dtype):
    config = tiny.pipeline_model(**tiny.SUDOKU_6X6, forward_dtype=dtype)
    manifest = {"task": "sudoku", "seq_len": 36, "vocab_size": 8, "num_puzzle_identifiers": 1, "size": 6, "box": [2, 3]}
    averaged = _our_checkpoint(str(tmp_path / "ours"), config, manifest)
    back = _export_import(tmp_path, str(tmp_path / "ours"))
    assert sorted(os.listdir(tmp_path / "exported")) == ["all_config.yaml", "step_42"]
    saved = torch.load(tmp_path / "exported" / "step_42", weights_only=True)
    assert all(k.startswith(PREFIX) for k in saved) and f"{PREFIX}L_level.layers.0.self_attn.qkv_proj.weight" in saved
    assert back.config == config and back.step == 42 and back.manifest["size"] == 6
    # H_init / L_init are stored in the reference's forward dtype: bfloat16 for `auto` (values rounded to it)
    initial = torch.float32 if dtype == "float32" else torch.bfloat16
    assert saved[PREFIX + "H_init"].dtype == saved[PREFIX + "L_init"].dtype == initial
    assert all(v.dtype == torch.float32 for k, v in saved.items() if not k.endswith("_init"))
    expected = {k: v.to(initial).float() if k.endswith("_init") else v for k, v in averaged.state_dict().items()}
    assert back.weights.keys() == expected.keys()
    assert all(torch.equal(back.weights[k], v) for k, v in expected.items())


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_reference_run_exported_after_import_is_the_file_it_came_from(tmp_path, dtype):
    """export(import(x)) is x: the keys in pretrain.py's order, their dtypes (H_init / L_init in the forward
    dtype, which decides the reference's compute dtype) and values; the file is byte for byte the same."""
    state = documented_state(mlp_t=True, forward_dtype=getattr(torch, dtype))
    source = write_reference(tmp_path / "ref", state, documented_config(mlp_t=True, forward_dtype=dtype), step=9)
    run_stage(compose("stage=import", f"checkpoint={source}", f"run_dir={tmp_path / 'run'}"))
    first = ref.read_reference(source)
    back = _export_import(tmp_path, str(tmp_path / "run" / "imported_00000009"))
    assert back.config == first.config and back.weights.keys() == first.weights.keys()
    assert all(torch.equal(back.weights[k], v) for k, v in first.weights.items())
    exported = torch.load(tmp_path / "exported" / "step_9", weights_only=True)
    assert list(exported) == list(state)
    assert all(exported[k].dtype == v.dtype and torch.equal(exported[k], v) for k, v in state.items())
    assert (tmp_path / "exported" / "step_9").read_bytes() == (tmp_path / "ref" / "step_9").read_bytes()
    config = yaml.safe_load((tmp_path / "exported" / "all_config.yaml").read_text())
    assert config["arch"]["forward_dtype"] == dtype and config["epochs"] == 50000   # trainer fields kept


# ---------------------------------------------------------------------------------------------------
# Refusals: PipelineError naming the reason, nothing written

def _refused(tmp_path, state, config, match, names=None):
    source = write_reference(tmp_path / "ref", state, config, names=names)
    with pytest.raises(PipelineError, match=match) as err:
        run_stage(compose("stage=import", f"checkpoint={source}", f"run_dir={tmp_path / 'run'}", SUDOKU_OPTION))
    assert not (tmp_path / "run").exists()
    return err


def test_not_a_state_dict_is_refused(tmp_path):
    _refused(tmp_path, [torch.zeros(2)], documented_config(), "not a TRM state_dict")


class NotAWeight:
    """Pickled by reference: loading it would need to import code."""


def test_a_file_with_code_in_it_is_refused_in_one_plain_line(tmp_path):
    """What was refused and why; never torch's advice to load it with weights_only=False, nor colour codes."""
    def plain(err):
        text = str(err.value)
        assert "\n" not in text and "\x1b" not in text and "weights_only" not in text and "safe_globals" not in text
    plain(_refused(tmp_path, {"x": NotAWeight()}, documented_config(),
                   r"step_7 was not loaded as a plain state_dict: it holds pickled Python objects besides tensors "
                   r"\(tests.test_reference_checkpoint.NotAWeight\); loading them would run code"))
    folder = tmp_path / "ours"
    folder.mkdir()
    torch.save({"model": {"x": NotAWeight()}}, folder / ckpt.STATE)
    for name in (ckpt.META, ckpt.CONFIG, ckpt.MANIFEST):
        (folder / name).write_text("{}")
    with pytest.raises(PipelineError, match="unreadable: it holds pickled Python objects besides tensors") as err:
        ckpt.Checkpoint.read(str(folder)).state()
    plain(err)


def test_a_state_dict_of_another_model_is_refused(tmp_path):
    _refused(tmp_path, {"encoder.weight": torch.zeros(2, 2)}, documented_config(), "not a TRM state_dict")


def test_missing_key_is_named(tmp_path):
    state = documented_state()
    del state[PREFIX + "q_head.bias"]
    _refused(tmp_path, state, documented_config(), r"missing key\(s\) \['q_head.bias'\]")


def test_extra_key_is_named(tmp_path):
    state = documented_state()
    state[PREFIX + "L_level.layers.2.mlp.down_proj.weight"] = torch.zeros(HIDDEN, 512)
    _refused(tmp_path, state, documented_config(), r"unexpected key\(s\) \['L_level.layers.2.mlp.down_proj.weight'\]")


def test_shape_that_does_not_fit_the_config_names_key_and_shapes(tmp_path):
    _refused(tmp_path, documented_state(), documented_config(expansion=16),
             r"L_level.layers.0.mlp.gate_up_proj.weight has shape \[512, 32\] but the config implies \[1024, 32\]")


def test_config_field_without_counterpart_is_refused(tmp_path):
    _refused(tmp_path, documented_state(), documented_config(no_ACT_continue=False), "no_ACT_continue=false")
    _refused(tmp_path, documented_state(), documented_config(name="recursive_reasoning.hrm@HRM"), "is not TRM")
    _refused(tmp_path, documented_state(), documented_config(puzzle_emb_scale=2.0), r"\['puzzle_emb_scale'\]")


def test_identifiers_of_other_data_are_refused(tmp_path):
    _refused(tmp_path, documented_state(rows=4), documented_config(), "3 names but the puzzle-embedding table .* has 4 rows",
             names=["<blank>", "a", "b"])


def test_missing_all_config_is_refused(tmp_path):
    torch.save(documented_state(), tmp_path / "step_3")
    with pytest.raises(PipelineError, match="all_config.yaml is missing"):
        ref.read_reference(str(tmp_path / "step_3"))


# ---------------------------------------------------------------------------------------------------
# ARC identifiers

def test_version_names_follow_the_reference_builder():
    maps = np.array([np.arange(10), [0, 3, 1, 2, 4, 5, 6, 7, 9, 8]])
    assert arc_identifiers.version_names(["007bbfb7", "007bbfb7"], [0, 4], [0, 6], maps) == [
        "007bbfb7", "007bbfb7|||t6|||0312456798"]


def _arc_data(data_dir, versions: dict) -> dict:
    """An ARC data folder's identifiers file and manifest, written by the data stage's own writer."""
    from augment.arc import ArcTask
    from pipeline.tasks import arc as build_arc
    groups = [(subset, tid, ArcTask(tid, [], [])) for tid, (subset, _) in versions.items()]
    plans = [(np.array([d for d, _ in v], np.int8), np.array([m for _, m in v], np.uint8))
             for _, v in versions.values()]
    sizes = np.array([len(v) for _, v in versions.values()])
    first_ids = 1 + np.concatenate([[0], np.cumsum(sizes)[:-1]])
    build_arc._write_identifiers(os.path.join(data_dir, "identifiers.parquet"), groups, plans, first_ids)
    manifest = {"task": "arc", "seq_len": 900, "vocab_size": 12, "num_puzzle_identifiers": int(1 + sizes.sum()),
                "seed": 0, "versions": int(sizes.sum()), "test_subset": "evaluation",
                "subsets": {"training": 1, "evaluation": 1}, "identifiers_file": "identifiers.parquet"}
    storage.write_json_atomic(os.path.join(data_dir, "dataset.json"), manifest)
    return manifest


def test_arc_rows_are_matched_by_name_and_unknown_test_versions_refused(tmp_path):
    identity, swap = list(range(10)), [0, 2, 1, 3, 4, 5, 6, 7, 8, 9]
    # the reference's rows: its own order, one version this data lacks, one this data has that it lacks
    names = ["<blank>", "bbbb|||t1|||0213456789", "aaaa", "zzzz", "bbbb", "aaaa|||t3|||0213456789"]
    data = _arc_data(str(tmp_path / "data"), {"aaaa": ("training", [(0, identity), (3, swap)]),
                                              "bbbb": ("evaluation", [(0, identity), (1, swap), (5, swap)])})
    table = torch.arange(6, dtype=torch.float32)[:, None].repeat(1, 4)      # row r holds r
    versions = arc_identifiers.dataset_versions(str(tmp_path / "data"), data)
    new, matched = arc_identifiers.remap_table(table, names, versions, data["num_puzzle_identifiers"])
    # ours: 1 aaaa, 2 aaaa|||t3, 3 bbbb, 4 bbbb|||t1, 5 bbbb|||t5 (unknown: the trained rows' mean)
    assert new[:, 0].tolist() == [0, 2, 5, 4, 1, 3.0] and matched.tolist() == [True] * 5 + [False]
    unknown = r"1 of the 3 task versions .*'bbbb\|\|\|t5\|\|\|0213456789'.*stage=adapt: not yet available"
    with pytest.raises(PipelineError, match=unknown):
        arc_identifiers.check_test_versions(matched, versions, data, num_aug=None)
    arc_identifiers.check_test_versions(matched, versions, data, num_aug=1)   # versions 0 and 1 are known


def test_arc_checkpoint_is_fitted_to_the_dataset_or_refused(tmp_path):
    identity = list(range(10))
    data = _arc_data(str(tmp_path / "data"), {"aaaa": ("training", [(0, identity)]),
                                              "bbbb": ("evaluation", [(0, identity)])})
    state = documented_state(vocab=12, seq_len=900, rows=3)
    config = documented_config()
    source = write_reference(tmp_path / "ref", state, config)
    with pytest.raises(PipelineError, match="no identifiers.json says which task version.*stage=adapt: not yet available"):
        ckpt.Checkpoint.open(source, data_dir=str(tmp_path / "data"))
    names_file = tmp_path / "identifiers.json"
    names_file.write_text(json.dumps(["<blank>", "bbbb", "aaaa"]))
    fitted = ckpt.Checkpoint.open(source, data_dir=str(tmp_path / "data"), identifiers=str(names_file))
    saved, manifest = fitted.state(), fitted.manifest
    assert fitted.converted and sorted(os.listdir(tmp_path)) == ["data", "identifiers.json", "ref"]  # nothing written
    path = fitted.save(str(tmp_path / "fitted"))
    table = state[PREFIX + "puzzle_emb.weights"]
    assert torch.equal(saved["model"]["puzzle_emb.weights"], table[[0, 2, 1]])
    assert all(manifest[k] == data[k] for k in arc_identifiers.IDENTIFIER_FIELDS)
    # exported back, the rows carry our versions' names
    run_stage(compose("task=arc", "stage=export", f"checkpoint={path}", f"export.dir={tmp_path / 'exported'}"))
    assert json.loads((tmp_path / "exported" / "identifiers.json").read_text()) == ["<blank>", "aaaa", "bbbb"]


def test_named_versions_are_built_identity_first_and_bad_names_refused():
    names = ["<blank>", "aaaa|||t2|||0123456798", "bbbb", "aaaa", "aaaa|||t0|||0213456789"]
    plans = arc_identifiers.named_versions(names, ["aaaa", "bbbb", "cccc"], "test")
    assert [d.tolist() for d, _ in plans] == [[0, 2, 0], [0], [0]]
    assert plans[0][1][1].tolist() == [0, 1, 2, 3, 4, 5, 6, 7, 9, 8] and plans[0][1][2].tolist()[:3] == [0, 2, 1]
    for bad in ("aaaa|||t8|||0123456789", "aaaa|||t1|||1023456789", "aaaa|||t1|||0113456789", "aaaa|||x|||0123456789"):
        with pytest.raises(PipelineError, match="is not a version name"):
            arc_identifiers.named_versions(["<blank>", bad], ["aaaa"], "task.identifiers=x")


def test_training_state_file_of_a_fork_loads_its_model_entry(tmp_path):
    state = {"model": documented_state(), "optimizers": [{"state": {}, "param_groups": []}], "step": 5}
    imported = ref.read_reference(write_reference(tmp_path, state, documented_config(), step=5), given=SUDOKU)
    assert all(torch.equal(imported.weights[k], v.float()) for k, v in hand_renamed(documented_state()).items())


def test_export_refuses_to_overwrite_a_run(tmp_path):
    source = write_reference(tmp_path / "ref", documented_state(), documented_config(), step=2)
    run_stage(compose("stage=import", f"checkpoint={source}", f"run_dir={tmp_path / 'run'}", SUDOKU_OPTION))
    with pytest.raises(PipelineError, match="already holds a run"):
        run_stage(compose("stage=export", f"checkpoint={tmp_path / 'run' / 'imported_00000002'}",
                          f"export.dir={source}"))
