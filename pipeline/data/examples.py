"""A split's rows as trm's example tensors: what training, its evaluation and inference feed the model."""
import numpy as np
import torch

COLUMNS = ("inputs", "labels", "puzzle_identifier")


def to_examples(batch: dict) -> dict:
    """Parquet columns (uint8 tokens, label 0 = ignore) -> trm's example tensors (int64, label -100)."""
    inputs, labels, ids = (torch.from_numpy(np.array(batch[k], dtype=np.int64))   # copies: writable
                           for k in COLUMNS)
    return {"inputs": inputs, "labels": labels.masked_fill(labels == 0, -100), "puzzle_identifiers": ids}
