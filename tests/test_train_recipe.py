"""The training recipe as another stage would use it: a fine-tuning stage of a few lines (its own options
section, starting weights, run_dir) trains through `fit`, resumes without rebuilding its start, and has its
options named in errors."""
import pytest
import torch
from omegaconf import OmegaConf

from pipeline.checkpoints import checkpoint as ckpt
from pipeline.data import dataset_format as fmt
from pipeline.errors import PipelineError
from pipeline.options import TrainOptions, build
from pipeline.train.recipe import TrainRecipe, fit
from tests.conftest import compose
from tests.test_train import tiny_overrides, train, write_tiny_dataset


def finetune(data_dir: str, run_dir: str, start: str, calls: list, **options) -> dict:
    """A whole fine-tuning stage: the train options with a few of its own, weights from `start`."""
    cfg = compose("stage=train", f"data_dir={data_dir}", f"run_dir={run_dir}", *tiny_overrides())
    manifest = fmt.read_manifest(data_dir)
    section = build(TrainOptions, {**OmegaConf.to_container(cfg.train, resolve=True), "num_workers": 1, "steps": 2,
                                   "lr": 0.0, "puzzle_emb_lr": 0.0, "eval_every": 0, **options}, "finetune")

    def start_weights():
        calls.append(start)
        return start
    return fit(TrainRecipe(cfg=cfg, options=section, section="finetune", data_dir=data_dir, manifest=manifest,
                           run_dir=run_dir,
                           model_config=ckpt.model_config(OmegaConf.to_container(cfg.model, resolve=True), manifest),
                           start_weights=start_weights))


@pytest.fixture(scope="module")
def trained(ray_local, tmp_path_factory):
    root = tmp_path_factory.mktemp("recipe")
    write_tiny_dataset(str(root / "data"))
    train(str(root / "data"), str(root / "base"), "train.steps=4", "train.num_workers=1", "train.eval_every=0")
    return root, ckpt.latest_checkpoint(str(root / "base"))


def test_a_stage_of_a_few_lines_trains_from_its_start_and_resumes(trained):
    root, start = trained
    calls = []
    summary = finetune(str(root / "data"), str(root / "tuned"), start, calls)
    assert summary["step"] == 2 and calls == [start]
    tuned = ckpt.Checkpoint.read(ckpt.latest_checkpoint(str(root / "tuned"))).state()
    base = ckpt.Checkpoint.read(start).state()
    # lr 0: the weights are still the start's EMA weights, and its table (a buffer, not averaged)
    for key, value in base["ema"]["shadow"].items():
        assert torch.equal(tuned["model"][key], value), key
    assert torch.equal(tuned["model"]["puzzle_emb.weights"], base["model"]["puzzle_emb.weights"])
    again = finetune(str(root / "data"), str(root / "tuned"), start, calls)    # complete: nothing rebuilt
    assert again["step"] == 2 and calls == [start]


def test_errors_name_the_stage_section(trained):
    root, start = trained
    with pytest.raises(PipelineError, match=r"finetune\.num_workers=0: must be at least 1"):
        finetune(str(root / "data"), str(root / "bad"), start, [], num_workers=0)
    with pytest.raises(PipelineError, match=r"trained with finetune\.global_batch_size=16, not 8"):
        finetune(str(root / "data"), str(root / "tuned"), start, [], global_batch_size=8)
