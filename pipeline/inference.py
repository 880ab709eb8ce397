"""Batch inference with a trained checkpoint over Ray Data, shared by `stage=eval` and `stage=eval_arc`.

`predict(ds, path, cfg.eval, passthrough)` maps a dataset of example rows (`inputs`, `labels`,
`puzzle_identifier`) through a pool of actors. Each actor loads the checkpoint once (EMA weights unless
`eval.ema=false`), on a GPU when the cluster has GPUs, and runs every row through all N_sup supervision
steps with `trm.evaluate_batch` (optionally answering at the first step whose halt logit is positive).
"""
import logging

import numpy as np
import ray
import torch

from pipeline import checkpoints as ckpt
from pipeline import reference_checkpoint
from pipeline import storage
from pipeline.errors import PipelineError
from pipeline.train_loop import to_examples
from trm import EMA, TRM, Carry, evaluate_batch, refill

log = logging.getLogger(__name__)

# Columns holding a batch's per-step sums on its first row (zeros on the others), so that summing them
# over all rows gives the dataset's totals; dropped before predictions are written.
STEP_SUMS = ("step_exact_sum", "step_token_accuracy_sum", "step_q_halt_accuracy_sum")


def resolve_checkpoint(choice, run_dir: str, data_dir: str | None = None, identifiers: str | None = None,
                       num_aug: int | None = None) -> str:
    """The checkpoint folder for `checkpoint=`: null or `latest` (the latest complete one in run_dir), `best`
    (the best by the periodic evaluation), or a folder path / URL. A reference run folder or `step_<N>` file
    is imported into run_dir first (`pipeline.reference_checkpoint.prepare`); with `data_dir`, an ARC one
    gets its puzzle-embedding rows fitted to that dataset's versions."""
    if choice in (None, "latest", "best"):
        path = ckpt.best_checkpoint(run_dir) if choice == "best" else ckpt.latest_checkpoint(run_dir)
        if path is None:
            kind = "best (no periodic evaluation ran?)" if choice == "best" else "complete"
            raise PipelineError(f"no {kind} checkpoint in run_dir={run_dir}: train first (stage=train) or pass "
                                f"checkpoint=<checkpoint folder>")
        return path
    path = reference_checkpoint.prepare(storage.to_absolute(str(choice)), run_dir, data_dir, identifiers, num_aug)
    if not ckpt.is_complete(path, need_ranks=False):
        raise PipelineError(f"checkpoint={choice}: not a complete checkpoint folder ({ckpt.META} or {ckpt.STATE} "
                            f"missing under {path})")
    return path


def checkpoint_info(path: str) -> tuple[dict, dict, dict]:
    """(config, manifest, meta) of a checkpoint, without loading its weights."""
    try:
        return tuple(storage.read_json(storage.join(path, name)) for name in (ckpt.CONFIG, ckpt.MANIFEST, ckpt.META))
    except (OSError, ValueError) as err:
        raise PipelineError(f"checkpoint {path} is unreadable: {type(err).__name__}: {err}") from err


def check_fits(path: str, saved_manifest: dict, manifest: dict, where: str, also=()) -> None:
    """The checkpoint was trained on data of the same task and shape as `manifest` (read from `where`)."""
    for key in ("task", *ckpt.MANIFEST_FIELDS, *also):
        if saved_manifest.get(key) != manifest.get(key):
            raise PipelineError(f"checkpoint {path} was trained on data with {key}={saved_manifest.get(key)!r}, but "
                                f"{where} has {key}={manifest.get(key)!r}; pass the matching checkpoint= or data_dir=")


def load_model(path: str, use_ema: bool, device) -> TRM:
    """The checkpoint's model in eval mode on `device`: EMA weights when `use_ema`."""
    state, config, manifest = ckpt.load_checkpoint(path)
    model = TRM(ckpt.model_config(config["model"], manifest, source=f"checkpoint {path}: model"), verbose=False)
    model.load_state_dict(state["model"])
    if use_ema:
        if state.get("ema") is None:
            raise PipelineError(f"checkpoint {path} has no EMA weights (trained with train.ema=false); "
                                f"set eval.ema=false")
        ema = EMA(model, rate=state["ema"]["rate"])
        ema.load_state_dict(state["ema"])
        model = ema.copy_model(model)
    return model.to(device).eval()


class Predictor:
    """Ray Data callable class: the model is loaded once per actor, then every batch runs all N_sup steps.

    Output columns: the `passthrough` input columns, `preds` (uint8 tokens at the answer step), `q_halt`
    (its halt logit), `answer_step`, `halt_step` (first step with q_halt > 0, else N_sup), `exact`,
    `token_accuracy`, `has_labels`, and the STEP_SUMS columns.
    """

    def __init__(self, path: str, use_ema: bool, halt_on_q: bool, device: str, threads: int, passthrough: list):
        if device == "cpu":
            torch.set_num_threads(max(1, threads))   # the actor's CPU share, not the whole machine
        self.device = torch.device(device)
        self.model = load_model(path, use_ema, self.device)
        self.halt_on_q, self.passthrough = halt_on_q, passthrough

    def __call__(self, batch: dict) -> dict:
        examples = {k: v.to(self.device) for k, v in to_examples(batch).items()}
        result = evaluate_batch(self.model, examples, halt_on_q=self.halt_on_q)
        n, n_sup = len(result.preds), self.model.config.halt_max_steps
        q_steps = result.per_step["q_halt"].T.float().cpu().numpy()                  # [B, N_sup]
        positive = q_steps > 0
        out = {k: batch[k] for k in self.passthrough}
        out.update(
            preds=result.preds.cpu().numpy().astype(np.uint8), q_halt=result.q_halt.float().cpu().numpy(),
            answer_step=result.answer_step.cpu().numpy().astype(np.int16),
            halt_step=np.where(positive.any(1), positive.argmax(1) + 1, n_sup).astype(np.int16),
            exact=result.exact.cpu().numpy(), token_accuracy=result.token_accuracy.cpu().numpy(),
            has_labels=(examples["labels"] != -100).any(-1).cpu().numpy())
        for column, key in zip(STEP_SUMS, ("exact_accuracy", "accuracy", "q_halt_accuracy")):
            sums = np.zeros((n, n_sup), dtype=np.float64)
            if n:
                sums[0] = result.per_step[key].double().cpu().numpy()
            out[column] = sums
        return out


def actor_resources(eval_cfg) -> dict:
    """map_batches arguments for the actor pool: one GPU per actor where the cluster has GPUs."""
    gpus = int(ray.cluster_resources().get("GPU", 0))
    cpus = max(1, int(eval_cfg.cpus_per_actor))
    actors = int(eval_cfg.num_actors) if eval_cfg.num_actors else max(1, gpus)
    if gpus:
        return {"actors": actors, "num_gpus": 1, "num_cpus": cpus, "device": "cuda", "threads": cpus}
    return {"actors": actors, "num_gpus": 0, "num_cpus": cpus, "device": "cpu", "threads": cpus}


def predict(ds, path: str, eval_cfg, passthrough: list):
    """`ds` with the Predictor's columns (lazy Ray Dataset)."""
    res = actor_resources(eval_cfg)
    log.info("inference with %s on %d %s actor(s), batch %d", path, res["actors"], res["device"].upper(),
             int(eval_cfg.batch_size))
    return ds.map_batches(
        Predictor, batch_size=int(eval_cfg.batch_size), batch_format="numpy",
        compute=ray.data.ActorPoolStrategy(size=res["actors"]),
        num_cpus=res["num_cpus"], num_gpus=res["num_gpus"],
        fn_constructor_kwargs=dict(path=path, use_ema=bool(eval_cfg.ema), halt_on_q=bool(eval_cfg.halt_on_q),
                                   device=res["device"], threads=res["threads"], passthrough=list(passthrough)))


@torch.inference_mode()
def step_predictions(model: TRM, batch: dict) -> np.ndarray:
    """[N_sup, B, seq_len] predictions after each supervision step, for the few puzzles `eval.render` draws
    (`evaluate_batch` keeps only the answer step's)."""
    examples = {k: v.to(model.H_init.device) for k, v in to_examples(batch).items()}
    carry: Carry = refill(model.empty_carry(len(examples["inputs"]), model.H_init.device), examples)
    steps = []
    for _ in range(model.config.halt_max_steps):
        carry, out = model(carry)
        steps.append(out.logits.argmax(-1).cpu().numpy().astype(np.uint8))
    return np.stack(steps)
