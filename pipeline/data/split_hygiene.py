"""Split hygiene, one implementation for every task: no validation or test puzzle is a training puzzle in
disguise, since augmentation would show it to the model in training.

A task gives one key per puzzle, equal exactly when two puzzles are the same up to its augmentation's
symmetries (Sudoku: the canonical form, a row of uint8; maze: the canonical hash, a uint64). Everything here
is numpy on the driver, over the keys alone.
"""
import logging

import numpy as np

from pipeline.data import dataset_format as fmt

log = logging.getLogger(__name__)


def comparable(keys: np.ndarray) -> np.ndarray:
    """Keys as a 1-d array that numpy sorts and compares: a key of several values becomes one opaque value."""
    keys = np.ascontiguousarray(keys)
    if keys.ndim == 1:
        return keys
    rows = keys.reshape(len(keys), -1)
    return rows.view(np.dtype((np.void, rows.dtype.itemsize * rows.shape[1]))).ravel()


def seen_in(keys: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Per key, whether `reference` holds it."""
    if not len(keys) or not len(reference):     # an empty split's column may come back untyped
        return np.zeros(len(keys), dtype=bool)
    return np.isin(comparable(keys), comparable(reference))


def first_of_kind(keys: np.ndarray) -> np.ndarray:
    """Per key, whether no earlier key equals it."""
    keys = comparable(keys)
    first = np.zeros(len(keys), dtype=bool)
    first[np.unique(keys, return_index=True)[1]] = True
    return first


def hold_out_and_drop(train_keys: np.ndarray, train_groups: np.ndarray, test_keys: np.ndarray, num_val: int,
                      seed: int, noun: str) -> tuple[dict, dict]:
    """The rows each split keeps, and how many each dropped.

    The training side's `num_val` seeded groups (`dataset_format.held_out_groups`) become the validation split;
    validation and test puzzles equivalent to a training puzzle are dropped (logged, counted). Returns
    ({"train": mask, "val": mask} over the training side's rows and {"test": mask} over the test rows,
    {"val": dropped, "test": dropped}).
    """
    held = np.isin(train_groups, fmt.held_out_groups(len(train_groups), num_val, seed))
    trained = comparable(train_keys)[~held]
    keep, dropped = {"train": ~held}, {}
    for split, keys, candidates in (("val", train_keys, held), ("test", test_keys, np.ones(len(test_keys), bool))):
        leaked = candidates & seen_in(keys, trained)
        if leaked.any():
            log.warning("dropped %d %s %ss equivalent to a training %s", int(leaked.sum()), split, noun, noun)
        keep[split], dropped[split] = candidates & ~leaked, int(leaked.sum())
    return keep, dropped
