"""The per-worker training loop that Ray Train runs on every rank (module level, so Ray pickles it by name).

Every rank holds the whole model (no DDP wrapper: `trm.average_gradients` all-reduces the gradients,
the sparse puzzle-table optimiser all-gathers its rows) and `global_batch_size / world` carry slots.

Data order. Every rank streams the same train split with the same seeded per-epoch shuffle and keeps
the rows whose position p in that stream has p % world == rank. The order each rank sees is thereby a
pure function of (seed, epoch, rank, world): ranks never overlap, and a restarted rank can skip exactly
the rows it had consumed. Ray Data's `streaming_split` is not used because it assigns blocks to whichever
rank asks first (no ordering guarantee), which would make exact resume impossible.

Two ways to get that stream, chosen by the split's size (`train.in_memory_mb`):
- in memory (Sudoku, Maze, small ARC builds): every rank reads the split once and draws a seeded full
  permutation of it per epoch. Re-reading a small split through Ray Data every epoch costs seconds of
  CPU per epoch, which on a small box slows the training steps it overlaps by half or more.
- streamed (ARC at aug 1000, 6.5 GB): every rank reads the whole split once per epoch through a seeded
  local shuffle buffer; the read is small next to the compute (one epoch lasts thousands of steps).

Feeding (the reference's persistent carry): each step only the slots that halted take the next examples
of the rank's stream; the others keep their example and (y, z).
"""
import logging
import os
import posixpath
import queue
import tempfile
import threading
import time

import numpy as np
import ray.train
import torch
import torch.distributed as dist

from pipeline import checkpoints as ckpt
from pipeline import storage
from pipeline.metrics_log import MetricsLog
from pipeline.progress import Poster
from pipeline.ray_setup import quiet_expected_ray_warnings
from trm import EMA, TRM, Carry, TRMConfig, act_loss, average_gradients, build_optimizers, evaluate_batch
from trm import load_training_state, refill, set_lr, training_state

log = logging.getLogger(__name__)

TRAIN_METRICS = ("count", "accuracy", "exact_accuracy", "q_halt_accuracy", "steps", "lm_loss", "q_halt_loss")
CHAOS_MARKER = ".chaos_failed_once"
COLUMNS = ("inputs", "labels", "puzzle_identifier")


def to_examples(batch: dict) -> dict:
    """Parquet columns (uint8 tokens, label 0 = ignore) -> trm's example tensors (int64, label -100)."""
    inputs, labels, ids = (torch.from_numpy(np.array(batch[k], dtype=np.int64))   # copies: writable
                           for k in COLUMNS)
    return {"inputs": inputs, "labels": labels.masked_fill(labels == 0, -100), "puzzle_identifiers": ids}


class ExampleStream:
    """This rank's examples, epoch after epoch, from a position (epoch, rows of this rank consumed)."""

    def __init__(self, shard, seed: int, rank: int, world: int, shuffle_buffer: int, chunk: int,
                 epoch: int = 0, consumed: int = 0, in_memory: bool = False, prefetch_chunks: int = 8):
        self.shard, self.seed, self.rank, self.world = shard, seed, rank, world
        self.shuffle_buffer, self.chunk, self.in_memory = shuffle_buffer, chunk, in_memory
        self._rows: dict | None = None   # the whole split, when in_memory
        self.epoch, self.consumed = epoch, consumed
        self._current: tuple[int, dict] | None = None   # (epoch, rows) read but not taken yet
        # A reader thread keeps chunks ready: starting each epoch's Ray Data read takes seconds, which
        # would otherwise stall training at every epoch boundary. The order does not depend on timing.
        self._queue: queue.Queue = queue.Queue(maxsize=prefetch_chunks)
        self._stop = threading.Event()
        self._reader = threading.Thread(target=self._read, args=(epoch, consumed), daemon=True,
                                        name=f"example-stream-{rank}")
        self._reader.start()

    def _read(self, epoch: int, skip: int) -> None:
        try:
            for item in self._iterate(epoch, skip):
                while not self._stop.is_set():
                    try:
                        self._queue.put(item, timeout=0.5)
                        break
                    except queue.Full:
                        continue
                if self._stop.is_set():
                    return
        except BaseException as err:  # handed to the training thread, which raises it
            self._queue.put(err)

    def close(self) -> None:
        self._stop.set()
        self._reader.join(timeout=5)

    def _epoch_seed(self, epoch: int) -> int:
        # The same on every rank: the ranks partition one shuffled stream.
        return (self.seed * 1_000_003 + epoch) % 2**31

    def _streamed_epoch(self, epoch: int):
        """This rank's rows of one epoch, read from storage through a seeded local shuffle buffer."""
        position = 0
        for batch in self.shard.iter_batches(
                batch_size=self.chunk, batch_format="numpy", drop_last=False,
                local_shuffle_buffer_size=self.shuffle_buffer or None,
                local_shuffle_seed=self._epoch_seed(epoch) if self.shuffle_buffer else None):
            n = len(batch["puzzle_identifier"])
            mine = (position + np.arange(n)) % self.world == self.rank
            position += n
            yield {k: batch[k][mine] for k in COLUMNS}

    def _in_memory_epoch(self, epoch: int):
        """This rank's rows of one epoch: a seeded permutation of the split, read once."""
        if self._rows is None:
            self._rows = read_whole(self.shard) or {k: np.zeros(0, np.int64) for k in COLUMNS}
        order = np.random.default_rng(self._epoch_seed(epoch)).permutation(len(self._rows["puzzle_identifier"]))
        mine = order[self.rank::self.world]
        for start in range(0, len(mine), self.chunk):
            index = mine[start:start + self.chunk]
            yield {k: v[index] for k, v in self._rows.items()}

    def _iterate(self, epoch: int, skip: int):
        epoch_rows = self._in_memory_epoch if self.in_memory else self._streamed_epoch
        while True:
            produced = 0
            for rows in epoch_rows(epoch):
                produced += len(rows["puzzle_identifier"])
                if skip:
                    dropped = min(skip, len(rows["puzzle_identifier"]))
                    rows = {k: v[dropped:] for k, v in rows.items()}
                    skip -= dropped
                if len(rows["puzzle_identifier"]):
                    yield epoch, rows
            if produced == 0:
                raise RuntimeError(f"rank {self.rank}: the train split has no rows for this rank "
                                   f"({self.world} workers)")
            epoch, skip = epoch + 1, 0

    def take(self, k: int) -> dict:
        """The next k examples as trm example tensors; advances (epoch, consumed)."""
        parts, have = [], 0
        while have < k:
            if self._current is None:
                item = self._queue.get()
                if isinstance(item, BaseException):
                    raise item
                self._current = item
            epoch, rows = self._current
            if epoch != self.epoch:
                self.epoch, self.consumed = epoch, 0
            n = min(k - have, len(rows["puzzle_identifier"]))
            parts.append({key: v[:n] for key, v in rows.items()})
            rest = {key: v[n:] for key, v in rows.items()}
            self._current = (epoch, rest) if len(rest["puzzle_identifier"]) else None
            have += n
            self.consumed += n
        if not parts:
            empty = np.zeros((0, 0), dtype=np.uint8)
            return to_examples({"inputs": empty, "labels": empty, "puzzle_identifier": np.zeros(0, np.int64)})
        return to_examples({key: np.concatenate([p[key] for p in parts]) for key in parts[0]})


def _all_reduce_sum(values: torch.Tensor) -> torch.Tensor:
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        dist.all_reduce(values)
    return values


def read_whole(shard) -> dict | None:
    """Every row of a dataset shard, in its order, as numpy COLUMNS; None when it has no rows."""
    batches = list(shard.iter_batches(batch_size=4096, batch_format="numpy"))
    if not batches:
        return None
    return {k: np.concatenate([b[k] for b in batches]) for k in COLUMNS}


def split_fits_in_memory(t: dict, manifest: dict) -> bool:
    """Whether each worker holds the train split in memory (tokens as uint8, one int64 id per row)."""
    examples = manifest.get("splits", {}).get("train", {}).get("examples", 0)
    return examples * (2 * int(manifest["seq_len"]) + 8) <= float(t["in_memory_mb"]) * 2**20


def load_eval_examples(shard, rank: int, world: int) -> dict | None:
    """This rank's share (every world-th row) of the fixed evaluation subset."""
    columns = read_whole(shard) if shard is not None else None
    if columns is None:
        return None
    return to_examples({k: v[rank::world] for k, v in columns.items()})


def evaluate(model: TRM, ema: EMA | None, examples: dict | None, batch_size: int, device) -> dict:
    """Exact and token accuracy after all N_sup steps and per step, on the EMA weights, summed over ranks."""
    n_sup = model.config.halt_max_steps
    sums = torch.zeros(1 + 3 * n_sup, dtype=torch.float64, device=device)
    if examples is not None and len(examples["inputs"]):
        evaluated = ema.copy_model(model) if ema is not None else model
        for start in range(0, len(examples["inputs"]), batch_size):
            result = evaluate_batch(evaluated, {k: v[start:start + batch_size] for k, v in examples.items()})
            sums += torch.cat([torch.tensor([float(result.count)], device=device),
                               result.per_step["accuracy"].double(), result.per_step["exact_accuracy"].double(),
                               result.per_step["q_halt_accuracy"].double()])
        del evaluated
    sums = _all_reduce_sum(sums).cpu()
    count = sums[0].item()
    if count == 0:
        return {}
    accuracy, exact, q_halt = (sums[1 + i * n_sup:1 + (i + 1) * n_sup] / count for i in range(3))
    metrics = {"eval/count": count, "eval/accuracy": accuracy[-1].item(), "eval/exact_accuracy": exact[-1].item(),
               "eval/q_halt_accuracy": q_halt[-1].item()}
    metrics.update({f"eval/exact_accuracy_step{i + 1}": exact[i].item() for i in range(n_sup)})
    return metrics


def _train_record(step: int, sums: torch.Tensor, global_batch: int, lr: float, seconds: float, epoch: int) -> dict:
    values = dict(zip(TRAIN_METRICS + ("new_examples",), sums.tolist()))
    record = {"step": step, "time": time.time(), "train/lr": lr, "train/lm_loss": values["lm_loss"] / global_batch,
              "train/q_halt_loss": values["q_halt_loss"] / global_batch, "train/count": values["count"],
              "train/new_examples": values["new_examples"], "train/epoch": epoch,
              "train/samples_per_s": global_batch / max(seconds, 1e-9)}
    if values["count"] > 0:
        for key in ("accuracy", "exact_accuracy", "q_halt_accuracy", "steps"):
            record[f"train/{key}"] = values[key] / values["count"]
    return record


def _save(step, model, optimizers, ema, carry, stream, best_metric, improved, eval_metrics, config, rank, world,
          metrics_log, report_metrics):
    """Write this rank's files, then report them into checkpoint_<step> (every rank calls report)."""
    run_dir = config["run_dir"]
    with tempfile.TemporaryDirectory() as local:
        torch.save({"carry": carry.state_dict(), "rng": torch.get_rng_state(), "epoch": stream.epoch,
                    "consumed": stream.consumed}, os.path.join(local, ckpt.rank_file(rank)))
        if rank == 0:
            state = training_state(model, optimizers, step, ema=ema)
            state["best_metric"] = best_metric
            torch.save(state, os.path.join(local, ckpt.STATE))
            ckpt.write_json(os.path.join(local, ckpt.CONFIG), config["saved_config"])
            ckpt.write_json(os.path.join(local, ckpt.MANIFEST), config["manifest"])
            ckpt.write_json(os.path.join(local, ckpt.META), {"step": step, "world_size": world, **eval_metrics})
            if improved:
                _keep_best(local, run_dir, step)
            metrics_log.flush()   # before the checkpoint: a resume truncates to it, so no step is lost
        ray.train.report(report_metrics, checkpoint=ray.train.Checkpoint.from_directory(local),
                         checkpoint_dir_name=ckpt.checkpoint_name(step))


def _keep_best(local: str, run_dir: str, step: int) -> None:
    """Copy rank 0's files to best_<step> (meta.json last), then drop the older best folders."""
    dest = storage.join(run_dir, ckpt.best_name(step))
    ckpt.upload_files(local, [ckpt.STATE, ckpt.CONFIG, ckpt.MANIFEST, ckpt.META], dest)
    for _, path in ckpt.folders(run_dir, "best"):
        if path != dest:
            storage.remove(path)


def _resume_source(config: dict):
    """What this attempt resumes from: the checkpoint Ray Train hands over (after a worker failure, the
    newest this run reported) unless the driver found it unreadable; else the driver's choice, the newest
    readable checkpoint of run_dir (a path), or None for a fresh start."""
    checkpoint = ray.train.get_checkpoint()
    if checkpoint is not None and posixpath.basename(checkpoint.path.rstrip("/")) not in config["skipped_checkpoints"]:
        return checkpoint
    return config["resume_from"]


def _load_resume(source, rank: int) -> tuple[dict, dict, str]:
    """(training state, this rank's state, where from) of a Ray Checkpoint or a checkpoint folder path."""
    if isinstance(source, str):
        return ckpt.load_checkpoint(source)[0], ckpt.load_rank_state(source, rank), source
    with source.as_directory() as local:
        return ckpt.load_checkpoint(local)[0], ckpt.load_rank_state(local, rank), source.path


def _maybe_fail(config: dict, step: int, rank: int, world: int) -> None:
    """Chaos option `train.fail_once_at_step`: the last rank raises once at that step (marker in run_dir)."""
    at = config["train"].get("fail_once_at_step")
    if at is None or step != int(at) or rank != world - 1:
        return
    marker = storage.join(config["run_dir"], CHAOS_MARKER)
    if storage.exists(marker):
        return
    storage.write_json_atomic(marker, {"step": step, "rank": rank})
    raise RuntimeError(f"chaos: train.fail_once_at_step={at} (rank {rank})")


def train_loop(config: dict) -> None:
    """Ray Train entry point. `config`: train (the train group), model (TRMConfig fields), run_dir, seed,
    saved_config, manifest, logger, wandb_project."""
    quiet_expected_ray_warnings()
    t = config["train"]
    context = ray.train.get_context()
    rank, world = context.get_world_rank(), context.get_world_size()
    device = ray.train.torch.get_device()
    global_batch, total_steps, seed = int(t["global_batch_size"]), int(t["steps"]), int(config["seed"])

    torch.manual_seed(seed)   # identical initial weights on every rank
    model_config = TRMConfig.from_dict(config["model"])
    model = TRM(model_config, verbose=False).to(device)    # the driver reports its size
    resume = _resume_source(config)
    if config.get("init_from") and resume is None:   # fine-tuning: the weights (EMA where saved), no optimiser state
        state, _, _ = ckpt.load_checkpoint(config["init_from"])
        model.load_state_dict({**state["model"], **((state.get("ema") or {}).get("shadow") or {})})
    optimizers = build_optimizers(model, lr=t["lr"], weight_decay=t["weight_decay"],
                                  betas=(t["beta1"], t["beta2"]), puzzle_emb_lr=t["puzzle_emb_lr"],
                                  puzzle_emb_weight_decay=t["puzzle_emb_weight_decay"])
    ema = EMA(model, rate=t["ema_rate"]) if t["ema"] else None
    torch.manual_seed(seed + 1 + rank)   # halting exploration differs per rank, as the reference
    carry = model.empty_carry(global_batch // world, device)
    step, epoch, consumed, best_metric = 0, 0, 0, None

    if resume is not None:
        state, mine, where = _load_resume(resume, rank)
        step, _ = load_training_state(state, model, optimizers, ema=ema)
        best_metric = state.get("best_metric")
        del state
        carry = Carry.from_state_dict(mine["carry"]).to(device)
        torch.set_rng_state(mine["rng"])
        epoch, consumed = mine["epoch"], mine["consumed"]
        if rank == 0:
            log.info("resumed from %s at step %d", where, step)
    start_step = step

    stream = ExampleStream(ray.train.get_dataset_shard("train"), seed, rank, world,
                           shuffle_buffer=int(t["shuffle_buffer"]), chunk=max(256, global_batch // world),
                           epoch=epoch, consumed=consumed, in_memory=split_fits_in_memory(t, config["manifest"]))
    eval_shard = ray.train.get_dataset_shard("eval") if config["has_eval"] else None
    eval_examples = load_eval_examples(eval_shard, rank, world) if eval_shard is not None else None
    metrics_log, progress = None, Poster(config.get("progress_board"))
    if rank == 0:
        metrics_log = MetricsLog(config["run_dir"], upto_step=start_step, logger=config["logger"],
                                 wandb_project=config["wandb_project"], config=config["saved_config"])

    eval_every, checkpoint_every = int(t["eval_every"] or 0), int(t["checkpoint_every"] or 0)
    while step < total_steps:
        began = time.perf_counter()
        need = int(carry.halted.sum())
        carry = refill(carry, stream.take(need))
        carry, out = model(carry)
        loss, metrics = act_loss(out, carry, model_config)
        loss.backward()
        average_gradients(model)
        step += 1
        lr = set_lr(optimizers, step, warmup_steps=int(t["lr_warmup_steps"]), total_steps=total_steps,
                    lr_min_ratio=float(t["lr_min_ratio"]))
        for optimizer in optimizers:
            optimizer.step()
            optimizer.zero_grad()
        if ema is not None:
            ema.update(model)
        sums = torch.stack([metrics[k] for k in TRAIN_METRICS] + [torch.tensor(float(need), device=device)])
        sums = _all_reduce_sum(sums.double()).cpu()
        record = _train_record(step, sums, global_batch, lr, time.perf_counter() - began, stream.epoch)
        _maybe_fail(config, step, rank, world)

        eval_metrics, improved = {}, False
        if eval_every and (step % eval_every == 0 or step == total_steps) and config["has_eval"]:
            eval_metrics = evaluate(model, ema, eval_examples, max(1, global_batch // world), device)
            score = eval_metrics.get("eval/exact_accuracy")
            # Strictly better only: a tie keeps the earlier copy instead of uploading another one.
            improved = score is not None and (best_metric is None or score > best_metric)
            if improved:
                best_metric = score
            record.update(eval_metrics)
        if rank == 0:
            metrics_log.log(record)
            progress.post(record)
        due = (checkpoint_every and step % checkpoint_every == 0) or step == total_steps or bool(eval_metrics)
        if due:
            _save(step, model, optimizers, ema, carry, stream, best_metric, improved, eval_metrics, config, rank,
                  world, metrics_log, record)
    stream.close()
    if rank == 0:
        metrics_log.close()
