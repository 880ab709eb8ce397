"""pipeline.checkpoints.checkpoint without Ray: finding complete checkpoints, loading, clear errors, model config."""
import json
import os

import pytest
import torch

from pipeline.checkpoints import checkpoint as ckpt
from pipeline.errors import PipelineError

MANIFEST = {"seq_len": 16, "vocab_size": 6, "num_puzzle_identifiers": 9}


def make_checkpoint(folder, step: int, world: int = 2, ranks: int | None = None, meta: bool = True):
    folder.mkdir(parents=True)
    torch.save({"step": step, "model": {"w": torch.ones(2)}}, folder / ckpt.STATE)
    (folder / ckpt.CONFIG).write_text(json.dumps({"model": {"hidden_size": 32}}))
    (folder / ckpt.MANIFEST).write_text(json.dumps(MANIFEST))
    for rank in range(world if ranks is None else ranks):
        torch.save({"rng": torch.get_rng_state()}, folder / ckpt.rank_file(rank))
    if meta:
        (folder / ckpt.META).write_text(json.dumps({"step": step, "world_size": world}))
    return str(folder)


def test_latest_skips_incomplete_and_ignores_other_folders(tmp_path):
    make_checkpoint(tmp_path / ckpt.checkpoint_name(4), 4)
    make_checkpoint(tmp_path / ckpt.checkpoint_name(8), 8)
    make_checkpoint(tmp_path / ckpt.checkpoint_name(12), 12, ranks=1)       # rank 1 never arrived
    make_checkpoint(tmp_path / ckpt.checkpoint_name(16), 16, meta=False)    # interrupted save
    (tmp_path / "checkpoint_tmp").mkdir()
    assert ckpt.latest_checkpoint(str(tmp_path)).endswith("checkpoint_00000008")
    assert ckpt.training_complete(str(tmp_path), 8)
    assert not ckpt.training_complete(str(tmp_path), 12)
    assert ckpt.latest_checkpoint(str(tmp_path / "missing")) is None
    assert ckpt.best_checkpoint(str(tmp_path)) is None


def test_best_needs_no_rank_files(tmp_path):
    make_checkpoint(tmp_path / ckpt.best_name(6), 6, ranks=0)
    assert ckpt.best_checkpoint(str(tmp_path)).endswith("best_00000006")


def test_load_roundtrip_and_errors(tmp_path):
    path = make_checkpoint(tmp_path / ckpt.checkpoint_name(4), 4)
    checkpoint = ckpt.Checkpoint.read(path)
    state, config, manifest = checkpoint.state(), checkpoint.config, checkpoint.manifest
    assert state["step"] == 4 and config["model"]["hidden_size"] == 32 and manifest == MANIFEST
    with pytest.raises(PipelineError, match="meta.json is missing"):
        ckpt.Checkpoint.read(str(tmp_path / "nowhere"))
    with open(os.path.join(path, ckpt.STATE), "wb") as f:
        f.write(b"\x00garbage")
    with pytest.raises(PipelineError, match="unreadable"):
        ckpt.Checkpoint.read(path).state()


def test_weights_only_refuses_pickled_objects(tmp_path):
    path = make_checkpoint(tmp_path / ckpt.checkpoint_name(4), 4)
    torch.save({"step": 4, "object": object()}, os.path.join(path, ckpt.STATE))
    with pytest.raises(PipelineError, match="unreadable"):
        ckpt.Checkpoint.read(path).state()


def test_model_config_takes_data_fields_from_manifest():
    config = ckpt.model_config({"hidden_size": 32, "num_heads": 2, "puzzle_emb_ndim": None}, MANIFEST)
    assert (config.seq_len, config.vocab_size, config.num_puzzle_identifiers) == (16, 6, 9)
    assert config.emb_ndim == 32
    with pytest.raises(PipelineError, match="model.vocab_size=11 does not fit"):
        ckpt.model_config({"vocab_size": 11}, MANIFEST)
    with pytest.raises(PipelineError, match="not a multiple of num_heads"):
        ckpt.model_config({"hidden_size": 32, "num_heads": 3}, MANIFEST)
    with pytest.raises(PipelineError, match="lacks 'seq_len'"):
        ckpt.model_config({}, {"vocab_size": 6, "num_puzzle_identifiers": 1})


def test_checkpoint_reads_back_what_it_wrote_and_names_its_differences(tmp_path):
    config = ckpt.model_config({"hidden_size": 32, "num_heads": 2}, MANIFEST)
    weights, shadow = {"w": torch.zeros(2), "b": torch.ones(1)}, {"w": torch.full((2,), 3.0)}
    written = ckpt.Checkpoint("memory", {"model": {"hidden_size": 32, "num_heads": 2}}, MANIFEST, {"step": 5},
                              ckpt.start_state(weights, 5, ema={"rate": 0.9, "shadow": shadow}))
    path = written.save(str(tmp_path / "start"))
    assert sorted(os.listdir(path)) == sorted([ckpt.STATE, ckpt.CONFIG, ckpt.MANIFEST, ckpt.META])
    read = ckpt.Checkpoint.read(path)
    assert (read.step, read.world_size, read.model_config, read.converted) == (5, None, config, False)
    assert torch.equal(read.weights(ema=True)["w"], shadow["w"])
    assert torch.equal(read.weights(ema=False)["w"], weights["w"])
    read.check_fits(MANIFEST, "data_dir=here")
    with pytest.raises(PipelineError, match=r"with seq_len=16, but data_dir=there has seq_len=81"):
        read.check_fits({**MANIFEST, "seq_len": 81}, "data_dir=there")
    with pytest.raises(PipelineError, match=r"another dataset .*\(seed: 0 there, 1 here\)"):
        with_fingerprint = ckpt.Checkpoint(path, read.config, {**MANIFEST, "fingerprint": {"seed": 0}}, read.meta)
        with_fingerprint.check_fits({**MANIFEST, "fingerprint": {"seed": 1}}, "data_dir=there", same_dataset=True)
    wider = ckpt.model_config({"hidden_size": 64, "num_heads": 2}, MANIFEST)
    with pytest.raises(PipelineError, match=r"holds another model .*hidden_size: 32 there, 64 here.*; pass "
                                            r"model.hidden_size=32$"):
        read.check_model(wider, "train.init_from=x")
    torch.save(ckpt.start_state(weights, 5, ema=None), os.path.join(path, ckpt.STATE))
    with pytest.raises(PipelineError, match="has no EMA weights.*set eval.ema=false"):
        ckpt.Checkpoint.read(path).weights(ema=True, required_by="eval.ema")


def test_open_names_the_option_for_what_is_neither_kind(tmp_path):
    folder = make_checkpoint(tmp_path / "partial", 4, meta=False)
    with pytest.raises(PipelineError, match=r"adapt.base=.*partial: not a complete checkpoint folder .* and not a "
                                            r"reference run"):
        ckpt.Checkpoint.open(folder, "adapt.base")
    assert ckpt.Checkpoint.open(make_checkpoint(tmp_path / "whole", 4)).step == 4
