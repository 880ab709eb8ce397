"""The compiled supervision step (`trm.compile`): one graph, the eager step's numbers, the bf16 path, the FLOP count."""
import pytest
import torch

from tests import tiny
from tests.test_trm_model import examples
from trm import TRM, build_optimizers, evaluate_batch, refill
from trm.compile import SupervisionStep, compile_pays
from trm.config import TRMConfig
from trm.flops import inference_step_flops_per_sample, train_step_flops_per_sample

pytestmark = pytest.mark.slow   # compiles, trains or starts Ray: not in the quick subset

# The smallest graph with every part (2 rounds, one block; exploration on: its draws must match between eager
# and compiled): compiling costs seconds on a quiet CPU.
CONFIG = tiny.unit_model(L_layers=1, L_cycles=1, halt_exploration_prob=0.5)
BATCH, STEPS = 8, 20


def train(config: TRMConfig, compiled: bool, steps: int = STEPS, threads: int = 1) -> tuple[list, TRM]:
    """Losses of `steps` training steps from seed 0 (fresh examples for the halted slots), and the model."""
    threads_before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        torch.manual_seed(0)
        model = TRM(config, verbose=False)
        optimizers = build_optimizers(model, lr=1e-3)
        step = SupervisionStep(model, loss=True, compiled=compiled)
        carry, losses = model.empty_carry(BATCH), []
        for i in range(steps):
            halted = carry.halted.clone()
            rows = examples(config, int(halted.sum()), seed=i)
            carry, _, loss, _ = step(refill(carry, rows, halted=halted))
            loss.backward()
            for optimizer in optimizers:
                optimizer.step()
                optimizer.zero_grad()
            losses.append(loss.item())
        return losses, model
    finally:
        torch.set_num_threads(threads_before)


@pytest.fixture(scope="module")
def compiled_run():
    deterministic = torch.are_deterministic_algorithms_enabled()
    yield train(CONFIG, compiled=True, threads=2)
    torch.use_deterministic_algorithms(deterministic)     # a compiled CPU step turns it on for the process


def test_compiled_training_matches_eager_and_is_one_graph(compiled_run):
    """fullgraph=True: a graph break would raise here. 20 steps from one seed give the eager losses within
    1e-5 relative (compiled kernels fuse and reorder float sums, so not bit for bit)."""
    eager, _ = train(CONFIG, compiled=False)
    compiled, _ = compiled_run
    assert len(compiled) == STEPS
    for step, (e, c) in enumerate(zip(eager, compiled)):
        assert abs(c - e) <= 1e-5 * abs(e), (step, e, c)


def test_compiled_training_is_reproducible_on_two_threads(compiled_run):
    """The same compiled run twice: the same weights bit for bit (inductor's CPU scatter-adds are atomic
    across threads unless deterministic mode is on)."""
    _, first = compiled_run
    _, second = train(CONFIG, compiled=True, steps=STEPS, threads=2)
    for (name, a), b in zip(first.state_dict().items(), second.state_dict().values()):
        assert torch.equal(a, b), name


def test_compiled_evaluation_answers_as_eager(compiled_run):
    """All N_sup steps through the compiled step, with the batch padded to one shape: the eager answers."""
    _, model = compiled_run
    batch = examples(CONFIG, 5, seed=99)
    eager = evaluate_batch(model, batch)
    compiled = evaluate_batch(model, batch, step=SupervisionStep(model, loss=False, compiled=True), pad_to=BATCH)
    assert torch.equal(compiled.preds, eager.preds) and torch.equal(compiled.exact, eager.exact)
    assert torch.equal(compiled.answer_step, eager.answer_step) and compiled.count == eager.count
    assert compiled.per_step["preds"].shape == eager.per_step["preds"].shape
    torch.testing.assert_close(compiled.q_halt, eager.q_halt, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(compiled.per_step["exact_accuracy"], eager.per_step["exact_accuracy"])


def test_bfloat16_forward_trains_and_evaluates_close_to_float32():
    """The dtype CUDA takes (forward_dtype=auto there), run here: same initial weights, the first steps'
    losses within bfloat16's precision of float32's, and evaluation answers mostly the same."""
    f32, model32 = train(tiny.unit_model(forward_dtype="float32"), compiled=False, steps=3)
    bf16, model16 = train(tiny.unit_model(forward_dtype="bfloat16"), compiled=False, steps=3)
    assert model16.forward_dtype == torch.bfloat16
    for a, b in zip(f32, bf16):
        assert abs(a - b) <= 0.02 * abs(a), (a, b)     # bfloat16 keeps 8 bits of mantissa: ~0.4 % per op
    batch = examples(model16.config, 16, seed=5)
    result16, result32 = evaluate_batch(model16, batch), evaluate_batch(model32, batch)
    assert result16.per_step["q_halt"].dtype == torch.float32
    assert (result16.preds == result32.preds).float().mean() >= 0.9


def test_auto_compiles_on_cuda_and_on_cpu_for_small_models():
    small, paper = tiny.unit_model(), tiny.unit_model(hidden_size=512, num_heads=8)
    assert compile_pays("auto", torch.device("cuda"), paper) and compile_pays("auto", torch.device("cpu"), small)
    assert not compile_pays("auto", torch.device("cpu"), paper) and not compile_pays("auto", torch.device("mps"), small)
    assert not compile_pays("false", torch.device("cuda"), small) and compile_pays(True, torch.device("cpu"), paper)
    with pytest.raises(ValueError, match="auto, true or false"):
        compile_pays("sometimes", torch.device("cpu"), small)


def test_flops_of_the_paper_arc_step_by_hand():
    """ARC at the paper's size: per position and block 4 D^2 (q, k, v, out) + 2 L D (scores, weighted sum)
    + 3 D W (SwiGLU, W = 1536) multiply-adds; 2 blocks; 15 forward passes + 2 x 5 with gradient; lm_head
    forward + backward."""
    c = TRMConfig(seq_len=900, vocab_size=12, num_puzzle_identifiers=1, hidden_size=512, num_heads=8,
                  H_cycles=3, L_cycles=4)
    per_pass = 2 * 2 * 916 * (4 * 512 * 512 + 2 * 916 * 512 + 3 * 512 * 1536)
    head = 3 * 2 * 900 * 512 * 12
    assert train_step_flops_per_sample(c) == per_pass * 25 + head
    assert 0.39e12 < train_step_flops_per_sample(c) < 0.41e12          # the anchor: ~0.40 TFLOP
    assert inference_step_flops_per_sample(c) == per_pass * 15 + head / 3
    mlp = TRMConfig(seq_len=81, vocab_size=11, num_puzzle_identifiers=1, mlp_t=True, pos_encodings="none")
    per_pass = 2 * 2 * (3 * 97 * 512 * 512 + 3 * 512 * 1536 * 97)     # token MLP W = 512 over 97 positions
    assert train_step_flops_per_sample(mlp) == per_pass * (21 + 14) + 3 * 2 * 81 * 512 * 11
