"""Evaluate a batch through all N_sup supervision steps, with metrics after every step."""
from dataclasses import dataclass
from typing import Callable

import torch

from trm.carry import IGNORE_LABEL, refill
from trm.model import TRM
from trm.noise import NoiseSource


@dataclass
class EvalResult:
    """Outcome of `evaluate_batch` on B examples (tensors on the model's device).

    preds [B, seq_len] int64 and q_halt [B] float32: at the answer step (the last step, or with
    halt_on_q the first step whose q_halt > 0); answer_step [B] int64, 1-based.
    exact [B] bool, token_accuracy [B] float32: of `preds` against the labels (False / 0 without labels).
    per_step: {"accuracy", "exact_accuracy", "q_halt_accuracy"} each [S] float32, sums over the
    examples with labels (divide by `count`); "q_halt" [S, B] the halt logits and "preds" [S, B, seq_len]
    the predictions of every step (S = the steps run: N_sup unless `max_steps`).
    count: number of examples with at least one label.
    """

    preds: torch.Tensor
    q_halt: torch.Tensor
    answer_step: torch.Tensor
    exact: torch.Tensor
    token_accuracy: torch.Tensor
    per_step: dict
    count: int


@torch.inference_mode()
def evaluate_batch(model: TRM, batch: dict, halt_on_q: bool = False, max_steps: int | None = None,
                   noise_std: float | None = None, noise: NoiseSource | None = None,
                   step: Callable | None = None, pad_to: int | None = None) -> EvalResult:
    """Run `batch` (inputs, labels, puzzle_identifiers) from fresh carries through all N_sup steps.

    The model is put in eval mode for the call and restored after. As in the reference every step
    runs; by default the answer is the last step's. `halt_on_q=True` takes each example's answer at
    its first step with q_halt > 0 instead (the paper's early stop at test time), while the per-step
    metrics still cover all steps. `max_steps` runs that many supervision steps instead of N_sup (more
    than trained: the carry keeps recursing); `noise_std` / `noise` add latent noise (`TRM.recurse`).
    `step`: what runs one supervision step, carry -> (carry, TRMOutput), e.g. a compiled
    `trm.compile.SupervisionStep(model, loss=False, compiled=True)`; None: `model` itself. Latent noise
    always runs on `model`. `pad_to`: run a smaller batch padded to this many rows (copies of its first
    row without labels, dropped from every result), so that a compiled step sees one shape only.
    """
    was_training = model.training
    model.eval()
    try:
        rows = len(batch["inputs"])
        if pad_to is not None and 0 < rows < pad_to:
            batch = _padded(batch, pad_to)
        device = model.H_init.device
        carry = refill(model.empty_carry(len(batch["inputs"]), device), batch)
        labels = carry.labels
        mask = labels != IGNORE_LABEL
        has_labels = mask.any(-1)
        divisor = mask.sum(-1).clamp_min(1)
        n_steps = model.config.halt_max_steps if max_steps is None else max_steps
        per_step = {key: torch.zeros(n_steps, device=device) for key in ("accuracy", "exact_accuracy", "q_halt_accuracy")}
        q_halts, step_preds_all = [], []
        preds = torch.zeros_like(labels)
        q_answer = torch.zeros(labels.shape[0], device=device)
        answer_step = torch.zeros_like(preds[:, 0])
        answered = torch.zeros_like(has_labels)
        run = step if step is not None and not noise_std else (lambda carry: model(carry, noise_std, noise))
        for step_index in range(n_steps):
            carry, out = run(carry)
            step_preds = out.logits.argmax(-1)
            correct = mask & (step_preds == labels)
            exact = (correct.sum(-1) == mask.sum(-1)) & has_labels
            per_step["accuracy"][step_index] = torch.where(has_labels, correct.sum(-1) / divisor, 0.0).sum()
            per_step["exact_accuracy"][step_index] = exact.sum()
            per_step["q_halt_accuracy"][step_index] = (has_labels & ((out.q_halt >= 0) == exact)).sum()
            q_halts.append(out.q_halt)
            step_preds_all.append(step_preds)
            open_ = ~answered  # examples whose answer is still the latest step's (where: no device sync)
            preds = torch.where(open_.unsqueeze(-1), step_preds, preds)
            q_answer = torch.where(open_, out.q_halt, q_answer)
            answer_step = torch.where(open_, step_index + 1, answer_step)
            if halt_on_q:
                answered |= out.q_halt > 0
        correct = mask & (preds == labels)
        return EvalResult(
            preds=preds[:rows], q_halt=q_answer[:rows], answer_step=answer_step[:rows],
            exact=((correct.sum(-1) == mask.sum(-1)) & has_labels)[:rows],
            token_accuracy=torch.where(has_labels, correct.sum(-1) / divisor, 0.0).float()[:rows],
            per_step={**per_step, "q_halt": torch.stack(q_halts)[:, :rows], "preds": torch.stack(step_preds_all)[:, :rows]},
            count=int(has_labels.sum()))
    finally:
        model.train(was_training)


def _padded(batch: dict, rows: int) -> dict:
    """`batch` with copies of its first row appended up to `rows`, their labels all IGNORE_LABEL."""
    out = {}
    for key, value in batch.items():
        value = torch.as_tensor(value)
        pad = value[:1].expand(rows - len(value), *value.shape[1:])
        out[key] = torch.cat([value, torch.full_like(pad, IGNORE_LABEL) if key == "labels" else pad])
    return out
