"""The ACT loss: per-token stablemax (or softmax) cross-entropy + 0.5 x halting BCE, with step metrics."""
import torch
import torch.nn.functional as F

from trm.carry import IGNORE_LABEL, Carry
from trm.config import TRMConfig
from trm.model import TRMOutput

Q_HALT_LOSS_WEIGHT = 0.5


def _stablemax_s(logits: torch.Tensor) -> torch.Tensor:
    """s(x) = 1/(1-x) for x < 0, else x + 1: positive, increasing, and linear (not exponential) for x > 0."""
    negative = logits < 0
    # where() evaluates both branches: feed each only the inputs it is defined for, so gradients stay finite
    return torch.where(negative, 1.0 / (1.0 - torch.where(negative, logits, 0.0)),
                       torch.where(negative, 0.0, logits) + 1.0)


def stablemax_cross_entropy(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Per-token -log(s(x_label) / sum_j s(x_j)), 0 where labels == -100; computed in float64.

    Float64 as in the reference, except on MPS, which has no float64 (float32 there).
    """
    dtype = torch.float32 if logits.device.type == "mps" else torch.float64
    s = _stablemax_s(logits.to(dtype))
    log_p = torch.log(s) - torch.log(s.sum(-1, keepdim=True))
    valid = labels != IGNORE_LABEL
    picked = torch.gather(log_p, -1, torch.where(valid, labels, 0).unsqueeze(-1)).squeeze(-1)
    return torch.where(valid, -picked, 0.0)


def softmax_cross_entropy(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Per-token softmax cross-entropy in float32, 0 where labels == -100 (the paper's pseudocode)."""
    flat = F.cross_entropy(logits.float().flatten(0, -2), labels.flatten(), ignore_index=IGNORE_LABEL,
                           reduction="none")
    return flat.view(labels.shape)


def act_loss(out: TRMOutput, carry: Carry, config: TRMConfig) -> tuple[torch.Tensor, dict]:
    """Loss of one supervision step on all slots, and metrics over the slots that halted at this step.

    `carry` is the one the model returned with `out` (labels, steps and halted after the step).

    Loss (float32 scalar, mean over the B slots of this process):
        lm_loss = sum_i mean over valid tokens of sample i of CE; q_halt_loss = sum_i BCE(q_halt_i,
        seq_correct_i), seq_correct = every valid token predicted right (a sample without labels counts
        as correct); loss = (lm_loss + 0.5 q_halt_loss) / B. The reference divides the same sum by the
        global batch size and sums gradients across ranks; dividing by B here and averaging gradients
        across ranks (`trm.optim.average_gradients`) is the same for equal per-rank batches.

    Metrics (float32 scalar tensors, detached, SUMS so they add across ranks and steps; divide by
    `count`, and the two losses by the batch size, to report): count = slots that halted this step and
    have labels; accuracy = sum of their token accuracies; exact_accuracy = how many are fully right;
    q_halt_accuracy = how many have (q_halt >= 0) == fully right; steps = sum of their step counts;
    lm_loss, q_halt_loss = the loss terms over all slots.
    """
    labels = carry.labels
    mask = labels != IGNORE_LABEL
    count = mask.sum(-1)
    divisor = count.clamp_min(1)
    with torch.no_grad():
        correct = mask & (out.logits.argmax(-1) == labels)
        seq_correct = correct.sum(-1) == count
    if config.loss_type == "stablemax_cross_entropy":
        token_loss = stablemax_cross_entropy(out.logits, labels)
    else:
        token_loss = softmax_cross_entropy(out.logits, labels)
    lm_loss = (token_loss.sum(-1) / divisor).sum()
    q_halt_loss = F.binary_cross_entropy_with_logits(out.q_halt, seq_correct.to(out.q_halt.dtype), reduction="sum")
    loss = (lm_loss + Q_HALT_LOSS_WEIGHT * q_halt_loss).float() / labels.shape[0]

    with torch.no_grad():
        valid = carry.halted & (count > 0)
        metrics = {
            "count": valid.sum(),
            "accuracy": torch.where(valid, correct.sum(-1) / divisor, 0.0).sum(),
            "exact_accuracy": (valid & seq_correct).sum(),
            "q_halt_accuracy": (valid & ((out.q_halt >= 0) == seq_correct)).sum(),
            "steps": torch.where(valid, carry.steps, 0).sum(),
            "lm_loss": lm_loss.detach(),
            "q_halt_loss": q_halt_loss.detach(),
        }
    return loss, {key: value.float() for key, value in metrics.items()}
