"""Training's periodic evaluation on the validation split: exact and token accuracy per supervision step on
the EMA weights, summed over ranks, and for ARC pass@1/2 after voting (`pipeline.tasks.arc.validation`); the
metric that picks `best_`."""
import numpy as np
import torch

from pipeline.data.examples import COLUMNS, to_examples
from pipeline.data.split_reader import SplitFiles
from pipeline.tasks.arc import validation as arc_validation
from pipeline.train.collectives import all_gather, all_reduce_sum
from trm import EMA, TRM, evaluate_batch
from trm.compile import SupervisionStep


def load_eval_examples(split: SplitFiles, limit: int | None, rank: int, world: int, arc: bool = False) -> tuple:
    """This rank's share (every world-th row) of the evaluation split's first `limit` rows (None: all), as
    (trm example tensors or None, the rows' ARC columns and true-output hashes or None)."""
    columns = list(COLUMNS) + (arc_validation.COLUMNS if arc else [])
    rows = split.read_columns(columns)
    positions = np.arange(split.rows if limit is None else min(int(limit), split.rows))[rank::world]
    if not len(positions):
        return None, None
    mine = {k: v[positions] for k, v in rows.items()}
    side = None
    if arc:
        side = {k: mine[k] for k in arc_validation.COLUMNS}
        side["truth"] = arc_validation.truth(mine["labels"], side)
    return to_examples({k: mine[k] for k in COLUMNS}), side


class Evaluator:
    """The periodic evaluation's model (the EMA weights copied into one model kept for the run, or the
    model itself) and its supervision step, compiled once per run when `compiled`."""

    def __init__(self, model: TRM, ema: EMA | None, compiled: bool, mode: str):
        self.model, self.ema, self.compiled, self.mode = model, ema, compiled, mode
        self.evaluated, self.step = None, None

    def prepare(self) -> tuple[TRM, SupervisionStep]:
        if self.ema is not None:
            self.evaluated = self.ema.copy_model(self.model, into=self.evaluated)
        elif self.evaluated is None:
            self.evaluated = self.model
        if self.step is None:
            self.step = SupervisionStep(self.evaluated, loss=False, compiled=self.compiled, mode=self.mode)
        return self.evaluated, self.step


def evaluate(evaluator: Evaluator, examples: dict | None, batch_size: int, device,
             arc_rows: dict | None = None, arc: bool = False) -> dict:
    """Exact and token accuracy after all N_sup steps and per step, on the EMA weights, summed over ranks;
    for ARC (`arc`) also pass@1/2 after voting over each validation input's versions (`arc_rows`: this
    rank's rows' ARC columns)."""
    n_sup = evaluator.model.config.halt_max_steps
    sums = torch.zeros(1 + 3 * n_sup, dtype=torch.float64, device=device)
    preds, q_halt = [], []
    if examples is not None and len(examples["inputs"]):
        evaluated, step = evaluator.prepare()
        for start in range(0, len(examples["inputs"]), batch_size):
            result = evaluate_batch(evaluated, {k: v[start:start + batch_size] for k, v in examples.items()},
                                    step=step, pad_to=batch_size if evaluator.compiled else None)
            sums += torch.cat([torch.tensor([float(result.count)], device=device),
                               result.per_step["accuracy"].double(), result.per_step["exact_accuracy"].double(),
                               result.per_step["q_halt_accuracy"].double()])
            if arc:
                preds.append(result.preds.cpu().numpy().astype(np.uint8))
                q_halt.append(result.q_halt.float().cpu().numpy())
    sums = all_reduce_sum(sums).cpu()
    count = sums[0].item()
    if count == 0:
        return {}
    accuracy, exact, q_halt_accuracy = (sums[1 + i * n_sup:1 + (i + 1) * n_sup] / count for i in range(3))
    metrics = {"eval/count": count, "eval/accuracy": accuracy[-1].item(), "eval/exact_accuracy": exact[-1].item(),
               "eval/q_halt_accuracy": q_halt_accuracy[-1].item()}
    metrics.update({f"eval/exact_accuracy_step{i + 1}": exact[i].item() for i in range(n_sup)})
    if arc:
        mine = arc_validation.votes(np.concatenate(preds), np.concatenate(q_halt), arc_rows,
                                    arc_rows["truth"]) if preds else []
        metrics.update(arc_validation.scores(all_gather(mine)))
    return metrics


def selection_metric(eval_metrics: dict):
    """What `best_` is chosen by: ARC's voted pass@2 where there is one, else exact accuracy."""
    return eval_metrics.get("eval/pass@2", eval_metrics.get("eval/exact_accuracy"))
