"""The Tiny Recursive Model in plain PyTorch: model, carry feeding, loss, optimisers, EMA, state.

No Ray, Hydra, wandb or file IO here; `pipeline/` wires it up. Paper symbols: x (input embedding),
y (answer state), z (latent), n = L_cycles, T = H_cycles, N_sup = halt_max_steps.

A training step with the reference's persistent carry (every call is one supervision step)::

    import torch
    from trm import (TRM, EMA, TRMConfig, act_loss, average_gradients, build_optimizers, refill,
                     resolve_device, set_lr, training_state, load_training_state, evaluate_batch)

    config = TRMConfig(seq_len=81, vocab_size=11, num_puzzle_identifiers=1, hidden_size=64)
    device, dtype = resolve_device("auto")       # cuda, then mps, then cpu; bf16 forward on CUDA only
    model = TRM(config).to(device)               # prints network / puzzle-table counts
    optimizers = build_optimizers(model, lr=1e-4, weight_decay=0.1, puzzle_emb_lr=1e-2)
    ema = EMA(model, rate=0.999)
    carry = model.empty_carry(batch_size, device)           # every slot halted, no data yet
    for step in range(1, total_steps + 1):
        need = int(carry.halted.sum())                      # halted slots take the NEXT examples
        carry = refill(carry, next_examples(need))          # inputs/labels [need, seq_len], puzzle_identifiers [need]
        carry, out = model(carry)                           # T rounds (first T-1 no-grad); updates steps/halted
        loss, metrics = act_loss(out, carry, config)        # metric sums: divide by metrics["count"]
        loss.backward()
        average_gradients(model)                            # all-reduce mean if torch.distributed is up
        lr = set_lr(optimizers, step, warmup_steps=2000, total_steps=total_steps, lr_min_ratio=1.0)
        for optimizer in optimizers:
            optimizer.step()
            optimizer.zero_grad()
        ema.update(model)
    state = training_state(model, optimizers, step, ema=ema, carry=carry)  # torch.save(state, f)
    step, carry = load_training_state(torch.load(f, weights_only=True), model, optimizers, ema=ema)

The same step compiled into one graph (`trm.compile`; the eager path above stays the reference's, bit for bit)::

    step = SupervisionStep(model, loss=True, compiled=True)    # fullgraph torch.compile, static shapes
    carry, out, loss, metrics = step(carry)                     # in place of model(carry) + act_loss

Evaluation (all N_sup steps from fresh carries, EMA weights, raw puzzle table as the reference)::

    result = evaluate_batch(ema.copy_model(model), batch, halt_on_q=False)
    result.preds, result.q_halt, result.exact, result.per_step["exact_accuracy"] / result.count

Per-step learning rates are also available as `lr_at(step, base_lr, warmup_steps, total_steps,
lr_min_ratio)`; each param group keeps its `base_lr`.
"""
from trm.carry import Carry, refill
from trm.compile import SupervisionStep
from trm.config import TRMConfig
from trm.device import forward_dtype_for, resolve_device
from trm.ema import EMA
from trm.evaluate import EvalResult, evaluate_batch
from trm.loss import act_loss, softmax_cross_entropy, stablemax_cross_entropy
from trm.model import TRM, TRMOutput
from trm.optim import AdamAtan2, SparseSignSGD, average_gradients, build_optimizers, lr_at, set_lr
from trm.state import load_training_state, training_state

__all__ = [
    "TRM", "TRMConfig", "TRMOutput", "Carry", "refill", "act_loss", "stablemax_cross_entropy",
    "softmax_cross_entropy", "AdamAtan2", "SparseSignSGD", "build_optimizers", "lr_at", "set_lr",
    "average_gradients", "EMA", "training_state", "load_training_state", "evaluate_batch", "EvalResult",
    "resolve_device", "forward_dtype_for", "SupervisionStep",
]
