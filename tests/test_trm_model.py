"""The TRM network: reference parameter counts, shapes, layout, recursion gradients and halting."""
import math

import pytest
import torch

from tests import tiny
from trm import TRM, TRMConfig, refill
from trm.noise import RowKeyedNormal


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny models gain nothing from threads, and on a shared 2-core box threads contend (2-3x slower)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


SIZE_CHECK = dict(hidden_size=512, num_heads=8, expansion=4, L_layers=2, puzzle_emb_len=16, num_puzzle_identifiers=1)


@pytest.mark.parametrize("data, variant, expected", [
    (dict(seq_len=81, vocab_size=11), dict(), 6_828_034),
    (dict(seq_len=81, vocab_size=11), dict(mlp_t=True, pos_encodings="none"), 5_028_866),
    (dict(seq_len=900, vocab_size=12), dict(), 6_829_058),
])
def test_parameter_counts_match_the_reference(data, variant, expected, capsys):
    model = TRM(TRMConfig(**SIZE_CHECK, **data, **variant))
    assert model.num_params() == (expected, 512)
    assert f"{expected:,} network parameters" in capsys.readouterr().out


def examples(config: TRMConfig, batch: int, seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    return dict(inputs=torch.randint(0, config.vocab_size, (batch, config.seq_len), generator=g),
                labels=torch.randint(1, config.vocab_size, (batch, config.seq_len), generator=g),
                puzzle_identifiers=torch.randint(0, config.num_puzzle_identifiers, (batch,), generator=g))


@pytest.mark.parametrize("variant", [
    dict(), dict(pos_encodings="learned"), dict(pos_encodings="none"), dict(mlp_t=True, pos_encodings="none"),
    dict(puzzle_emb_ndim=0), dict(puzzle_emb_ndim=40),
])
def test_shapes_for_each_variant(variant):
    config = tiny.unit_model(**variant)
    model = TRM(config, verbose=False)
    carry, out = model(refill(model.empty_carry(5), examples(config, 5)))
    length = config.seq_len + (0 if config.emb_ndim == 0 else config.puzzle_emb_len)
    assert carry.y.shape == carry.z.shape == (5, length, config.hidden_size)
    assert out.logits.shape == (5, config.seq_len, config.vocab_size)
    assert out.q_halt.shape == (5,) and out.q_halt.dtype == torch.float32
    assert carry.steps.tolist() == [1] * 5


def test_only_prefix_position_zero_carries_the_puzzle_embedding():
    config = tiny.unit_model()
    model = TRM(config, verbose=False)
    model.puzzle_emb.weights.normal_()
    ids = torch.tensor([2, 0])
    x = model.embed(torch.zeros(2, config.seq_len, dtype=torch.long), ids)
    torch.testing.assert_close(x[:, 0], math.sqrt(config.hidden_size) * model.puzzle_emb.weights[ids])
    assert torch.count_nonzero(x[:, 1:config.puzzle_emb_len]) == 0
    torch.testing.assert_close(x[:, config.puzzle_emb_len:],
                               math.sqrt(config.hidden_size) * model.embed_tokens.weight[0].expand(2, config.seq_len, -1))


def test_q_head_starts_far_from_halting():
    model = TRM(tiny.unit_model(), verbose=False)
    _, out = model(refill(model.empty_carry(4), examples(model.config, 4)))
    torch.testing.assert_close(torch.sigmoid(out.q_halt), torch.full((4,), 1 / (1 + math.exp(5))))


@pytest.mark.parametrize("T, reaches_start", [(2, False), (3, False), (1, True)])
def test_gradient_flows_only_through_the_last_round(T, reaches_start):
    config = tiny.unit_model(H_cycles=T)
    model = TRM(config, verbose=False)
    carry = refill(model.empty_carry(2), examples(config, 2))
    carry.steps.fill_(1)  # continue from the given y, z instead of the initial states
    carry.y = torch.randn_like(carry.y).requires_grad_()
    carry.z = torch.randn_like(carry.z).requires_grad_()
    start_y, start_z = carry.y, carry.z
    new_carry, out = model(carry)
    (out.logits.float().square().sum() + out.q_halt.sum()).backward()
    # With T > 1 the first round runs without gradient, so nothing reaches the incoming y, z;
    # with T = 1 the only round has gradient (this case shows the check can fail).
    assert (start_y.grad is not None) == reaches_start
    assert (start_z.grad is not None) == reaches_start
    assert model.net.layers[0].mlp.down_proj.weight.grad is not None
    assert not new_carry.y.requires_grad and not new_carry.z.requires_grad
    assert model.H_init.grad is None and not model.H_init.requires_grad


def test_network_calls_with_and_without_gradient():
    config = tiny.unit_model(H_cycles=3, L_cycles=4)
    model = TRM(config, verbose=False)
    modes = []
    model.net.register_forward_pre_hook(lambda module, args: modes.append(torch.is_grad_enabled()))
    model(refill(model.empty_carry(2), examples(config, 2)))
    n, T = config.L_cycles, config.H_cycles
    assert modes == [False] * ((T - 1) * (n + 1)) + [True] * (n + 1)


def test_fresh_slot_starts_from_the_initial_states():
    config = tiny.unit_model()
    model = TRM(config, verbose=False).eval()
    batch = examples(config, 3)
    carry = refill(model.empty_carry(3), batch)
    carry.y = torch.randn_like(carry.y)  # ignored: steps == 0
    _, out_a = model(carry)
    _, out_b = model(refill(model.empty_carry(3), batch))
    torch.testing.assert_close(out_a.logits, out_b.logits)


def test_latent_noise_off_is_the_plain_step_bit_for_bit():
    config = tiny.unit_model()
    model = TRM(config, verbose=False).eval()
    carry = refill(model.empty_carry(4), examples(config, 4))
    plain_carry, plain = model(carry)
    for noise_std in (None, 0.0):
        noisy_carry, out = model(carry, noise_std, torch.Generator().manual_seed(0))
        assert torch.equal(out.logits, plain.logits) and torch.equal(out.q_halt, plain.q_halt)
        assert torch.equal(noisy_carry.z, plain_carry.z) and torch.equal(noisy_carry.y, plain_carry.y)


def test_latent_noise_is_what_the_source_draws_per_example():
    config = tiny.unit_model(H_cycles=1, L_cycles=1, hidden_size=64)   # one z-update: z = net(z, y + x) + noise
    model = TRM(config, verbose=False).eval()
    one = examples(config, 1)
    carry = refill(model.empty_carry(2), {k: torch.cat([v, v]) for k, v in one.items()})   # one puzzle, twice
    clean, _ = model(carry)
    first, out_a = model(carry, 0.5, RowKeyedNormal(torch.tensor([3, 4])))
    again, out_b = model(carry, 0.5, RowKeyedNormal(torch.tensor([3, 4])))
    other, _ = model(carry, 0.5, RowKeyedNormal(torch.tensor([5, 4])))
    assert torch.equal(first.z, again.z) and torch.equal(out_a.logits, out_b.logits)
    assert not torch.equal(first.z[0], other.z[0]) and torch.equal(first.z[1], other.z[1])   # per example
    drawn = (first.z - clean.z).float()
    expected = 0.5 * RowKeyedNormal(torch.tensor([3, 4]))(drawn.shape, drawn.device, torch.float32)
    torch.testing.assert_close(drawn, expected, atol=1e-5, rtol=1e-4)   # the noise is exactly what the source draws
    a, b = drawn[0].flatten(), drawn[1].flatten()
    assert abs(torch.corrcoef(torch.stack([a, b]))[0, 1]) < 0.1          # the two copies' noise is independent
    assert not torch.equal(out_a.logits[0], out_a.logits[1])


def test_eval_runs_every_step_and_training_halts_on_q():
    config = tiny.unit_model(halt_max_steps=4, halt_exploration_prob=0.0)
    model = TRM(config, verbose=False)
    with torch.no_grad():
        model.q_head.bias.fill_(5.0)  # q_halt > 0 everywhere
    carry = refill(model.empty_carry(3), examples(config, 3))
    model.eval()
    halted = []
    for _ in range(4):
        carry, _ = model(carry)
        halted.append(carry.halted.tolist())
    assert halted == [[False] * 3] * 3 + [[True] * 3]
    model.train()
    carry, _ = model(refill(model.empty_carry(3), examples(config, 3)))
    assert carry.halted.all()


def test_exploration_imposes_a_minimum_of_two_steps():
    config = tiny.unit_model(halt_max_steps=4, halt_exploration_prob=1.0)
    model = TRM(config, verbose=False).train()
    with torch.no_grad():
        model.q_head.bias.fill_(5.0)
    torch.manual_seed(0)
    carry, _ = model(refill(model.empty_carry(64), examples(config, 64)))
    assert not carry.halted.any()  # every slot explores, and m >= 2
    carry, _ = model(carry)
    first_halts = carry.halted.float().mean()
    assert 0.1 < first_halts < 0.6  # m = 2 with probability 1/3


def test_bfloat16_forward_and_backward():
    config = tiny.unit_model(forward_dtype="bfloat16")
    model = TRM(config, verbose=False)
    carry, out = model(refill(model.empty_carry(2), examples(config, 2)))
    assert carry.y.dtype == out.logits.dtype == torch.bfloat16
    assert model.lm_head.weight.dtype == torch.float32  # float32 masters for the optimiser
    (out.logits.float().sum() + out.q_halt.sum()).backward()
    assert torch.isfinite(model.lm_head.weight.grad).all()


def test_learned_positions_use_the_reference_scale_bit_for_bit():
    """The reference scales (tokens + learned positions) by the literal 0.707106781, not 1/sqrt(2)."""
    config = tiny.unit_model(pos_encodings="learned", puzzle_emb_ndim=0)
    model = TRM(config, verbose=False)
    model.embed_pos.weight.data.normal_()
    inputs = examples(config, 3)["inputs"]
    expected = math.sqrt(config.hidden_size) * (
        0.707106781 * (model.embed_tokens(inputs, torch.float32) + model.embed_pos.weight))
    assert torch.equal(model.embed(inputs, torch.zeros(3, dtype=torch.long)), expected)
