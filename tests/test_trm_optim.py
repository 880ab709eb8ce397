"""Adam-atan2, sparse sign-SGD, the schedule and the EMA against hand-computed updates."""
import math

import pytest
import torch

from tests import tiny
from tests.test_trm_model import one_thread  # noqa: F401 (autouse: one torch thread)
from trm import EMA, TRM, AdamAtan2, SparseSignSGD, build_optimizers, lr_at, set_lr
from trm.puzzle_embedding import PuzzleEmbedding


def test_adam_atan2_follows_the_formula():
    lr, b1, b2, wd = 0.1, 0.9, 0.95, 0.2
    p = torch.nn.Parameter(torch.tensor([1.0, -2.0, 0.5]))
    optimizer = AdamAtan2([p], lr=lr, betas=(b1, b2), weight_decay=wd)
    grads = [[0.3, -1.0, 0.0], [-0.2, 4.0, 1e-3]]
    expected, m, v = [1.0, -2.0, 0.5], [0.0] * 3, [0.0] * 3
    for t, g in enumerate(grads, start=1):
        p.grad = torch.tensor(g)
        optimizer.step()
        for i in range(3):
            expected[i] *= 1 - lr * wd
            m[i] = b1 * m[i] + (1 - b1) * g[i]
            v[i] = b2 * v[i] + (1 - b2) * g[i] ** 2
            expected[i] -= lr * math.atan2(m[i] / (1 - b1 ** t), math.sqrt(v[i]) / math.sqrt(1 - b2 ** t))
        torch.testing.assert_close(p.detach(), torch.tensor(expected), rtol=1e-6, atol=1e-7)


def test_sparse_sign_sgd_sums_duplicates_and_touches_only_batch_rows():
    embedding = PuzzleEmbedding(4, 3)
    with torch.no_grad():
        embedding.weights.copy_(torch.arange(12.0).view(4, 3))
    before = embedding.weights.clone()
    ids = torch.tensor([1, 3, 1])
    out = embedding(ids, torch.float32)
    # row 1 appears twice: grads (+1, -0.5, 0) and (-3, +1, 0) sum to (-2, +0.5, 0); sign (-1, +1, 0)
    out.backward(torch.tensor([[1.0, -0.5, 0.0], [2.0, -2.0, 0.5], [-3.0, 1.0, 0.0]]))
    lr, wd = 0.1, 0.5
    optimizer = SparseSignSGD(embedding, lr=lr, weight_decay=wd)
    optimizer.step()
    expected = before.clone()
    expected[1] = before[1] * (1 - lr * wd) - lr * torch.tensor([-1.0, 1.0, 0.0])
    expected[3] = before[3] * (1 - lr * wd) - lr * torch.tensor([1.0, -1.0, 1.0])
    torch.testing.assert_close(embedding.weights, expected)  # rows 0 and 2 neither move nor decay
    optimizer.zero_grad()
    assert embedding.local_weights.grad is None


def test_puzzle_embedding_reads_the_table_without_gradient_in_eval():
    embedding = PuzzleEmbedding(3, 2).eval()
    out = embedding(torch.tensor([2]), torch.float32)
    assert not out.requires_grad


def test_build_optimizers_splits_network_and_table():
    model = TRM(tiny.unit_model(), verbose=False)
    adam, sign = build_optimizers(model, lr=1e-3, puzzle_emb_lr=1e-2)
    assert isinstance(adam, AdamAtan2) and isinstance(sign, SparseSignSGD)
    assert sum(p.numel() for p in adam.param_groups[0]["params"]) == model.num_params()[0]
    assert sign.param_groups[0]["params"][0] is model.puzzle_emb.weights
    assert len(build_optimizers(TRM(tiny.unit_model(puzzle_emb_ndim=0), verbose=False))) == 1


def test_schedule_warms_up_then_follows_the_cosine():
    assert lr_at(1, 1.0, 10, 110) == pytest.approx(0.1)
    assert lr_at(10, 1.0, 10, 110) == pytest.approx(1.0)
    assert lr_at(60, 1.0, 10, 110, lr_min_ratio=0.1) == pytest.approx(0.1 + 0.9 * 0.5)
    assert lr_at(110, 1.0, 10, 110, lr_min_ratio=0.1) == pytest.approx(0.1)
    assert lr_at(60, 1.0, 10, 110, lr_min_ratio=1.0) == pytest.approx(1.0)  # the reference's setting
    optimizers = build_optimizers(TRM(tiny.unit_model(), verbose=False), lr=2e-4, puzzle_emb_lr=1e-2)
    assert set_lr(optimizers, 5, 10, 100) == pytest.approx(1e-4)
    assert optimizers[1].param_groups[0]["lr"] == pytest.approx(5e-3)  # same factor for both


def test_ema_averages_parameters_but_not_buffers():
    model = TRM(tiny.unit_model(), verbose=False)
    ema = EMA(model, rate=0.9)
    start = model.lm_head.weight.detach().clone()
    with torch.no_grad():
        model.lm_head.weight.add_(1.0)
        model.puzzle_emb.weights.fill_(3.0)
    ema.update(model)
    averaged = ema.copy_model(model)
    torch.testing.assert_close(averaged.lm_head.weight, start + 0.1)
    assert torch.equal(averaged.puzzle_emb.weights, model.puzzle_emb.weights)
    assert averaged.puzzle_emb.weights.data_ptr() == model.puzzle_emb.weights.data_ptr()   # shared, not copied
    assert averaged.lm_head.weight.data_ptr() != model.lm_head.weight.data_ptr()
    assert "puzzle_emb.weights" not in ema.shadow and "H_init" not in ema.shadow
    torch.testing.assert_close(model.lm_head.weight, start + 1.0)  # the live model is untouched
