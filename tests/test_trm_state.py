"""Training state: a save/load round trip resumes exactly (weights_only loading)."""
import io

import torch

from tests import tiny
from tests.test_trm_model import (
    examples,
    one_thread,  # noqa: F401 (autouse: one torch thread)
)
from trm import EMA, TRM, act_loss, build_optimizers, load_training_state, refill, set_lr, training_state


def train(model, optimizers, ema, carry, first_step, last_step, seed):
    config = model.config
    losses = []
    for step in range(first_step, last_step + 1):
        need = int(carry.halted.sum())
        carry = refill(carry, examples(config, need, seed=seed + step))
        carry, out = model(carry)
        loss, _ = act_loss(out, carry, config)
        loss.backward()
        set_lr(optimizers, step, 2, last_step)
        for optimizer in optimizers:
            optimizer.step()
            optimizer.zero_grad()
        ema.update(model)
        losses.append(loss.item())
    return carry, losses


def build(config):
    model = TRM(config, verbose=False)
    return model, build_optimizers(model, lr=1e-2), EMA(model, rate=0.9)


def test_round_trip_resumes_exactly():
    config = tiny.unit_model(halt_max_steps=3, halt_exploration_prob=0.5)
    torch.manual_seed(0)
    model, optimizers, ema = build(config)
    carry, _ = train(model, optimizers, ema, model.empty_carry(6), 1, 4, seed=10)
    buffer = io.BytesIO()
    torch.save(training_state(model, optimizers, 4, ema=ema, carry=carry), buffer)
    _, expected = train(model, optimizers, ema, carry, 5, 9, seed=10)

    torch.manual_seed(123)  # a different init and generator state, all overwritten by the load
    model2, optimizers2, ema2 = build(config)
    buffer.seek(0)
    step, carry2 = load_training_state(torch.load(buffer, weights_only=True), model2, optimizers2, ema=ema2)
    assert step == 4
    _, resumed = train(model2, optimizers2, ema2, carry2, 5, 9, seed=10)
    assert resumed == expected
    for (name, a), b in zip(model.state_dict().items(), model2.state_dict().values()):
        assert torch.equal(a, b), name
    for name in ema.shadow:
        assert torch.equal(ema.shadow[name], ema2.shadow[name]), name
    assert len(set(expected)) > 1  # training moved
