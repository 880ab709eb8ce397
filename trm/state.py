"""Save and restore everything a training run needs to continue exactly, as plain tensors and numbers.

The dict loads with `torch.load(weights_only=True)`: model (including the puzzle table and H_init /
L_init), EMA shadow, both optimisers, the step, torch's CPU generator (halting exploration draws from
it) and, when given, the carry of this process's slots. The reference saves the model only.
"""
import torch
from torch import nn

from trm.carry import Carry
from trm.ema import EMA


def training_state(model: nn.Module, optimizers: list[torch.optim.Optimizer], step: int,
                   ema: EMA | None = None, carry: Carry | None = None) -> dict:
    return {
        "model": model.state_dict(),
        "optimizers": [optimizer.state_dict() for optimizer in optimizers],
        "step": step,
        "ema": None if ema is None else ema.state_dict(),
        "carry": None if carry is None else carry.state_dict(),
        "rng": torch.get_rng_state(),
    }


def load_training_state(state: dict, model: nn.Module, optimizers: list[torch.optim.Optimizer],
                        ema: EMA | None = None) -> tuple[int, Carry | None]:
    """Restore `state` into the given objects (built with the same config) and torch's CPU generator.

    Returns (step, carry or None); the carry is on the device it was saved from: `.to(device)` it.
    """
    model.load_state_dict(state["model"])
    if len(optimizers) != len(state["optimizers"]):
        raise ValueError(f"state has {len(state['optimizers'])} optimisers, got {len(optimizers)}")
    for optimizer, saved in zip(optimizers, state["optimizers"]):
        optimizer.load_state_dict(saved)
    if ema is not None:
        if state["ema"] is None:
            raise ValueError("state has no EMA but an EMA was given")
        ema.load_state_dict(state["ema"])
    torch.set_rng_state(state["rng"])
    carry = None if state["carry"] is None else Carry.from_state_dict(state["carry"])
    return state["step"], carry
