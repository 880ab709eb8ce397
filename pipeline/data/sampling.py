"""The order in which training visits a split's examples: the reference's sampler (docs trm_reference.md §3.2).

One epoch walks a seeded permutation of the groups (original puzzles, ARC tasks); for each group it draws one
of its versions (a puzzle: one `aug_index`) uniformly and emits all of that version's examples in random
order. So every group is visited once per epoch however many versions it has, and consecutive examples come
from different groups (a global batch of 768 at ARC-AGI-1 spans a few hundred tasks).

An epoch is a pure function of (seed, epoch): the array of row positions in the split (files in name order,
rows in file order). Rank r of w takes the epoch's positions p with p % w == r, so ranks never overlap and a
restarted rank recomputes exactly where it was. Pure numpy; the rows themselves are read by `split_reader`.
"""
import numpy as np

EPOCH_STREAM = 11   # the random stream of epoch orders (dataset_format uses 7 for the validation draw)


class GroupSampler:
    """Epoch orders over the rows of one split, given each row's `group_id` and `aug_index`."""

    def __init__(self, group_id: np.ndarray, aug_index: np.ndarray, seed: int):
        group_id, aug_index = np.asarray(group_id, np.int64), np.asarray(aug_index, np.int64)
        self.seed, self.rows = int(seed), len(group_id)
        # Rows sorted by (group, version), stable: each puzzle's rows form one run of `_order`.
        self._order = np.lexsort((aug_index, group_id))
        g, a = group_id[self._order], aug_index[self._order]
        starts_puzzle = np.r_[True, (g[1:] != g[:-1]) | (a[1:] != a[:-1])] if len(g) else np.zeros(0, bool)
        self._puzzle_start = np.flatnonzero(starts_puzzle)
        self._puzzle_rows = np.diff(np.r_[self._puzzle_start, len(g)])
        puzzle_group = g[self._puzzle_start]
        starts_group = np.r_[True, puzzle_group[1:] != puzzle_group[:-1]] if len(puzzle_group) else starts_puzzle
        self._group_first = np.flatnonzero(starts_group)
        self._group_versions = np.diff(np.r_[self._group_first, len(puzzle_group)])
        self.groups = len(self._group_first)
        # The fewest rows an epoch can have: every group's smallest version.
        smallest = np.minimum.reduceat(self._puzzle_rows, self._group_first) if self.groups else np.zeros(0, int)
        self.min_epoch_rows = int(smallest.sum())

    def epoch(self, epoch: int) -> np.ndarray:
        """Row positions of one epoch, in training order."""
        if not self.groups:
            return np.zeros(0, np.int64)
        rng = np.random.default_rng([self.seed, int(epoch), EPOCH_STREAM])
        groups = rng.permutation(self.groups)
        puzzles = self._group_first[groups] + rng.integers(0, self._group_versions[groups])
        lengths = self._puzzle_rows[puzzles]
        ends = np.cumsum(lengths)
        within = np.arange(ends[-1]) - np.repeat(ends - lengths, lengths)
        sorted_positions = np.repeat(self._puzzle_start[puzzles], lengths) + within
        # A random order inside each puzzle: sort by (puzzle's place in the epoch, random key).
        shuffled = np.lexsort((rng.random(len(within)), np.repeat(np.arange(len(puzzles)), lengths)))
        return self._order[sorted_positions[shuffled]]

    def rank_epoch(self, epoch: int, rank: int, world: int) -> np.ndarray:
        """This rank's row positions of one epoch, in its training order."""
        return self.epoch(epoch)[rank::world]
