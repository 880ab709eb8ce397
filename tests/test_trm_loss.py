"""Stablemax cross-entropy and the ACT loss against direct computations."""
import math

import torch
import torch.nn.functional as F

from trm import TRMConfig, TRMOutput, act_loss, softmax_cross_entropy, stablemax_cross_entropy
from trm.carry import Carry


def s(x: float) -> float:
    return 1.0 / (1.0 - x) if x < 0 else x + 1.0


def test_stablemax_matches_the_formula():
    logits = torch.tensor([[[-3.0, 0.0, 2.5, -0.5], [1.0, 1.0, -7.0, 0.25], [0.0, 0.0, 0.0, 0.0]]])
    labels = torch.tensor([[2, 3, -100]])
    loss = stablemax_cross_entropy(logits, labels)
    assert loss.dtype == torch.float64
    for t, label in enumerate(labels[0].tolist()[:2]):
        row = logits[0, t].tolist()
        expected = -math.log(s(row[label]) / sum(s(v) for v in row))
        assert math.isclose(loss[0, t].item(), expected, rel_tol=1e-12)
    assert loss[0, 2].item() == 0.0


def test_stablemax_gradient_is_finite_for_extreme_logits():
    logits = torch.tensor([[[-1e4, 0.0, 1e4]]], requires_grad=True)
    stablemax_cross_entropy(logits, torch.tensor([[0]])).sum().backward()
    assert torch.isfinite(logits.grad).all()


def test_softmax_option_is_plain_cross_entropy():
    logits = torch.randn(2, 3, 5)
    labels = torch.tensor([[1, -100, 4], [0, 2, 3]])
    loss = softmax_cross_entropy(logits, labels)
    assert loss[0, 1] == 0
    torch.testing.assert_close(loss[1], F.cross_entropy(logits[1], labels[1], reduction="none"))


def make_carry(labels, halted, steps):
    batch, length = labels.shape
    zeros = torch.zeros(batch, 1, 1)
    return Carry(y=zeros, z=zeros, steps=torch.tensor(steps, dtype=torch.int32), halted=torch.tensor(halted),
                 inputs=torch.zeros_like(labels), labels=labels, puzzle_identifiers=torch.zeros(batch, dtype=torch.long))


def test_act_loss_weights_and_metrics():
    config = TRMConfig(seq_len=3, vocab_size=4, num_puzzle_identifiers=1)
    labels = torch.tensor([[1, 2, 3], [1, 2, -100], [0, 0, 0], [-100, -100, -100]])
    logits = torch.full((4, 3, 4), -1.0)
    logits[0, torch.arange(3), torch.tensor([1, 2, 3])] = 2.0   # sample 0: all right
    logits[1, 0, 1] = 2.0                                       # sample 1: token 0 right, token 1 wrong
    logits[1, 1, 3] = 2.0
    logits[2, :, 1] = 2.0                                       # sample 2: all wrong
    q_halt = torch.tensor([1.0, -2.0, 0.5, -1.0])
    carry = make_carry(labels, [True, True, True, False], [3, 2, 1, 16])
    loss, metrics = act_loss(TRMOutput(logits=logits, q_halt=q_halt), carry, config)

    token = stablemax_cross_entropy(logits, labels)
    counts = torch.tensor([3, 2, 3, 1])  # the empty sample divides by 1
    lm = (token.sum(-1) / counts).sum()
    correct = torch.tensor([1.0, 0.0, 0.0, 1.0])  # no labels counts as correct
    bce = F.binary_cross_entropy_with_logits(q_halt, correct, reduction="sum")
    assert math.isclose(loss.item(), ((lm + 0.5 * bce) / 4).item(), rel_tol=1e-6)
    expected = dict(count=3, accuracy=1 + 0.5 + 0, exact_accuracy=1, q_halt_accuracy=1 + 1 + 0,
                    steps=3 + 2 + 1)
    for key, value in expected.items():
        assert math.isclose(metrics[key].item(), value, rel_tol=1e-6), key
    assert math.isclose(metrics["lm_loss"].item(), lm.item(), rel_tol=1e-6)
    assert math.isclose(metrics["q_halt_loss"].item(), bce.item(), rel_tol=1e-6)
