"""The per-puzzle embedding table: a buffer trained by sparse sign-SGD (`trm.optim.SparseSignSGD`).

The table [num_puzzle_identifiers, puzzle_emb_ndim] starts at zero and is not an nn.Parameter: it can be
far larger than the network (876k rows for ARC-1), so it is excluded from the parameter count, from
Adam-atan2 and from the EMA, as in the reference. In training mode each forward copies the batch's rows
into a fresh leaf tensor `local_weights` that receives the gradient; the optimiser reads it together
with `local_ids` and writes only the touched rows back. `rows` does that copy on its own, so that a compiled
step (`trm.compile`) can make the leaf outside its graph, which cannot create leaves.
"""
import torch
from torch import nn


class PuzzleEmbedding(nn.Module):
    def __init__(self, num_puzzle_identifiers: int, dim: int):
        super().__init__()
        self.register_buffer("weights", torch.zeros(num_puzzle_identifiers, dim))
        self.local_weights: torch.Tensor | None = None
        self.local_ids: torch.Tensor | None = None

    def rows(self, ids: torch.Tensor) -> torch.Tensor:
        """The batch's rows in float32; in training mode with gradients a fresh leaf, kept with `ids`."""
        if not (self.training and torch.is_grad_enabled()):
            return self.weights[ids]
        self.local_ids = ids
        self.local_weights = self.weights[ids].detach().requires_grad_(True)
        return self.local_weights

    def forward(self, ids: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        return self.rows(ids).to(dtype)
