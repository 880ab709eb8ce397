"""Optimisers and schedule: Adam-atan2 for the network, sparse sign-SGD for the puzzle-embedding table,
warm-up + cosine learning rate, and gradient averaging across ranks (no DDP wrapper needed).

Adam-atan2 is written here in plain PyTorch: the reference's `adam-atan2` package is a CUDA extension,
and the pure-PyTorch `adam-atan2-pytorch` package uses different defaults (an output scale of 1.27) and
extra options, so neither matches the reference's update as shipped.
"""
import math

import torch
import torch.distributed as dist
from torch import nn

from trm.puzzle_embedding import PuzzleEmbedding


class AdamAtan2(torch.optim.Optimizer):
    """Adam with atan2 in place of the epsilon-guarded division (reference formula, no epsilon).

    Per element, at step t with learning rate eta and decay lambda:
        p <- p (1 - eta lambda);  m <- b1 m + (1-b1) g;  v <- b2 v + (1-b2) g^2
        p <- p - eta atan2(m / (1 - b1^t), sqrt(v) / sqrt(1 - b2^t))
    Each element moves by at most eta pi/2 (+ decay). Decay applies to every parameter, as the reference.
    """

    def __init__(self, params, lr: float = 1e-4, betas: tuple[float, float] = (0.9, 0.95),
                 weight_decay: float = 0.1):
        super().__init__(params, dict(lr=lr, betas=tuple(betas), weight_decay=weight_decay, base_lr=lr))

    @torch.no_grad()
    def step(self):
        for group in self.param_groups:
            lr, (beta1, beta2), decay = group["lr"], group["betas"], group["weight_decay"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if not state:
                    state["step"] = 0
                    state["exp_avg"] = torch.zeros_like(p)
                    state["exp_avg_sq"] = torch.zeros_like(p)
                state["step"] += 1
                t = state["step"]
                m, v = state["exp_avg"], state["exp_avg_sq"]
                p.mul_(1.0 - lr * decay)
                m.lerp_(p.grad, 1.0 - beta1)
                v.mul_(beta2).addcmul_(p.grad, p.grad, value=1.0 - beta2)
                update = torch.atan2(m / (1.0 - beta1 ** t), v.sqrt() / math.sqrt(1.0 - beta2 ** t))
                p.add_(update, alpha=-lr)


class SparseSignSGD(torch.optim.Optimizer):
    """Sign-SGD on the rows of the puzzle-embedding table that the last forward touched.

    Gradients of the batch's rows (`PuzzleEmbedding.local_weights.grad`, with `local_ids`) are
    all-gathered across ranks when torch.distributed is initialised (equal batch sizes per rank),
    summed per distinct id, and only those rows change: w <- w (1 - eta lambda) - eta sign(g). Rows
    not in the batch neither move nor decay.
    """

    def __init__(self, embedding: PuzzleEmbedding, lr: float = 1e-2, weight_decay: float = 0.1):
        super().__init__([embedding.weights], dict(lr=lr, weight_decay=weight_decay, base_lr=lr))
        self.embedding = embedding

    @torch.no_grad()
    def step(self):
        local = self.embedding.local_weights
        if local is None or local.grad is None:
            return
        grads, ids = local.grad, self.embedding.local_ids
        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            grads, ids = _all_gather(grads), _all_gather(ids)
        # Each id's gradients summed at its first position in the batch, in batch order. Not torch.unique:
        # its output's length is data-dependent, which makes a GPU host wait every step. [N, N] flags are
        # small at any global batch (768: 0.6 MB); argmax returns the first of equal maxima.
        first = (ids.unsqueeze(0) == ids.unsqueeze(1)).to(torch.uint8).argmax(1)
        summed = torch.zeros_like(grads).index_add_(0, first, grads)
        group = self.param_groups[0]
        table = self.embedding.weights
        rows = table[ids] * (1.0 - group["lr"] * group["weight_decay"]) - group["lr"] * summed[first].sign()
        table[ids] = rows.to(table.dtype)    # a repeated id writes the same row each time

    def zero_grad(self, set_to_none: bool = True):
        local = self.embedding.local_weights
        if local is not None:
            local.grad = None


def _all_gather(tensor: torch.Tensor) -> torch.Tensor:
    parts = [torch.empty_like(tensor) for _ in range(dist.get_world_size())]
    dist.all_gather(parts, tensor.contiguous())
    return torch.cat(parts)


def build_optimizers(model: nn.Module, lr: float = 1e-4, weight_decay: float = 0.1,
                     betas: tuple[float, float] = (0.9, 0.95), puzzle_emb_lr: float = 1e-2,
                     puzzle_emb_weight_decay: float = 0.1) -> list[torch.optim.Optimizer]:
    """[AdamAtan2 over all trainable parameters, SparseSignSGD over the puzzle table (if the model has one)].

    Defaults are the reference's (`cfg_pretrain.yaml`). Each param group keeps its `base_lr` for `lr_at`.
    """
    optimizers = [AdamAtan2([p for p in model.parameters() if p.requires_grad], lr=lr, betas=betas,
                            weight_decay=weight_decay)]
    if getattr(model, "puzzle_emb", None) is not None:
        optimizers.append(SparseSignSGD(model.puzzle_emb, lr=puzzle_emb_lr, weight_decay=puzzle_emb_weight_decay))
    return optimizers


def lr_at(step: int, base_lr: float, warmup_steps: int, total_steps: int, lr_min_ratio: float = 1.0) -> float:
    """Learning rate at 1-based optimiser step `step`: linear warm-up, then cosine from base to base * ratio.

    The reference's shipped lr_min_ratio = 1.0 makes the cosine a constant. Past `total_steps` the rate
    stays at base * ratio (the reference's formula would climb the cosine again).
    """
    if step < warmup_steps:
        return base_lr * step / max(1, warmup_steps)
    progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    progress = min(progress, 1.0)
    return base_lr * (lr_min_ratio + (1.0 - lr_min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress)))


def set_lr(optimizers: list[torch.optim.Optimizer], step: int, warmup_steps: int, total_steps: int,
           lr_min_ratio: float = 1.0) -> float:
    """Set every param group's lr to `lr_at(step, its base_lr, ...)`; returns the first group's lr (to log)."""
    for optimizer in optimizers:
        for group in optimizer.param_groups:
            group["lr"] = lr_at(step, group["base_lr"], warmup_steps, total_steps, lr_min_ratio)
    return optimizers[0].param_groups[0]["lr"]


def average_gradients(model: nn.Module) -> None:
    """Average parameter gradients across ranks (one flat all-reduce); no-op without torch.distributed.

    The puzzle table is not a parameter: its gradients travel inside `SparseSignSGD.step`.
    """
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    if not grads:
        return
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat)
    flat /= dist.get_world_size()
    offset = 0
    for g in grads:
        g.copy_(flat[offset:offset + g.numel()].view_as(g))
        offset += g.numel()
