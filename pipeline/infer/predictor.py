"""Batch inference with a trained checkpoint over Ray Data, shared by `stage=eval` and `stage=eval_arc`.

`predict(ds, checkpoint, cfg.eval, passthrough)` maps a dataset of example rows (`inputs`, `labels`,
`puzzle_identifier`) through a pool of actors. Each actor loads the checkpoint once (EMA weights unless
`eval.ema=false`), on a GPU when the cluster has GPUs, and runs every row through all N_sup supervision
steps with `trm.evaluate_batch` (optionally answering at the first step whose halt logit is positive), or,
for `stage=eval`'s test-time compute, as several copies (`pipeline.infer.test_time`) from which one answer is picked.
"""
import logging
import time

import numpy as np
import ray
import torch

from pipeline.checkpoints import checkpoint as ckpt
from pipeline.data.examples import to_examples
from pipeline.errors import PipelineError
from pipeline.infer import test_time
from pipeline.options import EvalOptions
from pipeline.ray_setup import cluster_gpus, torch_threads, use_own_inductor_cache
from trm import TRM, Carry, evaluate_batch, refill
from trm.compile import SupervisionStep, compile_pays
from trm.noise import RowKeyedNormal

log = logging.getLogger(__name__)

# Columns holding a batch's per-step sums on its first row (zeros on the others), so that summing them
# over all rows gives the dataset's totals; dropped before predictions are written.
STEP_SUMS = ("step_exact_sum", "step_token_accuracy_sum", "step_q_halt_accuracy_sum")
# With `eval.record_steps`: per puzzle, every copy's answer after every step, its q_halt, each copy's answer step
STEP_COLUMNS = ("step_preds", "step_q_halt", "copy_answer_step")
SECONDS = "seconds"   # the batch's inference time on its actor, on its first row (zeros on the others)


def resolve_checkpoint(choice, run_dir: str, data_dir: str | None = None, identifiers: str | None = None,
                       num_aug: int | None = None, given=None) -> ckpt.Checkpoint:
    """The checkpoint `checkpoint=` names: null or `latest` (the latest complete one in run_dir; without
    one, the newest `imported_<step>` of stage=import), `best` (the best by the periodic evaluation), or a
    folder path / URL, which may be a reference run folder or `step_<N>` file, converted in memory. With
    `data_dir`, an ARC table in the reference's row order gets its rows fitted to that dataset's versions;
    `given` (`pipeline.checkpoints.reference_data.DataGiven`) is what the command line says about a reference
    run's data (`pipeline.checkpoints.checkpoint.Checkpoint.open`)."""
    if choice in (None, "latest", "best"):
        path = ckpt.best_checkpoint(run_dir) if choice == "best" else ckpt.latest_checkpoint(run_dir)
        if path is None and choice != "best":    # a run_dir that stage=import filled: its newest import
            path = ckpt.latest_imported(run_dir)
            if path is not None:
                return ckpt.Checkpoint.open(path, data_dir=data_dir, identifiers=identifiers, num_aug=num_aug,
                                            given=given)
        if path is None:
            kind = "best (no periodic evaluation ran?)" if choice == "best" else "complete"
            raise PipelineError(f"no {kind} checkpoint in run_dir={run_dir}: train first (stage=train), import one "
                                f"(stage=import) or pass checkpoint=<checkpoint folder>")
        return ckpt.Checkpoint.read(path)
    return ckpt.Checkpoint.open(choice, "checkpoint", data_dir, identifiers, num_aug, given=given)


def load_model(checkpoint: ckpt.Checkpoint, use_ema: bool, device) -> TRM:
    """The checkpoint's model in eval mode on `device`: EMA weights when `use_ema`."""
    model = TRM(checkpoint.model_config, verbose=False)
    # the EMA weights into this one model: no second copy of the puzzle table
    weights = checkpoint.weights(use_ema, required_by="eval.ema")
    model.load_state_dict(weights)
    del weights
    return model.to(device).eval()


class Predictor:
    """Ray Data callable class: the model is loaded once per actor, then every batch runs all its steps.

    Each batch of B puzzles runs as the `settings.copies` copies of `pipeline.infer.test_time` (the defaults: one
    copy, N_sup steps, no noise: the plain pass), and the first of `settings.select` picks each answer.
    Output columns: the `passthrough` input columns, `preds` (uint8 tokens of the answer), `q_halt` (its
    halt logit), `answer_step`, `answer_copy`, `halt_step` (the answer copy's first step with q_halt > 0,
    else the last), `exact`, `token_accuracy`, `has_labels`, `oracle` (some copy was exact at some step),
    `exact_<selector>` for each selector, and the STEP_SUMS (over all copies) and SECONDS columns.
    `task` and `size` (the grid side) say how to transform puzzles when `settings.tta` > 1. With
    `record_steps`, also what the report page draws (`pipeline.results.report`): STEP_COLUMNS, every copy's answer
    after every step mapped back to the puzzle's frame [B, S, C, L], its q_halt [B, S, C] and each copy's own
    answer step [B, C] (the one `vote` counts).
    """

    def __init__(self, checkpoint: ckpt.Checkpoint, use_ema: bool, halt_on_q: bool, device: str, threads: int,
                 passthrough: list,
                 settings: test_time.Settings | None = None, task: str | None = None, size: int | None = None,
                 record_steps: bool = False, compile: str = "false", batch_size: int | None = None):
        if device == "cpu":
            torch.set_num_threads(torch_threads(threads))   # the actor's CPU share, not the whole machine
        self.device = torch.device(device)
        self.model = load_model(checkpoint, use_ema, self.device)
        compiled = compile_pays(compile, self.device, self.model.config)
        if compiled:   # one cache per GPU (actors on one node compile at once), shared by the CPU actors
            use_own_inductor_cache("eval-" + ("gpu" + "-".join(map(str, ray.get_gpu_ids())) if device == "cuda"
                                              else "cpu"))
        self.step = SupervisionStep(self.model, loss=False, compiled=compiled)
        self.batch_size = batch_size    # a compiled step's one shape: the last, smaller batch is padded to it
        self.halt_on_q, self.passthrough = halt_on_q, passthrough
        self.settings, self.task, self.size = settings or test_time.Settings(), task, size
        self.record_steps = record_steps

    def __call__(self, batch: dict) -> dict:
        start = time.perf_counter()
        s, n = self.settings, len(batch["inputs"])
        labels = np.asarray(batch["labels"])
        hashes = test_time.puzzle_hashes(np.asarray(batch["inputs"]))
        versions = test_time.make_versions(self.task, self.size, s.tta, s.seed, hashes)
        copies = {k: test_time.copies_of(versions, s.tta, s.trajectories, np.asarray(batch[k]))
                  for k in ("inputs", "labels")}
        copies["puzzle_identifier"] = np.tile(np.asarray(batch["puzzle_identifier"]), s.copies)
        examples = {k: v.to(self.device) for k, v in to_examples(copies).items()}
        noise = RowKeyedNormal(test_time.noise_keys(s.seed, hashes, s.copies)) if s.noise else None
        result = evaluate_batch(self.model, examples, halt_on_q=self.halt_on_q, max_steps=s.max_steps,
                                noise_std=s.noise or None, noise=noise, step=self.step,
                                pad_to=self.batch_size * s.copies if self.step.compiled and self.batch_size else None)
        step_preds = test_time.map_back(versions, s.tta, s.trajectories,
                                        result.per_step["preds"].cpu().numpy().astype(np.uint8))
        n_steps = len(step_preds)
        step_q = result.per_step["q_halt"].float().cpu().numpy().reshape(n_steps, s.copies, n)
        answer_step = result.answer_step.cpu().numpy().reshape(s.copies, n)
        choices = {name: test_time.select(name, step_preds, step_q, answer_step) for name in s.select}
        choice = choices[s.select[0]]
        exact, token_accuracy = test_time.score(choice.preds, labels)
        positive = step_q[:, choice.copy, np.arange(n)].T > 0                    # [B, steps] of the answer copy
        out = {k: batch[k] for k in self.passthrough}
        out.update(
            preds=choice.preds, q_halt=choice.q_halt, answer_step=choice.step.astype(np.int16),
            answer_copy=choice.copy.astype(np.int16),
            halt_step=np.where(positive.any(1), positive.argmax(1) + 1, n_steps).astype(np.int16),
            exact=exact, token_accuracy=token_accuracy, has_labels=(labels != 0).any(-1),
            oracle=test_time.score(step_preds, labels)[0].any((0, 1)) if n else np.zeros(0, bool),
            **{f"exact_{name}": test_time.score(c.preds, labels)[0] for name, c in choices.items()})
        if self.record_steps:
            out.update(zip(STEP_COLUMNS, (step_preds.transpose(2, 0, 1, 3), step_q.transpose(2, 0, 1),
                                          answer_step.T.astype(np.int16))))
        for column, key in zip(STEP_SUMS, ("exact_accuracy", "accuracy", "q_halt_accuracy")):
            sums = np.zeros((n, n_steps), dtype=np.float64)
            if n:
                sums[0] = result.per_step[key].double().cpu().numpy()
            out[column] = sums
        out[SECONDS] = np.zeros(n, dtype=np.float64)
        if n:
            out[SECONDS][0] = time.perf_counter() - start
        return out


def actor_resources(e: EvalOptions) -> dict:
    """map_batches arguments for the actor pool: one GPU per actor where the cluster has GPUs."""
    gpus = int(cluster_gpus())
    cpus = e.cpus_per_actor
    actors = e.num_actors or max(1, gpus)
    if gpus:
        return {"actors": actors, "num_gpus": 1, "num_cpus": cpus, "device": "cuda", "threads": cpus}
    # The reads feeding the actors need a CPU of their own: actors holding every CPU wait for them forever.
    most = max(1, (int(ray.cluster_resources().get("CPU", 1)) - 1) // cpus)
    if actors > most:
        log.warning("eval.num_actors=%d x eval.cpus_per_actor=%d would hold every CPU the reads need: %d actor(s)",
                    actors, cpus, most)
        actors = most
    return {"actors": actors, "num_gpus": 0, "num_cpus": cpus, "device": "cpu", "threads": cpus}


def predict(ds, checkpoint: ckpt.Checkpoint, e: EvalOptions, passthrough: list,
            settings: "test_time.Settings | None" = None, task: str | None = None, size: int | None = None,
            record_steps: bool = False):
    """`ds` with the Predictor's columns (lazy Ray Dataset); `settings`, `task`, `size`, `record_steps`: see
    Predictor."""
    res = actor_resources(e)
    log.info("inference with %s on %d %s actor(s), batch %d", checkpoint.path, res["actors"], res["device"].upper(),
             e.batch_size)
    # Each actor loads the weights itself from the checkpoint's folder (or, for a conversion, from the object
    # store: `Checkpoint.shared`): its constructor arguments are a few kilobytes.
    # The "constructor arguments in the object store and max_restarts > 0" line Ray's core prints at each
    # evaluation is about Ray Data's own arguments (its DataContext and map function, put in the object
    # store for every actor-pool map: ray-project/ray#57733); the restarts it warns about are kept.
    return ds.map_batches(
        Predictor, batch_size=e.batch_size, batch_format="numpy",
        compute=ray.data.ActorPoolStrategy(size=res["actors"]),
        num_cpus=res["num_cpus"], num_gpus=res["num_gpus"],
        fn_constructor_kwargs=dict(checkpoint=checkpoint.shared(), use_ema=e.ema, halt_on_q=e.halt_on_q,
                                   device=res["device"], threads=res["threads"], passthrough=list(passthrough),
                                   settings=settings, task=task, size=size, record_steps=record_steps,
                                   compile=e.compile, batch_size=e.batch_size))


@torch.inference_mode()
def step_predictions(model: TRM, batch: dict) -> tuple[np.ndarray, np.ndarray]:
    """([N_sup, B, seq_len] predictions, [N_sup, B] q_halt logits) after each supervision step, for the few
    puzzles `eval.render` draws and `stage=solve` answers (`evaluate_batch` keeps only the answer step's)."""
    examples = {k: v.to(model.H_init.device) for k, v in to_examples(batch).items()}
    carry: Carry = refill(model.empty_carry(len(examples["inputs"]), model.H_init.device), examples)
    steps, q_halts = [], []
    for _ in range(model.config.halt_max_steps):
        carry, out = model(carry)
        steps.append(out.logits.argmax(-1).cpu().numpy().astype(np.uint8))
        q_halts.append(out.q_halt.float().cpu().numpy())
    return np.stack(steps), np.stack(q_halts)
