"""TRMConfig, the Hydra `model` group that feeds it, and device resolution."""
import pytest
import torch
from omegaconf import OmegaConf

from trm import TRMConfig, forward_dtype_for, resolve_device

DATA_FIELDS = dict(seq_len=81, vocab_size=11, num_puzzle_identifiers=1)


def test_model_group_holds_the_reference_defaults(make_cfg):
    model = OmegaConf.to_container(make_cfg("preset=none").model)
    assert not set(DATA_FIELDS) & set(model)  # they come from the dataset manifest
    assert TRMConfig.from_dict({**model, **DATA_FIELDS}) == TRMConfig(**DATA_FIELDS)


def test_command_line_override_reaches_the_config(make_cfg):
    model = OmegaConf.to_container(make_cfg("preset=none", "model.hidden_size=64", "model.mlp_t=true").model)
    config = TRMConfig.from_dict({**model, **DATA_FIELDS})
    assert (config.hidden_size, config.mlp_t, config.total_len) == (64, True, 97)


def test_config_errors_name_the_field():
    with pytest.raises(ValueError, match="unknown TRMConfig fields: \\['hiden_size'\\]"):
        TRMConfig.from_dict({**DATA_FIELDS, "hiden_size": 64})
    with pytest.raises(ValueError, match="pos_encodings must be one of"):
        TRMConfig(**DATA_FIELDS, pos_encodings="alibi")
    with pytest.raises(ValueError, match="not a multiple of num_heads"):
        TRMConfig(**DATA_FIELDS, hidden_size=100, num_heads=8)


def test_device_resolution_order(monkeypatch):
    assert resolve_device("cpu") == (torch.device("cpu"), torch.float32)
    assert forward_dtype_for(torch.device("cuda")) == torch.bfloat16
    assert forward_dtype_for(torch.device("mps")) == torch.float32
    assert forward_dtype_for(torch.device("cpu"), "bfloat16") == torch.bfloat16
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto")[0].type == "mps"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve_device("auto") == (torch.device("cuda"), torch.bfloat16)
