"""The per-worker training loop that Ray Train runs on every rank (module level, so Ray pickles it by name).

Every rank holds the whole model (no DDP wrapper: `trm.average_gradients` all-reduces the gradients,
the sparse puzzle-table optimiser all-gathers its rows) and `global_batch_size / world` carry slots.
Its examples come from `pipeline.train.stream` (the reference's sampler, this rank's share), its periodic
evaluation from `pipeline.train.validation`, its checkpoints go through `pipeline.checkpoints`.

Feeding (the reference's persistent carry): each step only the slots that halted take the next examples
of the rank's stream; the others keep their example and (y, z).
"""
import logging
import posixpath
import tempfile
import time
from dataclasses import dataclass

import ray.train
import torch

from pipeline import storage
from pipeline.checkpoints import checkpoint as ckpt
from pipeline.checkpoints.checkpoint import Checkpoint
from pipeline.data.sampling import GroupSampler
from pipeline.data.split_reader import SplitFiles
from pipeline.options import TrainOptions
from pipeline.progress import Poster, TrainingEta
from pipeline.ray_setup import apply_train_log_level, quiet_expected_ray_warnings, torch_threads, use_own_inductor_cache
from pipeline.train.chaos import maybe_fail
from pipeline.train.collectives import all_reduce_sum
from pipeline.train.metrics_log import MetricsLog
from pipeline.train.stream import ExampleStream, split_fits_in_memory
from pipeline.train.validation import Evaluator, evaluate, load_eval_examples, selection_metric
from trm import (
    EMA,
    TRM,
    Carry,
    TRMConfig,
    average_gradients,
    build_optimizers,
    load_training_state,
    refill,
    set_lr,
    training_state,
)
from trm.compile import SupervisionStep, compile_pays
from trm.device import HostCopy, peak_flops
from trm.flops import train_step_flops_per_sample

log = logging.getLogger(__name__)

TRAIN_METRICS = ("count", "accuracy", "exact_accuracy", "q_halt_accuracy", "steps", "lm_loss", "q_halt_loss")


@dataclass(frozen=True)
class LoopConfig:
    """What every rank's loop is given by `pipeline.train.recipe.fit`.

    train: the run's options (`TrainOptions`, a stage's own section included); model: `TRMConfig` fields;
    manifest: the dataset's; saved_config: the redacted config every checkpoint and the metrics log carry;
    has_eval: whether data_dir has a validation split to evaluate on; resume_from: the checkpoint the driver
    chose (None: a fresh start), skipped_checkpoints: the folder names it found unreadable; init_from: a
    fresh run's starting checkpoint (`Checkpoint.shared`: a converted one's state is in Ray's object store);
    cpus: each worker's CPUs (torch threads); progress_board: the driver's `pipeline.progress.Board` (or None)."""
    train: TrainOptions
    model: dict
    run_dir: str
    data_dir: str
    manifest: dict
    seed: int
    saved_config: dict
    has_eval: bool
    logger: str
    resume_from: str | None
    skipped_checkpoints: tuple
    init_from: Checkpoint | None
    cpus: float
    progress_board: object = None


def _train_record(step: int, sums: torch.Tensor, global_batch: int, lr: float, seconds: float, epoch: int,
                  throughput: dict) -> dict:
    """The step's metrics.jsonl line. `throughput`: tokens per sample, FLOPs per sample and the cluster's peak
    FLOP/s (None off the GPUs of `trm.device.PEAK_BF16_TFLOPS`: no MFU then)."""
    values = dict(zip(TRAIN_METRICS + ("new_examples",), sums.tolist()))
    samples_per_s = global_batch / max(seconds, 1e-9)
    record = {"step": step, "time": time.time(), "train/lr": lr, "train/lm_loss": values["lm_loss"] / global_batch,
              "train/q_halt_loss": values["q_halt_loss"] / global_batch, "train/count": values["count"],
              "train/new_examples": values["new_examples"], "train/epoch": epoch,
              "train/samples_per_s": samples_per_s, "train/tokens_per_s": samples_per_s * throughput["tokens"]}
    if throughput["peak_flops"]:
        record["train/mfu"] = samples_per_s * throughput["flops"] / throughput["peak_flops"]
    if values["count"] > 0:
        for key in ("accuracy", "exact_accuracy", "q_halt_accuracy", "steps"):
            record[f"train/{key}"] = values[key] / values["count"]
    return record


def _finish(pending: tuple, global_batch: int, throughput: dict) -> dict:
    """The record of a step from (step, its HostCopy of the metric sums, lr, seconds, epoch, extra entries)."""
    step, sums, lr, seconds, epoch, extra = pending
    return {**_train_record(step, sums.get(), global_batch, lr, seconds, epoch, throughput), **extra}


def _log(metrics_log: MetricsLog, progress: Poster, record: dict) -> None:
    metrics_log.log(record)
    progress.post(record)


def _save(step, model, optimizers, ema, carry, stream, best_metric, improved, eval_metrics, config, rank, world,
          metrics_log, report_metrics):
    """Write this rank's files, then report them into checkpoint_<step> (every rank calls report); returns
    the seconds spent (writing the files locally, reporting: Ray's upload to run_dir)."""
    run_dir = config.run_dir
    began = time.perf_counter()
    with tempfile.TemporaryDirectory() as local:
        ckpt.write_rank_state(local, rank, {"carry": carry.state_dict(), "rng": torch.get_rng_state(),
                                            "epoch": stream.epoch, "consumed": stream.consumed})
        if rank == 0:
            state = {**training_state(model, optimizers, step, ema=ema), "best_metric": best_metric}
            meta = {"step": step, "world_size": world, **eval_metrics}
            files = Checkpoint(storage.join(run_dir, ckpt.checkpoint_name(step)), config.saved_config,
                               config.manifest, meta, state).write(local)
            if improved:
                _keep_best(local, files, run_dir, step)
            metrics_log.flush()   # before the checkpoint: a resume truncates to it, so no step is lost
        written = time.perf_counter()
        ray.train.report(report_metrics, checkpoint=ray.train.Checkpoint.from_directory(local),
                         checkpoint_dir_name=ckpt.checkpoint_name(step))
    return {"train/checkpoint_write_s": written - began, "train/checkpoint_report_s": time.perf_counter() - written}


def _keep_best(local: str, files: list[str], run_dir: str, step: int) -> None:
    """Copy rank 0's files (meta.json last) to best_<step>, then drop the older best folders."""
    dest = storage.join(run_dir, ckpt.best_name(step))
    ckpt.upload_files(local, files, dest)
    for _, path in ckpt.folders(run_dir, "best"):
        if path != dest:
            storage.remove(path)


def _resume_source(config: LoopConfig) -> str | None:
    """The checkpoint folder this attempt resumes from: the one Ray Train hands over (after a worker failure,
    the newest this run reported) unless the driver found it unreadable; else the driver's choice, the newest
    readable checkpoint of run_dir, or None for a fresh start. Ray Train's checkpoints are run_dir's own
    folders (its storage_path/name is run_dir), so the handed-over one is read by path: each worker then reads
    state.pt and its own rank file, where the Checkpoint's as_directory() would download every rank's files."""
    checkpoint = ray.train.get_checkpoint()
    name = posixpath.basename(checkpoint.path.rstrip("/")) if checkpoint is not None else None
    if name is not None and name not in config.skipped_checkpoints:
        return storage.join(config.run_dir, name)
    return config.resume_from


def train_loop(given: dict) -> None:
    """Ray Train entry point; `given["loop"]`: the `LoopConfig` (Ray Train hands a dict to its workers)."""
    quiet_expected_ray_warnings()
    config: LoopConfig = given["loop"]
    t = config.train
    apply_train_log_level(t.ray_log_level)
    context = ray.train.get_context()
    rank, world = context.get_world_rank(), context.get_world_size()
    device = ray.train.torch.get_device()
    torch.set_num_threads(torch_threads(config.cpus))
    global_batch, total_steps, seed = t.global_batch_size, t.steps, config.seed

    torch.manual_seed(seed)   # identical initial weights on every rank
    model_config = TRMConfig.from_dict(config.model)
    model = TRM(model_config, verbose=False).to(device)    # the driver reports its size
    resume = _resume_source(config)
    if config.init_from and resume is None:   # fine-tuning: the weights (EMA where saved), no optimiser state
        model.load_state_dict(config.init_from.weights(ema=True))
    optimizers = build_optimizers(model, lr=t.lr, weight_decay=t.weight_decay, betas=(t.beta1, t.beta2),
                                  puzzle_emb_lr=t.puzzle_emb_lr, puzzle_emb_weight_decay=t.puzzle_emb_weight_decay)
    ema = EMA(model, rate=t.ema_rate) if t.ema else None
    torch.manual_seed(seed + 1 + rank)   # halting exploration differs per rank, as the reference
    carry = model.empty_carry(global_batch // world, device)
    step, epoch, consumed, best_metric = 0, 0, 0, None

    io_seconds = {}      # checkpoint reads and writes, shown in the next step's record
    if resume is not None:
        began = time.perf_counter()
        checkpoint = Checkpoint.read(resume)
        state, mine = checkpoint.state(), checkpoint.rank_state(rank)
        step, _ = load_training_state(state, model, optimizers, ema=ema)
        best_metric = state.get("best_metric")
        del state
        carry = Carry.from_state_dict(mine["carry"]).to(device)
        torch.set_rng_state(mine["rng"])
        epoch, consumed = mine["epoch"], mine["consumed"]
        io_seconds["train/resume_load_s"] = time.perf_counter() - began
        if rank == 0:
            log.info("resumed from %s at step %d", resume, step)
    start_step = step

    train_split = SplitFiles(storage.join(config.data_dir, "train"))
    index = train_split.read_columns(["group_id", "aug_index"])
    stream = ExampleStream(train_split, GroupSampler(index["group_id"], index["aug_index"], seed), rank, world,
                           chunk=max(256, global_batch // world), epoch=epoch, consumed=consumed,
                           in_memory=split_fits_in_memory(t.in_memory_mb, config.manifest),
                           window_rows=t.stream_window_rows)
    del index
    arc = config.manifest.get("task") == "arc"
    eval_examples, arc_rows = (load_eval_examples(SplitFiles(storage.join(config.data_dir, "val")),
                                                  t.eval_examples, rank, world, arc=arc)
                               if config.has_eval else (None, None))
    eta = TrainingEta(total_steps, t.eval_every, t.checkpoint_every, config.has_eval)
    metrics_log, progress = None, Poster(config.progress_board, eta)
    if rank == 0:
        metrics_log = MetricsLog(config.run_dir, upto_step=start_step, logger=config.logger,
                                 wandb_project=t.wandb_project, config=config.saved_config)

    eval_every, checkpoint_every = t.eval_every or 0, t.checkpoint_every or 0
    compiled = compile_pays(t.compile, device, model_config)
    if compiled:
        use_own_inductor_cache(f"rank{rank}")
    train_step = SupervisionStep(model, loss=True, compiled=compiled, mode=t.compile_mode)
    evaluator = Evaluator(model, ema, compiled, t.compile_mode)
    throughput = {"tokens": model_config.seq_len, "flops": train_step_flops_per_sample(model_config),
                  "peak_flops": peak_flops(device)}
    halted = carry.halted.cpu()     # then each step's copy, started after its forward, read at the next step
    pending = None                  # the previous step's record inputs: logged one step late, once its sums arrived
    eval_compile_logged = False
    while step < total_steps:
        began = time.perf_counter()
        need = int(halted.sum())
        carry = refill(carry, stream.take(need), halted=halted)
        carry, _, loss, metrics = train_step(carry)
        halted_copy = HostCopy(carry.halted)
        loss.backward()
        average_gradients(model)
        step += 1
        lr = set_lr(optimizers, step, warmup_steps=t.lr_warmup_steps, total_steps=total_steps,
                    lr_min_ratio=t.lr_min_ratio)
        trunk_frozen = step <= t.embedding_only_steps     # stage=adapt's first phase
        for optimizer in optimizers:
            if not (trunk_frozen and optimizer is optimizers[0] and len(optimizers) > 1):
                optimizer.step()
            optimizer.zero_grad()
        if ema is not None:
            ema.update(model)
        new_examples = torch.tensor(float(need)).to(device, non_blocking=True)   # blocking would wait for the GPU
        sums = torch.stack([metrics[k] for k in TRAIN_METRICS] + [new_examples])
        sums = HostCopy(all_reduce_sum(sums.double()))
        halted = halted_copy.get()
        if pending is not None and rank == 0:
            _log(metrics_log, progress, _finish(pending, global_batch, throughput))
        extra = dict(io_seconds)
        if step == start_step + 1 and compiled:
            extra["train/compile_s"] = train_step.compile_seconds
            if rank == 0:
                log.info("compiled the training step in %.1f s (train.compile=%s)", train_step.compile_seconds,
                         t.compile)
        pending = (step, sums, lr, time.perf_counter() - began, stream.epoch, extra)
        io_seconds = {}
        maybe_fail(t.fail_once_at_step, config.run_dir, step, rank, world)

        eval_metrics, evaluation_s, improved = {}, {}, False
        if eval_every and (step % eval_every == 0 or step == total_steps) and config.has_eval:
            evaluation_began = time.perf_counter()
            eval_metrics = evaluate(evaluator, eval_examples, max(1, global_batch // world), device, arc_rows, arc)
            # the progress line's ETA budgets the evaluations left with it
            evaluation_s = {"train/evaluation_s": time.perf_counter() - evaluation_began} if eval_metrics else {}
            if compiled and not eval_compile_logged:      # the first evaluation compiled the step
                eval_metrics["eval/compile_s"], eval_compile_logged = evaluator.step.compile_seconds, True
            score = selection_metric(eval_metrics)
            # Strictly better only: a tie keeps the earlier copy instead of uploading another one.
            improved = score is not None and (best_metric is None or score > best_metric)
            if improved:
                best_metric = score
        due = (checkpoint_every and step % checkpoint_every == 0) or step == total_steps or bool(eval_metrics)
        if eval_metrics or due:     # the record now, with the evaluation's results and before the checkpoint
            record = {**_finish(pending, global_batch, throughput), **eval_metrics, **evaluation_s}
            pending = None
            if rank == 0:
                _log(metrics_log, progress, record)
        if due:
            io_seconds = _save(step, model, optimizers, ema, carry, stream, best_metric, improved, eval_metrics,
                               config, rank, world, metrics_log, record)
    stream.close()
    if rank == 0:
        metrics_log.close()
