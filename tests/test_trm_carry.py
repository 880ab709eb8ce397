"""refill: halted slots take the next examples in order; the others keep their carry."""
import pytest
import torch

from tests import tiny
from tests.test_trm_model import (
    examples,
    one_thread,  # noqa: F401 (autouse: one torch thread)
)
from trm import TRM, refill


def test_refill_keeps_running_slots_and_resets_halted_ones():
    config = tiny.unit_model(halt_max_steps=5)
    model = TRM(config, verbose=False).eval()
    carry, _ = model(refill(model.empty_carry(4), examples(config, 4, seed=1)))
    carry, _ = model(carry)
    carry.halted = torch.tensor([True, False, True, False])
    new = examples(config, 2, seed=2)
    refilled = refill(carry, new)
    kept = torch.tensor([1, 3])
    for name in ("y", "z", "steps", "inputs", "labels", "puzzle_identifiers"):
        assert torch.equal(getattr(refilled, name)[kept], getattr(carry, name)[kept]), name
    for slot, row in ((0, 0), (2, 1)):
        assert torch.equal(refilled.inputs[slot], new["inputs"][row])
        assert torch.equal(refilled.labels[slot], new["labels"][row])
        assert refilled.puzzle_identifiers[slot] == new["puzzle_identifiers"][row]
    assert refilled.steps.tolist() == [0, 2, 0, 2]
    assert not refilled.halted.any()
    assert carry.halted.tolist() == [True, False, True, False]  # the argument is not modified
    # a refilled slot computes exactly what a brand-new carry with the same example computes
    _, out = model(refilled)
    _, fresh = model(refill(model.empty_carry(2), new))
    torch.testing.assert_close(out.logits[torch.tensor([0, 2])], fresh.logits)


def test_refill_needs_one_row_per_halted_slot():
    config = tiny.unit_model()
    model = TRM(config, verbose=False)
    with pytest.raises(ValueError, match="4 halted slots but 3 rows"):
        refill(model.empty_carry(4), examples(config, 3))
    with pytest.raises(ValueError, match="lack 'labels'"):
        refill(model.empty_carry(1), {"inputs": torch.zeros(1, 9), "puzzle_identifiers": torch.zeros(1)})


def test_refill_with_nothing_halted_is_identity():
    config = tiny.unit_model()
    model = TRM(config, verbose=False)
    carry, _ = model(refill(model.empty_carry(2), examples(config, 2)))
    carry.halted[:] = False
    assert refill(carry, examples(config, 0)) is carry
