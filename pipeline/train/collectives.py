"""Sums and gathers over the training ranks (no-ops in a single process)."""
import torch
import torch.distributed as dist


def _distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def all_reduce_sum(values: torch.Tensor) -> torch.Tensor:
    if _distributed():
        dist.all_reduce(values)
    return values


def all_gather(items: list) -> list:
    """Every rank's list, concatenated in rank order."""
    if not _distributed():
        return items
    gathered = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, items)
    return [item for part in gathered for item in part]
