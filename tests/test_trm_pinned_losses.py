"""The first 10 losses of a seeded tiny training, pinned as numbers: any change to the model's or the loss's
math, the carry feeding, the optimisers or the schedule shows here at once, before any slow test runs.

Pure torch on `trm` (no Ray), on one CPU thread, float32. Tolerance: rtol 1e-4 (atol 1e-6). The same torch
build on the same machine repeats these bit for bit; another CPU's vector kernels may sum in another order,
a float32 rounding (~1e-7 relative) per operation that must not fail the test. Measured moves of the largest
relative change: x scaled by 1.001 in `TRM` 2.8e-4, the q_halt bias initialised at -4.99 instead of -5 1e-2
(both fail); rms_norm_eps 1e-6 instead of 1e-5 1.1e-6 (passes: a change below float32's reach is not seen).
If a change is meant to move them, rerun `python -m tests.test_trm_pinned_losses` and paste what it prints.
"""
import torch

from tests import tiny
from tests.test_trm_model import examples, one_thread  # noqa: F401 (autouse: one torch thread)
from trm import TRM, act_loss, build_optimizers, refill, set_lr

STEPS = 10
BATCH = 8
# (total loss, lm_loss sum, q_halt_loss sum) per step, from `losses()` at the commit that added this test
PINNED = [
    (1.708054780960083, 13.637577056884766, 0.053722381591796875),
    (1.6916007995605469, 13.505949020385742, 0.05371570587158203),
    (1.5872442722320557, 12.671517372131348, 0.0528721809387207),
    (1.528214693069458, 12.199235916137695, 0.052964210510253906),
    (1.6022188663482666, 12.791632652282715, 0.05223655700683594),
    (1.4544230699539185, 11.609135627746582, 0.052498817443847656),
    (1.4836275577545166, 11.843090057373047, 0.05186033248901367),
    (1.446969747543335, 11.55039119720459, 0.050734519958496094),
    (1.396636962890625, 11.148114204406738, 0.049963951110839844),
    (1.5281251668930054, 12.200424194335938, 0.049153804779052734),
]


def losses() -> list[tuple[float, float, float]]:
    torch.manual_seed(0)                 # the weights and the halting exploration
    config = tiny.unit_model()
    model = TRM(config, verbose=False)
    optimizers = build_optimizers(model, lr=3e-3, puzzle_emb_lr=1e-2)
    carry = model.empty_carry(BATCH)
    out = []
    for step in range(1, STEPS + 1):
        need = int(carry.halted.sum())
        carry = refill(carry, examples(config, need, seed=step))
        carry, result = model(carry)
        loss, metrics = act_loss(result, carry, config)
        loss.backward()
        set_lr(optimizers, step, warmup_steps=2, total_steps=STEPS)
        for optimizer in optimizers:
            optimizer.step()
            optimizer.zero_grad()
        out.append((loss.item(), float(metrics["lm_loss"]), float(metrics["q_halt_loss"])))
    return out


def test_first_losses_are_the_pinned_ones():
    torch.testing.assert_close(torch.tensor(losses(), dtype=torch.float64), torch.tensor(PINNED, dtype=torch.float64),
                               rtol=1e-4, atol=1e-6)


if __name__ == "__main__":
    torch.set_num_threads(1)
    print(",\n".join(f"    ({total!r}, {lm!r}, {q!r})" for total, lm, q in losses()))
