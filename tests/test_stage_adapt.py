"""stage=adapt on real ARC tasks: a base trained on two training tasks adapts to two evaluation tasks it
never saw. New rows start at the mean of the trained rows, the network stays frozen for the embedding-only
steps, the base's files are never written, a resumed adaptation equals an uninterrupted one, and eval_arc
answers every new task from the adapted checkpoint."""
import hashlib
import json

import pytest
import torch

from pipeline.checkpoints import checkpoint as ckpt
from pipeline.errors import PipelineError
from pipeline.options import Options
from pipeline.run import run_stage
from pipeline.stages.adapt import START, embedding_only_steps, mean_rows
from tests.conftest import compose
from tests.test_eval_arc import EVALUATION, TINY_MODEL, TRAINING

ADAPT = ["stage=adapt", "task=arc", "preset=none", "task.subsets=[evaluation]", "task.test_subset=evaluation",
         f"task.task_ids=[{','.join(EVALUATION)}]", "task.num_aug=3", "task.num_val=0", "train.num_workers=2",
         "train.global_batch_size=8", "train.steps=4", "train.checkpoint_every=2", "train.eval_every=0",
         "train.lr=3e-3", "train.lr_warmup_steps=1", "adapt.embedding_only_fraction=0.5"]


def digests(folder) -> dict:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def adapted(ray_local, shared_data, tmp_path_factory):
    root = tmp_path_factory.mktemp("adapt")
    source = f"task.source={shared_data / 'arc' / 'arc-agi'}"
    base = ["task=arc", "preset=none", source, "task.subsets=[training]", "task.test_subset=training",
            f"task.task_ids=[{','.join(TRAINING)}]", "task.num_aug=3", "task.num_val=0",
            f"data_dir={root / 'base_data'}", f"run_dir={root / 'base'}"]
    run_stage(compose("stage=augment", *base))
    run_stage(compose("stage=train", *base, *TINY_MODEL, "train.num_workers=1", "train.global_batch_size=8",
                      "train.steps=2", "train.eval_every=0", "train.lr=1e-2"))
    base_checkpoint = ckpt.latest_checkpoint(str(root / "base"))
    before = digests(root / "base")
    common = [source, f"adapt.base={base_checkpoint}", f"data_dir={root / 'data'}"]
    run_stage(compose(*ADAPT, *common, f"run_dir={root / 'run'}"))
    run_stage(compose(*ADAPT, *common, f"run_dir={root / 'interrupted'}", "train.fail_once_at_step=3"))
    return root, base_checkpoint, before, common


def weights(path: str) -> dict:
    return ckpt.Checkpoint.read(path).state()["model"]


def test_new_rows_start_at_the_mean_and_the_network_waits_for_the_embeddings(adapted):
    root, base_checkpoint, before, _ = adapted
    base = ckpt.Checkpoint.read(base_checkpoint).state()
    start = weights(str(root / "run" / START))
    table = base["model"]["puzzle_emb.weights"]
    trained = table[1:][table[1:].abs().sum(1) > 0]
    assert len(trained) and torch.allclose(start["puzzle_emb.weights"][1:], trained.mean(0).expand(
        len(start["puzzle_emb.weights"]) - 1, -1))
    manifest = json.loads((root / "data" / "dataset.json").read_text())
    assert start["puzzle_emb.weights"].shape[0] == manifest["num_puzzle_identifiers"]
    for key, value in base["ema"]["shadow"].items():          # the base's EMA network
        assert torch.equal(start[key], value), key
    frozen, trained_all = (weights(str(root / "run" / ckpt.checkpoint_name(s))) for s in (2, 4))
    network = [k for k in base["ema"]["shadow"]]
    assert all(torch.equal(frozen[k], start[k]) for k in network)                  # steps 1-2: embeddings only
    assert not torch.equal(frozen["puzzle_emb.weights"], start["puzzle_emb.weights"])
    assert any(not torch.equal(trained_all[k], start[k]) for k in network)         # steps 3-4: everything
    assert digests(root / "base") == before                                         # the base is only read


def test_resumed_adaptation_equals_the_uninterrupted_one(adapted):
    root, _, _, _ = adapted
    resumed, straight = (ckpt.Checkpoint.read(str(root / run / ckpt.checkpoint_name(4))).state()
                         for run in ("interrupted", "run"))
    for key, value in straight["model"].items():
        assert torch.equal(resumed["model"][key], value), key
    for key, value in straight["ema"]["shadow"].items():
        assert torch.equal(resumed["ema"]["shadow"][key], value), key


def test_eval_arc_answers_every_new_task_from_the_adapted_checkpoint(adapted):
    root, _, _, common = adapted
    metrics = run_stage(compose("stage=eval_arc", "task=arc", "preset=none", *common, f"run_dir={root / 'run'}",
                                "eval.batch_size=8"))
    submission = json.loads((root / "run" / "eval_arc" / "plain" / "submission.json").read_text())
    assert sorted(submission) == sorted(EVALUATION) and metrics["checkpoint"].endswith(ckpt.checkpoint_name(4))


def test_the_base_is_never_an_output(adapted):
    root, base_checkpoint, _, common = adapted
    with pytest.raises(PipelineError, match="lies inside run_dir"):
        run_stage(compose(*ADAPT, *common, f"run_dir={root / 'base'}"))
    with pytest.raises(PipelineError, match="needs adapt.base"):
        run_stage(compose(*ADAPT, f"data_dir={root / 'data'}", f"run_dir={root / 'other'}"))


def test_embedding_only_steps_and_mean_rows():
    full, embeddings = (Options.of(compose(f"adapt.mode={mode}", "adapt.embedding_only_fraction=0.25")).adapt
                        for mode in ("full", "embeddings"))
    assert embedding_only_steps(full, 12500) == 3125 and embedding_only_steps(embeddings, 10) == 10
    with pytest.raises(PipelineError, match="adapt.mode='lora': not one of full, embeddings"):
        Options.of(compose("adapt.mode=lora"))
    table = torch.tensor([[9.0, 9.0], [1.0, 3.0], [0.0, 0.0], [3.0, 5.0]])     # row 2 never trained
    assert torch.equal(mean_rows(table, 3), torch.tensor([[9.0, 9.0], [2.0, 4.0], [2.0, 4.0]]))
