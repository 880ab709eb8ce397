"""ARC grids: validation, transforms and their inverses on every real grid, the 30x30 layout, dedup."""
import hashlib
import json

import numpy as np
import pytest

from augment import arc
from augment.dihedral import NUM_DIHEDRAL, dihedral_transform


def real_tasks(shared_data):
    """Every task of every file in shared/data/arc, parsed (and so validated) with its solutions."""
    tasks = []
    for challenges in sorted((shared_data / "arc").glob("*_challenges.json")):
        solutions = json.loads(challenges.with_name(challenges.name.replace("challenges", "solutions")).read_text())
        for task_id, raw in json.loads(challenges.read_text()).items():
            tasks.append(arc.parse_task(task_id, raw, solutions[task_id]))
    return tasks


@pytest.fixture(scope="module")
def tasks(shared_data):
    return real_tasks(shared_data)


def reference_encode(grid, r0, c0, side=30):
    """The layout cell by cell, as the reference describes it (its canvas: side 30)."""
    canvas = np.zeros((side, side), dtype=np.uint8)
    h, w = grid.shape
    for r in range(h):
        for c in range(w):
            canvas[r0 + r, c0 + c] = grid[r, c] + 2
    if r0 + h < side:
        for c in range(w):
            canvas[r0 + h, c0 + c] = 1
    if c0 + w < side:
        for r in range(h):
            canvas[r0 + r, c0 + w] = 1
    return canvas


def reference_crop(canvas):
    """The reference's scan: rows top-down, width shrinking at each row's first non-colour token."""
    best, size, width = 0, (0, 0), 30
    for rows in range(1, 31):
        for c in range(width):
            if not 2 <= canvas[rows - 1, c] <= 11:
                width = c
                break
        if rows * width > best:
            best, size = rows * width, (rows, width)
    return size


def test_every_real_grid_round_trips_under_all_transforms_and_translations(tasks):
    """inverse(transform) is the identity, through the encoding and a crop at the marker, for each of the
    8 symmetries, random colour maps and random offsets, on every grid of shared/data/arc."""
    by_shape = {}
    for task in tasks:
        for grid in task.grids():
            by_shape.setdefault(grid.shape, []).append(grid)
    rng = np.random.default_rng(0)
    checked = 0
    for (h, w), grids in by_shape.items():
        grids = np.stack(grids)
        n = len(grids)
        for d in range(NUM_DIHEDRAL):
            maps = arc.random_colour_maps(rng, n)
            moved = arc.transform_grids(grids, d, maps)
            mh, mw = moved.shape[1:]
            offsets = np.stack([rng.integers(0, 31 - mh, n), rng.integers(0, 31 - mw, n)], axis=1)
            canvases = arc.encode_grids(moved, offsets)
            shifted = arc.shift_to_origin(canvases, offsets)
            assert (arc.crop_sizes(shifted) == (mh, mw)).all()
            back = arc.inverse_transform_grids(shifted[:, :mh, :mw] - arc.COLOUR_TOKEN, d, maps)
            assert np.array_equal(back, grids)
            checked += n
    assert checked == 8 * sum(len(t.grids()) for t in tasks) > 8 * 18000        # all 3080 tasks
    # The per-row API eval uses gives the same, one sample per shape.
    sample = [g[0] for g in by_shape.values()]
    dihedral = rng.integers(0, NUM_DIHEDRAL, len(sample))
    maps = arc.random_colour_maps(rng, len(sample))
    canvases = np.zeros((len(sample), arc.SEQ_LEN), dtype=np.uint8)
    offsets = np.zeros((len(sample), 2), dtype=np.int64)
    for i, (g, d, m) in enumerate(zip(sample, dihedral, maps)):
        moved = arc.transform_grids(g, int(d), m)
        offsets[i] = rng.integers(0, 31 - moved.shape[0]), rng.integers(0, 31 - moved.shape[1])
        arc.encode_grids(moved[None], offsets[i:i + 1], out=canvases, rows=[i])
    for g, back in zip(sample, arc.to_original(canvases, dihedral, maps, offsets)):
        assert np.array_equal(back, g)


@pytest.mark.parametrize("shape,offset", [((2, 3), (1, 2)), ((30, 4), (0, 5)), ((5, 30), (7, 0)),
                                          ((30, 30), (0, 0)), ((3, 3), (27, 27)), ((1, 1), (0, 0)),
                                          ((4, 6), (26, 10))])
def test_layout_matches_the_reference_cell_by_cell(shape, offset):
    grid = np.random.default_rng(1).integers(0, 10, shape).astype(np.uint8)
    canvas = arc.encode_grids(grid[None], np.array([offset])).reshape(30, 30)
    assert np.array_equal(canvas, reference_encode(grid, *offset))
    h, w = shape
    r0, c0 = offset
    if r0 + h < 30 and c0 + w < 30:
        assert canvas[r0 + h, c0 + w] == arc.PAD                                   # corner unmarked
        assert (canvas[r0 + h, c0:c0 + w] == arc.EOS).all() and (canvas[r0:r0 + h, c0 + w] == arc.EOS).all()
    assert (canvas == arc.EOS).sum() == (w if r0 + h < 30 else 0) + (h if c0 + w < 30 else 0)


@pytest.mark.parametrize("side", [1, 3, 8, 10, 17, 30])
def test_small_canvases_round_trip_versions_cell_by_cell(side):
    """Any canvas side N: versions encoded on N x N canvases (translated, with markers) equal the layout
    drawn cell by cell, and decode back to the original grids exactly."""
    rng = np.random.default_rng(side)
    pairs = [(rng.integers(0, 10, rng.integers(1, side + 1, 2)).astype(np.uint8),
              rng.integers(0, 10, rng.integers(1, side + 1, 2)).astype(np.uint8)) for _ in range(3)]
    task = arc.ArcTask("t", pairs, [])
    assert arc.fits(task, side)
    tall = arc.ArcTask("u", [(np.zeros((side, 1), np.uint8), np.zeros((1, 1), np.uint8))], [])
    assert arc.fits(tall, side) and not arc.fits(tall, side - 1)      # in any symmetry: the longer side
    dihedral = rng.integers(0, NUM_DIHEDRAL, 12).astype(np.int8)
    maps = arc.random_colour_maps(rng, 12)
    offsets = arc.translation_offsets(rng, dihedral, np.array([[i.shape, o.shape] for i, o in pairs]), canvas=side)
    inputs, labels = np.zeros((36, side * side), np.uint8), np.zeros((36, side * side), np.uint8)
    arc.encode_versions(pairs, dihedral, maps, offsets, inputs, labels)
    rows = np.arange(36)
    v, e = rows // 3, rows % 3
    for canvases, which in ((inputs, 0), (labels, 1)):
        for row in rows:
            moved = arc.transform_grids(pairs[e[row]][which], int(dihedral[v[row]]), maps[v[row]])
            assert np.array_equal(canvases[row].reshape(side, side), reference_encode(moved, *offsets[v[row], e[row]], side))
        back = arc.to_original(canvases, dihedral[v], maps[v], offsets[v, e])
        assert all(np.array_equal(b, pairs[k][which]) for b, k in zip(back, e))
    with pytest.raises(ValueError, match=f"on the {side}x{side} canvas"):
        arc.encode_grids(np.zeros((1, side + 1, 1), np.uint8), canvas=side)
    with pytest.raises(ValueError, match="no square canvas"):
        arc.decode_grids(np.zeros((1, side * side + 1), np.uint8))


def test_grids_that_do_not_fit_are_refused():
    with pytest.raises(ValueError, match="does not fit"):
        arc.encode_grids(np.zeros((1, 5, 5), np.uint8), np.array([[26, 0]]))


def test_crop_matches_the_reference_scan_on_noisy_canvases():
    rng = np.random.default_rng(2)
    canvases = np.zeros((400, 30, 30), dtype=np.uint8)
    for canvas in canvases:
        h, w = rng.integers(1, 31, 2)
        canvas[:] = reference_encode(rng.integers(0, 10, (h, w)), 0, 0)
        noise = rng.random((30, 30)) < rng.choice([0, 0.002, 0.02, 0.2])       # predictions are messy
        canvas[noise] = rng.integers(0, 12, noise.sum())
    canvases[0] = 0                                         # nothing: an empty grid
    canvases[1] = 5                                         # colour everywhere: the whole canvas
    expected = np.array([reference_crop(c) for c in canvases])
    assert np.array_equal(arc.crop_sizes(canvases), expected)
    assert tuple(expected[0]) == (0, 0) and tuple(expected[1]) == (30, 30)
    decoded = arc.decode_grids(canvases[:3].reshape(3, -1))
    assert decoded[0].shape == (0, 0) and decoded[1].shape == (30, 30) and (decoded[1] == 3).all()


def test_colour_maps_fix_black_and_invert():
    maps = arc.random_colour_maps(np.random.default_rng(3), 500)
    assert (maps[:, 0] == 0).all()
    assert (np.sort(maps, axis=1) == np.arange(10)).all()
    inverse = arc.inverse_colour_map(maps)
    assert (np.take_along_axis(inverse, maps.astype(np.int64), axis=1) == np.arange(10)).all()
    assert len({m.tobytes() for m in maps}) > 490                       # not a fixed or tiny set


def content_digest(task, dihedral, colour_map):
    """The version built for real: every grid transformed, hashed in order."""
    h = hashlib.sha256()
    for grid in task.grids():
        moved = arc.transform_grids(grid, int(dihedral), colour_map)
        h.update(np.array(moved.shape).tobytes() + np.ascontiguousarray(moved).tobytes())
    return h.digest()


def test_version_keys_equal_exactly_when_contents_are_equal(tasks):
    """Checked against built versions on tasks with few colours and symmetric grids, where duplicates
    are common, and on ordinary ones."""
    by_id = {t.task_id: t for t in tasks}
    rng = np.random.default_rng(4)
    chosen = ["8be77c9e", "3c9b0459", "6150a2bd", "007bbfb7", "a416b8f3", "0d3d703e", "44f52bb0"]
    for task_id in chosen:
        task = by_id[task_id]
        dihedral = rng.integers(0, NUM_DIHEDRAL, 400)
        maps = arc.random_colour_maps(rng, 400)
        maps[:50, 1:] = np.arange(1, 10)                      # plenty of repeats of the identity colours
        keys = arc.VersionKeys(task)(dihedral, maps)
        digests = [content_digest(task, d, m) for d, m in zip(dihedral, maps)]
        same_key = keys[:, None] == keys[None, :]
        same_content = np.array([[a == b for b in digests] for a in digests])
        assert np.array_equal(same_key, same_content), task_id


def test_dedup_caps_a_one_colour_task_at_72_versions(tasks):
    task = next(t for t in tasks if t.task_id == "8be77c9e")
    assert len({int(c) for g in task.grids() for c in np.unique(g)} - {0}) == 1
    dihedral, maps = arc.plan_versions(task, 1000, np.random.default_rng(5))
    assert len(dihedral) == 72
    assert dihedral[0] == 0 and np.array_equal(maps[0], np.arange(10))            # the original first
    assert len({content_digest(task, d, m) for d, m in zip(dihedral, maps)}) == 72


def test_plans_are_distinct_full_and_seeded(tasks):
    task = next(t for t in tasks if t.task_id == "007bbfb7")
    dihedral, maps = arc.plan_versions(task, 50, np.random.default_rng(6))
    assert len(dihedral) == 51 and len({content_digest(task, d, m) for d, m in zip(dihedral, maps)}) == 51
    again = arc.plan_versions(task, 50, np.random.default_rng(6))
    assert np.array_equal(again[0], dihedral) and np.array_equal(again[1], maps)
    assert len(arc.plan_versions(task, 0, np.random.default_rng(6))[0]) == 1


def test_translation_offsets_fit_both_grids_and_keep_one_reference_example():
    rng = np.random.default_rng(7)
    shapes = np.array([[[3, 20], [25, 4]], [[30, 1], [1, 1]], [[5, 5], [6, 7]], [[2, 29], [2, 29]]])
    dihedral = np.arange(NUM_DIHEDRAL).repeat(50)
    offsets = arc.translation_offsets(rng, dihedral, shapes)
    assert offsets.shape == (400, 4, 2)
    for v, d in enumerate(dihedral):
        for e, (in_shape, out_shape) in enumerate(shapes):
            for shape in (in_shape, out_shape):
                h, w = dihedral_transform(np.zeros(shape), d).shape
                assert offsets[v, e, 0] + h <= 30 and offsets[v, e, 1] + w <= 30
    assert ((offsets == 0).all(axis=2).sum(axis=1) >= 1).all()
    assert offsets[:, 2].max() > 20                                            # they do move


def test_encode_versions_writes_version_major_rows(tasks):
    task = next(t for t in tasks if t.task_id == "007bbfb7")
    pairs = task.train + task.test
    rng = np.random.default_rng(8)
    dihedral, maps = arc.plan_versions(task, 20, rng)
    shapes = np.array([[i.shape, o.shape] for i, o in pairs])
    offsets = arc.translation_offsets(rng, dihedral, shapes)
    n = len(dihedral) * len(pairs)
    inputs, labels = np.zeros((n + 3, 900), np.uint8), np.zeros((n + 3, 900), np.uint8)
    arc.encode_versions(pairs, dihedral, maps, offsets, inputs, labels, first_row=3)
    assert not inputs[:3].any() and not labels[:3].any()
    for v in range(len(dihedral)):
        for e, (inp, out) in enumerate(pairs):
            row = 3 + v * len(pairs) + e
            for grid, canvases in ((inp, inputs), (out, labels)):
                moved = arc.transform_grids(grid, int(dihedral[v]), maps[v])
                assert np.array_equal(canvases[row].reshape(30, 30), reference_encode(moved, *offsets[v, e]))


@pytest.mark.parametrize("mutate,where,reason", [
    (lambda t: t["train"][1].__setitem__("input", [[1] * 31] * 2), "train pair 1", "input grid is 2x31"),
    (lambda t: t["train"][0]["input"][0].__setitem__(0, 10), "train pair 0", "colour 10"),
    (lambda t: t["test"][0]["input"].__setitem__(1, [0]), "test pair 0", "rectangular"),
    (lambda t: t["train"][2].pop("output"), "train pair 2", "no 'output'"),
    (lambda t: t["train"][0].__setitem__("output", [[-1]]), "train pair 0", "colour -1"),
    (lambda t: t["train"][0].__setitem__("output", [[1.5]]), "train pair 0", "integer"),
    (lambda t: t["train"][0].__setitem__("output", []), "train pair 0", "non-empty"),
    (lambda t: t["train"][0].__setitem__("output", [[0]] * 31), "train pair 0", "31x1"),
    (lambda t: t.__setitem__("test", []), "", "at least one"),
])
def test_validation_names_task_pair_and_reason(mutate, where, reason):
    grid = [[0, 1, 2], [3, 4, 5]]
    raw = {"train": [{"input": [r[:] for r in grid], "output": [r[:] for r in grid]} for _ in range(3)],
           "test": [{"input": [r[:] for r in grid], "output": [r[:] for r in grid]}]}
    assert len(arc.parse_task("abcd1234", json.loads(json.dumps(raw))).train) == 3
    mutate(raw)
    with pytest.raises(arc.ArcTaskError) as err:
        arc.parse_task("abcd1234", raw)
    assert str(err.value).startswith(f"task abcd1234, {where}" if where else "task abcd1234")
    assert reason in str(err.value)


def test_test_outputs_all_or_none():
    raw = {"train": [{"input": [[1]], "output": [[2]]}], "test": [{"input": [[1]]}, {"input": [[3]], "output": [[4]]}]}
    with pytest.raises(arc.ArcTaskError, match="test pair 0: has no 'output'"):
        arc.parse_task("t", raw)
    raw["test"][1].pop("output")
    assert not arc.parse_task("t", raw).has_test_outputs
    with pytest.raises(arc.ArcTaskError, match="2 test inputs but 1 solution"):
        arc.parse_task("t", raw, [[[4]]])
    assert arc.parse_task("t", raw, [[[4]], [[5]]]).test[1][1].tolist() == [[5]]


def test_task_digest_ignores_pair_order(tasks):
    task = next(t for t in tasks if t.task_id == "007bbfb7")
    shuffled = arc.ArcTask("other", task.train[::-1], task.test)
    assert arc.task_digest(shuffled) == arc.task_digest(task)
    changed = arc.ArcTask("other", task.train[1:], task.test)
    assert arc.task_digest(changed) != arc.task_digest(task)
