"""The reference's sampler: one version of every group per epoch, all of its examples, seeded and rank-split."""
import numpy as np

from pipeline.data.sampling import GroupSampler


def rows_of(groups_versions_examples):
    """group_id, aug_index per row for {group: [examples of version 0, of version 1, ...]}, rows shuffled."""
    g, a = [], []
    for group, versions in groups_versions_examples.items():
        for version, count in enumerate(versions):
            g += [group] * count
            a += [version] * count
    order = np.random.default_rng(0).permutation(len(g))
    return np.array(g)[order], np.array(a)[order]


LAYOUT = {5: [3, 3, 2], 9: [1], 2: [4] * 10, 7: [2, 5]}


def test_an_epoch_visits_each_group_once_with_all_rows_of_one_version():
    g, a = rows_of(LAYOUT)
    sampler = GroupSampler(g, a, seed=1)
    for epoch in range(20):
        positions = sampler.epoch(epoch)
        assert len(np.unique(positions)) == len(positions)
        groups, versions = g[positions], a[positions]
        # each group appears as one contiguous run, of one version, with all that version's rows
        runs = np.flatnonzero(np.r_[True, groups[1:] != groups[:-1]])
        assert sorted(groups[runs].tolist()) == sorted(LAYOUT)
        for start, stop in zip(runs, np.r_[runs[1:], len(groups)]):
            group, version = groups[start], versions[start]
            assert (versions[start:stop] == version).all()
            assert stop - start == LAYOUT[group][version]


def test_versions_are_drawn_uniformly_and_groups_visited_equally():
    g, a = rows_of({0: [1] * 4, 1: [1] * 100})
    sampler = GroupSampler(g, a, seed=2)
    epochs = [sampler.epoch(e) for e in range(2000)]
    first_versions = np.bincount([a[p[g[p] == 0][0]] for p in epochs], minlength=4)
    assert first_versions.min() > 400                     # about 500 each of 4 versions
    visits = np.bincount(np.concatenate([g[p] for p in epochs]))
    assert visits[0] == visits[1] == 2000                  # once per epoch, whatever the number of versions


def test_epochs_are_seeded_and_differ():
    g, a = rows_of(LAYOUT)
    one, same, other = GroupSampler(g, a, 1), GroupSampler(g, a, 1), GroupSampler(g, a, 2)
    assert np.array_equal(one.epoch(3), same.epoch(3))
    assert not np.array_equal(one.epoch(3), one.epoch(4))
    assert not np.array_equal(one.epoch(3), other.epoch(3))


def test_ranks_partition_an_epoch():
    g, a = rows_of(LAYOUT)
    sampler = GroupSampler(g, a, seed=4)
    parts = [sampler.rank_epoch(6, rank, 3) for rank in range(3)]
    assert np.array_equal(np.sort(np.concatenate(parts)), np.sort(sampler.epoch(6)))
    assert sampler.min_epoch_rows == 2 + 1 + 4 + 2     # each group's smallest version
