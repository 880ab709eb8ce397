"""A reference-format run used directly by the stages: stage=eval scores it exactly as the checkpoint it was
exported from, train.init_from= starts fine-tuning from its weights with fresh optimisers, and an ARC run
is scored on data built from its identifiers.json with each version's trained row."""
import os

import pytest
import torch

from pipeline.checkpoints import arc_identifiers
from pipeline.checkpoints import checkpoint as ckpt
from pipeline.data import dataset_format as fmt
from pipeline.errors import PipelineError
from pipeline.run import run_stage
from tests import tiny
from tests.conftest import compose
from tests.test_eval import TINY_MODEL, write_sudoku_dataset
from tests.test_reference_checkpoint import _our_checkpoint, documented_config, documented_state, write_reference

# TINY_MODEL as a TRMConfig for the 6x6 Sudoku of write_sudoku_dataset
CONFIG = tiny.pipeline_model(**tiny.SUDOKU_6X6)


@pytest.fixture(scope="module")
def exported(ray_local, tmp_path_factory):
    root = tmp_path_factory.mktemp("reference")
    write_sudoku_dataset(str(root / "data"))
    manifest = {"task": "sudoku", "seq_len": 36, "vocab_size": 8, "num_puzzle_identifiers": 1, "size": 6, "box": [2, 3]}
    # initial states a bfloat16 forward can hold: the export stores them in bfloat16 (forward_dtype auto), so
    # that the reference run's evaluation on CPU is this checkpoint's bit for bit (other values would be rounded)
    _our_checkpoint(str(root / "ours"), CONFIG, manifest, step=42, initial_dtype=torch.bfloat16)
    run_stage(compose("stage=export", f"checkpoint={root / 'ours'}", f"export.dir={root / 'reference'}"))
    return root


def test_eval_of_a_reference_run_equals_eval_of_its_source(exported):
    common = ["stage=eval", "task=sudoku", f"data_dir={exported / 'data'}", "eval.batch_size=16"]
    ours = run_stage(compose(*common, f"run_dir={exported / 'eval_ours'}", f"checkpoint={exported / 'ours'}"))
    theirs = run_stage(compose(*common, f"run_dir={exported / 'eval_ref'}", f"checkpoint={exported / 'reference'}"))
    assert theirs["checkpoint"] == str(exported / "reference") and theirs["checkpoint_step"] == 42
    assert not (exported / "eval_ref" / "reference_import").exists()     # converted in memory, nothing written
    for key in ("exact_accuracy", "token_accuracy", "exact_accuracy_per_step", "mean_halting_step", "count"):
        assert theirs[key] == ours[key], key


def test_fine_tuning_starts_from_the_reference_weights(exported):
    run_dir = exported / "finetune"
    common = ["stage=train", "task=sudoku", f"data_dir={exported / 'data'}", f"run_dir={run_dir}", *TINY_MODEL,
              f"model.halt_exploration_prob={CONFIG.halt_exploration_prob}", "train.num_workers=1", "train.global_batch_size=8", "train.steps=2", "train.eval_every=0",
              f"train.init_from={exported / 'reference' / 'step_42'}"]
    with pytest.raises(PipelineError, match=r"holds another model .*model.hidden_size=32"):
        run_stage(compose(*common, "model.hidden_size=64"))
    # learning rates 0: the weights after two steps are the starting weights, so they came from the file
    run_stage(compose(*common, "train.lr=0", "train.puzzle_emb_lr=0"))
    state = ckpt.Checkpoint.read(str(run_dir / ckpt.checkpoint_name(2))).state()
    start = ckpt.Checkpoint.open(str(exported / "reference" / "step_42"), data_dir=str(exported / "data")).state()
    assert state["step"] == 2 and not os.path.exists(run_dir / "reference_import")
    assert all(torch.equal(state["model"][k], v) for k, v in start["model"].items())
    adam = state["optimizers"][0]["state"]
    assert adam and all(int(s["step"]) == 2 for s in adam.values())    # fresh optimiser: two steps taken


def test_arc_reference_run_gets_its_rows_on_data_built_from_its_names(ray_local, shared_data, tmp_path):
    colours = "0213456789"
    names = ["<blank>", f"6ea4a07e|||t5|||{colours}", "0d3d703e", "6ea4a07e", f"0d3d703e|||t3|||{colours}",
             "not-in-this-data"]
    state = documented_state(vocab=12, seq_len=900, rows=len(names))
    source = write_reference(tmp_path / "ref", state, documented_config(), step=11, names=names)
    paths = [f"data_dir={tmp_path / 'data'}", f"run_dir={tmp_path / 'run'}", "task=arc", "preset=none",
             f"task.source={shared_data / 'arc' / 'arc-agi'}", "task.subsets=[training,evaluation]",
             "task.task_ids=[0d3d703e,6ea4a07e]", f"task.identifiers={source}/identifiers.json"]
    run_stage(compose("stage=augment", *paths))
    manifest = fmt.read_manifest(str(tmp_path / "data"))
    versions = arc_identifiers.dataset_versions(str(tmp_path / "data"), manifest)
    assert sorted(versions["name"]) == sorted(names[1:-1])     # exactly the named versions of these tasks
    metrics = run_stage(compose("stage=eval_arc", *paths, f"checkpoint={source}", "eval.batch_size=8"))
    assert metrics["checkpoint"] == source and metrics["predictions"] > 0
    assert not (tmp_path / "run" / "reference_import").exists()
    fitted = ckpt.Checkpoint.open(source, data_dir=str(tmp_path / "data")).state()
    table = state["_orig_mod.model.inner.puzzle_emb.weights"]
    for row, name in zip(versions["puzzle_identifier"], versions["name"]):
        assert torch.equal(fitted["model"]["puzzle_emb.weights"][row], table[names.index(name)]), name


def test_eval_finds_the_checkpoint_imported_into_its_run_dir(exported, capsys):
    run_dir = exported / "imported_run"
    run_stage(compose("stage=import", f"checkpoint={exported / 'reference'}", f"run_dir={run_dir}"))
    assert "next: python -m pipeline.run stage=eval" in capsys.readouterr().out
    metrics = run_stage(compose("stage=eval", "task=sudoku", f"data_dir={exported / 'data'}", f"run_dir={run_dir}",
                                "eval.batch_size=16"))
    assert metrics["checkpoint"] == str(run_dir / "imported_00000042") and metrics["checkpoint_step"] == 42
