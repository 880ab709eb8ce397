"""Exponential moving average of the network's trainable parameters (reference `models/ema.py`)."""
import copy

import torch
from torch import nn


class EMA:
    """shadow <- rate * shadow + (1 - rate) * param, for every trainable parameter, after every step.

    Buffers (the puzzle-embedding table, H_init / L_init) are not averaged: `copy_model` returns a deep
    copy of the model with the shadow weights and the model's current buffers, as the reference
    evaluates. Unlike the reference, the shadow is part of the training state, so a resumed run keeps it.
    The copy shares the model's puzzle table (1.8 GB for ARC-1 at aug-1000), where the reference copies
    the whole training state and then the model again.
    """

    def __init__(self, model: nn.Module, rate: float = 0.999):
        self.rate = rate
        self.shadow = {name: p.detach().clone() for name, p in model.named_parameters() if p.requires_grad}

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        for name, p in model.named_parameters():
            if name in self.shadow:
                self.shadow[name].lerp_(p.detach(), 1.0 - self.rate)

    @torch.no_grad()
    def copy_model(self, model: nn.Module, into: nn.Module | None = None) -> nn.Module:
        """A copy of `model` carrying the averaged weights (for evaluation). Its buffers are the model's own
        tensors, shared rather than copied: they are not averaged, the copy only reads them, and the puzzle
        table among them is the largest tensor of a run (1.8 GB for ARC-1 at aug-1000).

        `into`: an earlier copy of the same model to refresh in place (its parameters take the shadow)
        instead of a new one, so that a step compiled on it (`trm.compile`) is compiled once per run."""
        averaged = copy.deepcopy(model, memo={id(b): b for b in model.buffers()}) if into is None else into
        for name, p in averaged.named_parameters():
            if name in self.shadow:
                p.copy_(self.shadow[name])
        return averaged

    def state_dict(self) -> dict:
        return {"rate": self.rate, "shadow": dict(self.shadow)}

    def load_state_dict(self, state: dict) -> None:
        missing = set(self.shadow) - set(state["shadow"])
        if missing:
            raise ValueError(f"EMA state lacks {sorted(missing)}")
        self.rate = state["rate"]
        for name, value in state["shadow"].items():
            self.shadow[name].copy_(value)
