"""A reference-format run used directly by the stages: stage=eval scores it exactly as the checkpoint it was
exported from, and train.init_from= starts fine-tuning from its weights with fresh optimisers."""
import os

import pytest
import torch

from pipeline import checkpoints as ckpt
from pipeline.errors import PipelineError
from pipeline.run import run_stage
from tests.conftest import compose
from tests.test_eval import TINY_MODEL, write_sudoku_dataset
from tests.test_reference_checkpoint import _our_checkpoint
from trm import TRMConfig

# TINY_MODEL as a TRMConfig for the 6x6 Sudoku of write_sudoku_dataset
CONFIG = TRMConfig(seq_len=36, vocab_size=8, num_puzzle_identifiers=1, hidden_size=32, num_heads=2, L_layers=1,
                   H_cycles=2, L_cycles=1, halt_max_steps=3, puzzle_emb_len=2)


@pytest.fixture(scope="module")
def exported(ray_local, tmp_path_factory):
    root = tmp_path_factory.mktemp("reference")
    write_sudoku_dataset(str(root / "data"))
    manifest = {"task": "sudoku", "seq_len": 36, "vocab_size": 8, "num_puzzle_identifiers": 1, "size": 6, "box": [2, 3]}
    _our_checkpoint(str(root / "ours"), CONFIG, manifest, step=42)
    run_stage(compose("stage=export", f"checkpoint={root / 'ours'}", f"export.dir={root / 'reference'}"))
    return root


def test_eval_of_a_reference_run_equals_eval_of_its_source(exported):
    common = ["stage=eval", "task=sudoku", f"data_dir={exported / 'data'}", "eval.batch_size=16"]
    ours = run_stage(compose(*common, f"run_dir={exported / 'eval_ours'}", f"checkpoint={exported / 'ours'}"))
    theirs = run_stage(compose(*common, f"run_dir={exported / 'eval_ref'}", f"checkpoint={exported / 'reference'}"))
    assert theirs["checkpoint"] == str(exported / "eval_ref" / "reference_import") and theirs["checkpoint_step"] == 42
    for key in ("exact_accuracy", "token_accuracy", "exact_accuracy_per_step", "mean_halting_step", "count"):
        assert theirs[key] == ours[key], key


def test_fine_tuning_starts_from_the_reference_weights(exported):
    run_dir = exported / "finetune"
    common = ["stage=train", "task=sudoku", f"data_dir={exported / 'data'}", f"run_dir={run_dir}", *TINY_MODEL,
              "train.num_workers=1", "train.global_batch_size=8", "train.steps=2", "train.eval_every=0",
              f"train.init_from={exported / 'reference' / 'step_42'}"]
    with pytest.raises(PipelineError, match=r"holds another model .*model.hidden_size=32"):
        run_stage(compose(*common, "model.hidden_size=64"))
    # learning rates 0: the weights after two steps are the starting weights, so they came from the file
    run_stage(compose(*common, "train.lr=0", "train.puzzle_emb_lr=0"))
    state, _, _ = ckpt.load_checkpoint(str(run_dir / ckpt.checkpoint_name(2)))
    start, _, _ = ckpt.load_checkpoint(str(run_dir / "reference_import"))
    assert state["step"] == 2 and os.path.isdir(run_dir / "reference_import")
    assert all(torch.equal(state["model"][k], v) for k, v in start["model"].items())
    adam = state["optimizers"][0]["state"]
    assert adam and all(int(s["step"]) == 2 for s in adam.values())    # fresh optimiser: two steps taken
