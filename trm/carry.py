"""The persistent carry of the batch slots, and `refill`, which feeds halted slots with new examples.

Every slot of a training batch holds one example until it halts (at most N_sup supervision steps). A
halted slot takes the next example of the stream; the others keep their example and their (y, z). This
is the reference's persistent-carry feeding without its waste: the reference hands every slot a fresh
batch row each step and throws away the rows of slots that have not halted. To reproduce the reference's
data distribution exactly, pass the rows of a full batch at the halted positions:
`refill(carry, {k: v[carry.halted] for k, v in batch.items()})`.
"""
from dataclasses import dataclass, fields, replace

import torch

EXAMPLE_KEYS = ("inputs", "labels", "puzzle_identifiers")
IGNORE_LABEL = -100


@dataclass
class Carry:
    """State of B slots between supervision steps (all tensors on one device).

    y: [B, L, D] answer state (the reference's z_H); z: [B, L, D] latent reasoning state (z_L).
    steps: [B] int32, supervision steps taken on the slot's example; 0 means the model starts it from
    the initial states H_init / L_init (so y and z of such a slot are never read).
    halted: [B] bool, the slot's example is done and the slot waits for `refill`.
    inputs, labels: [B, seq_len] int64 (labels -100 = ignored); puzzle_identifiers: [B] int64.
    """

    y: torch.Tensor
    z: torch.Tensor
    steps: torch.Tensor
    halted: torch.Tensor
    inputs: torch.Tensor
    labels: torch.Tensor
    puzzle_identifiers: torch.Tensor

    @property
    def batch_size(self) -> int:
        return self.halted.shape[0]

    def to(self, device) -> "Carry":
        return Carry(**{f.name: getattr(self, f.name).to(device) for f in fields(self)})

    def state_dict(self) -> dict:
        """Tensors only (loadable with `torch.load(weights_only=True)`)."""
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def from_state_dict(cls, state: dict) -> "Carry":
        return cls(**{f.name: state[f.name] for f in fields(cls)})


def refill(carry: Carry, examples: dict, halted: torch.Tensor | None = None) -> Carry:
    """Give each halted slot, in slot order, the next row of `examples`; other slots are untouched.

    `examples` holds `inputs` [k, seq_len], `labels` [k, seq_len] (-100 = ignored: map the padding
    label to -100 before, as the reference's loader does) and
    `puzzle_identifiers` [k], integer tensors or arrays, with k = number of halted slots exactly (a
    ValueError otherwise). Refilled slots get steps 0 (the model restarts them from H_init / L_init) and
    halted False. Returns a new Carry; the argument is not modified.

    `halted`: `carry.halted` already on the host (a copy started earlier, e.g. `trm.device.HostCopy`), so
    that refilling never waits for the device; None copies it here. The rows are placed by `torch.where`
    over a full batch of candidates built on the host, so the device sees no data-dependent shape.
    """
    halted_host = carry.halted.cpu() if halted is None else halted
    slots = torch.nonzero(halted_host, as_tuple=True)[0]
    for key in EXAMPLE_KEYS:
        if key not in examples:
            raise ValueError(f"refill: examples lack {key!r} (need {EXAMPLE_KEYS})")
        if len(examples[key]) != len(slots):
            raise ValueError(f"refill: {len(slots)} halted slots but {len(examples[key])} rows of {key!r}")
    if len(slots) == 0:
        return carry
    mask = halted_host.to(carry.halted.device, non_blocking=True)
    new = {}
    for key in EXAMPLE_KEYS:
        column = getattr(carry, key)
        candidates = torch.zeros(column.shape, dtype=column.dtype)
        candidates[slots] = torch.as_tensor(examples[key]).to(column.dtype)
        new[key] = torch.where(mask.view(-1, *[1] * (column.dim() - 1)),
                               candidates.to(column.device, non_blocking=True), column)
    return replace(carry, steps=torch.where(mask, 0, carry.steps), halted=carry.halted & ~mask, **new)
