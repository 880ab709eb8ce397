"""Row-keyed noise: the hash is lowbias32 bit for bit, a row's draws depend on its key alone, and they are N(0, 1)."""
import numpy as np
import torch

from trm.noise import RowKeyedNormal, mix32


def _lowbias32(x: np.ndarray) -> np.ndarray:      # the published uint32 hash, in numpy's unsigned arithmetic
    x = x.astype(np.uint32)
    x ^= x >> np.uint32(16)
    x *= np.uint32(0x7FEB352D)
    x ^= x >> np.uint32(15)
    x *= np.uint32(0x846CA68B)
    x ^= x >> np.uint32(16)
    return x


def test_mix32_is_lowbias32_on_every_bit_pattern():
    values = np.random.default_rng(0).integers(0, 2**32, 100_000, dtype=np.uint64).astype(np.uint32)
    values[:4] = [0, 1, 2**31, 2**32 - 1]
    ours = mix32(torch.from_numpy(values.view(np.int32).copy())).numpy().view(np.uint32)
    assert np.array_equal(ours, _lowbias32(values))


def test_a_rows_noise_depends_on_its_key_and_the_call_only():
    shape = (3, 5, 7)
    batch = RowKeyedNormal(torch.tensor([11, 2**32 + 22, 33]))      # keys are taken modulo 2**32
    alone = RowKeyedNormal(torch.tensor([33, 22]))
    first, second = batch(shape, "cpu", torch.float32), batch(shape, "cpu", torch.float32)
    assert torch.equal(first[2], alone((2, 5, 7), "cpu", torch.float32)[0])
    assert torch.equal(first[1], alone((2, 5, 7), "cpu", torch.float32)[1]) is False   # alone's 2nd call
    assert torch.equal(first[1], RowKeyedNormal(torch.tensor([22]))((1, 5, 7), "cpu", torch.float32)[0])
    assert not torch.equal(first, second)                                              # each call draws anew
    assert batch((3, 2), "cpu", torch.bfloat16).dtype == torch.bfloat16


def test_the_draws_are_standard_normal_and_independent_across_keys():
    draws = RowKeyedNormal(torch.arange(200))((200, 5000), "cpu", torch.float32)
    assert abs(draws.mean().item()) < 0.01 and abs(draws.std().item() - 1) < 0.01
    assert abs((draws ** 4).mean().item() - 3) < 0.05                 # the normal's kurtosis
    share = (draws.abs() > 1.959964).float().mean().item()
    assert abs(share - 0.05) < 0.003                                    # its two-sided 5% tail
    correlations = torch.corrcoef(draws[:20])[~torch.eye(20, dtype=torch.bool)]
    assert correlations.abs().max() < 0.06
    assert abs(torch.corrcoef(torch.stack([draws[0, :-1], draws[0, 1:]]))[0, 1]) < 0.05   # neighbours too
