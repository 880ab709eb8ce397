"""The per-worker training loop that Ray Train runs on every rank (module level, so Ray pickles it by name).

Every rank holds the whole model (no DDP wrapper: `trm.average_gradients` all-reduces the gradients,
the sparse puzzle-table optimiser all-gathers its rows) and `global_batch_size / world` carry slots.

Data order: the reference's sampler (`pipeline.data.sampling`): per epoch a seeded permutation of the groups,
one version of each drawn uniformly, all of its examples; rank r keeps the epoch's positions p with
p % world == r. The order each rank sees is thereby a pure function of (seed, epoch, rank, world): ranks
never overlap, and a restarted rank skips exactly the rows it had consumed. Rows are read straight from the
split's Parquet files (`pipeline.data.split_reader`), not through Ray Data, so training needs no CPU for read tasks.

Two ways to hold the rows, chosen by the split's size (`train.in_memory_mb`):
- in memory (Sudoku, Maze, small ARC builds): every rank reads the split once.
- streamed (ARC at aug 1000, 6.5 GB): every rank keeps the split's small index (group and version of each
  row: 12 bytes a row) and reads, for a window of upcoming epochs, only the row groups holding its rows of
  them (`train.stream_window_rows` rows held at a time, plus the row groups being read).

Feeding (the reference's persistent carry): each step only the slots that halted take the next examples
of the rank's stream; the others keep their example and (y, z).
"""
import logging
import posixpath
import queue
import tempfile
import threading
import time

import numpy as np
import ray.train
import torch
import torch.distributed as dist

from pipeline import storage

from pipeline.tasks.arc import validation as arc_validation
from pipeline.checkpoints import checkpoint as ckpt
from pipeline.checkpoints.checkpoint import Checkpoint
from pipeline.train.metrics_log import MetricsLog
from pipeline.progress import Poster
from pipeline.ray_setup import apply_train_log_level, quiet_expected_ray_warnings, torch_threads, use_own_inductor_cache
from pipeline.data.sampling import GroupSampler
from pipeline.data.split_reader import SplitFiles
from trm import EMA, TRM, Carry, TRMConfig, act_loss, average_gradients, build_optimizers, evaluate_batch
from trm import load_training_state, refill, set_lr, training_state
from trm.compile import SupervisionStep, compile_pays
from trm.device import HostCopy, peak_flops
from trm.flops import train_step_flops_per_sample

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

    def __init__(self, split: SplitFiles, sampler: GroupSampler, rank: int, world: int, chunk: int,
                 window_rows: int, epoch: int = 0, consumed: int = 0, in_memory: bool = False,
                 prefetch_chunks: int = 8):
        if sampler.min_epoch_rows <= rank:
            raise RuntimeError(f"rank {rank}: the train split of {split.split_dir} has {sampler.min_epoch_rows} "
                               f"examples in an epoch, fewer than the {world} workers")
        self.split, self.sampler, self.rank, self.world = split, sampler, rank, world
        self.chunk, self.in_memory, self.window_rows = chunk, in_memory, max(1, int(window_rows))
        self.epoch, self.consumed = epoch, consumed
        self._current: tuple[int, dict] | None = None   # (epoch, rows) read but not taken yet
        # A reader thread keeps chunks ready, so reading never stalls a step (at an epoch or window boundary).
        # The order does not depend on timing.
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

    def _windows(self, epoch: int, skip: int):
        """(epochs, their lengths for this rank, rows, where each position's row is in rows): consecutive
        epochs of about window_rows rows (one epoch at a time when the whole split is held)."""
        whole = self.split.read_columns(list(COLUMNS)) if self.in_memory else None
        while True:
            epochs, positions = [], []
            while not epochs or sum(map(len, positions)) < self.window_rows:
                positions.append(self.sampler.rank_epoch(epoch, self.rank, self.world)[skip:])
                epochs.append(epoch)
                epoch, skip = epoch + 1, 0
                if whole is not None:
                    break
            flat = np.concatenate(positions)
            rows, at = (whole, flat) if whole is not None else self.split.read_distinct(flat, list(COLUMNS))
            yield epochs, [len(p) for p in positions], rows, at

    def _iterate(self, epoch: int, skip: int):
        for epochs, lengths, rows, at in self._windows(epoch, skip):
            done = 0
            for epoch, length in zip(epochs, lengths):
                for start in range(done, done + length, self.chunk):
                    index = at[start:min(start + self.chunk, done + length)]
                    yield epoch, {k: v[index] for k, v in rows.items()}
                done += length

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


def split_fits_in_memory(t: dict, manifest: dict) -> bool:
    """Whether each worker holds the train split in memory (tokens as uint8, one int64 id per row)."""
    examples = manifest.get("splits", {}).get("train", {}).get("examples", 0)
    return examples * (2 * int(manifest["seq_len"]) + 8) <= float(t["in_memory_mb"]) * 2**20


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
    sums = _all_reduce_sum(sums).cpu()
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
        metrics.update(arc_validation.scores(_all_gather(mine)))
    return metrics


def _all_gather(items: list) -> list:
    """Every rank's list, concatenated in rank order."""
    if not (dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1):
        return items
    gathered = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, items)
    return [item for part in gathered for item in part]


def selection_metric(eval_metrics: dict):
    """What `best_` is chosen by: ARC's voted pass@2 where there is one, else exact accuracy."""
    return eval_metrics.get("eval/pass@2", eval_metrics.get("eval/exact_accuracy"))


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
    run_dir = config["run_dir"]
    began = time.perf_counter()
    with tempfile.TemporaryDirectory() as local:
        ckpt.write_rank_state(local, rank, {"carry": carry.state_dict(), "rng": torch.get_rng_state(),
                                            "epoch": stream.epoch, "consumed": stream.consumed})
        if rank == 0:
            state = {**training_state(model, optimizers, step, ema=ema), "best_metric": best_metric}
            meta = {"step": step, "world_size": world, **eval_metrics}
            files = Checkpoint(storage.join(run_dir, ckpt.checkpoint_name(step)), config["saved_config"],
                               config["manifest"], meta, state).write(local)
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


def _resume_source(config: dict) -> str | None:
    """The checkpoint folder this attempt resumes from: the one Ray Train hands over (after a worker failure,
    the newest this run reported) unless the driver found it unreadable; else the driver's choice, the newest
    readable checkpoint of run_dir, or None for a fresh start. Ray Train's checkpoints are run_dir's own
    folders (its storage_path/name is run_dir), so the handed-over one is read by path: each worker then reads
    state.pt and its own rank file, where the Checkpoint's as_directory() would download every rank's files."""
    checkpoint = ray.train.get_checkpoint()
    name = posixpath.basename(checkpoint.path.rstrip("/")) if checkpoint is not None else None
    if name is not None and name not in config["skipped_checkpoints"]:
        return storage.join(config["run_dir"], name)
    return config["resume_from"]


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
    apply_train_log_level(str(t["ray_log_level"]))
    context = ray.train.get_context()
    rank, world = context.get_world_rank(), context.get_world_size()
    device = ray.train.torch.get_device()
    torch.set_num_threads(torch_threads(config["cpus"]))
    global_batch, total_steps, seed = int(t["global_batch_size"]), int(t["steps"]), int(config["seed"])

    torch.manual_seed(seed)   # identical initial weights on every rank
    model_config = TRMConfig.from_dict(config["model"])
    model = TRM(model_config, verbose=False).to(device)    # the driver reports its size
    resume = _resume_source(config)
    if config.get("init_from") and resume is None:   # fine-tuning: the weights (EMA where saved), no optimiser state
        model.load_state_dict(config["init_from"].weights(ema=True))
    optimizers = build_optimizers(model, lr=t["lr"], weight_decay=t["weight_decay"],
                                  betas=(t["beta1"], t["beta2"]), puzzle_emb_lr=t["puzzle_emb_lr"],
                                  puzzle_emb_weight_decay=t["puzzle_emb_weight_decay"])
    ema = EMA(model, rate=t["ema_rate"]) if t["ema"] else None
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

    train_split = SplitFiles(storage.join(config["data_dir"], "train"))
    index = train_split.read_columns(["group_id", "aug_index"])
    stream = ExampleStream(train_split, GroupSampler(index["group_id"], index["aug_index"], seed), rank, world,
                           chunk=max(256, global_batch // world), epoch=epoch, consumed=consumed,
                           in_memory=split_fits_in_memory(t, config["manifest"]),
                           window_rows=int(t["stream_window_rows"]))
    del index
    arc = config["manifest"].get("task") == "arc"
    eval_examples, arc_rows = (load_eval_examples(SplitFiles(storage.join(config["data_dir"], "val")),
                                                  t["eval_examples"], rank, world, arc=arc)
                               if config["has_eval"] else (None, None))
    metrics_log, progress = None, Poster(config.get("progress_board"))
    if rank == 0:
        metrics_log = MetricsLog(config["run_dir"], upto_step=start_step, logger=config["logger"],
                                 wandb_project=config["wandb_project"], config=config["saved_config"])

    eval_every, checkpoint_every = int(t["eval_every"] or 0), int(t["checkpoint_every"] or 0)
    compiled = compile_pays(t["compile"], device, model_config)
    if compiled:
        use_own_inductor_cache(f"rank{rank}")
    train_step = SupervisionStep(model, loss=True, compiled=compiled, mode=str(t["compile_mode"]))
    evaluator = Evaluator(model, ema, compiled, str(t["compile_mode"]))
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
        lr = set_lr(optimizers, step, warmup_steps=int(t["lr_warmup_steps"]), total_steps=total_steps,
                    lr_min_ratio=float(t["lr_min_ratio"]))
        trunk_frozen = step <= int(t.get("embedding_only_steps") or 0)     # stage=adapt's first phase
        for optimizer in optimizers:
            if not (trunk_frozen and optimizer is optimizers[0] and len(optimizers) > 1):
                optimizer.step()
            optimizer.zero_grad()
        if ema is not None:
            ema.update(model)
        new_examples = torch.tensor(float(need)).to(device, non_blocking=True)   # blocking would wait for the GPU
        sums = torch.stack([metrics[k] for k in TRAIN_METRICS] + [new_examples])
        sums = HostCopy(_all_reduce_sum(sums.double()))
        halted = halted_copy.get()
        if pending is not None and rank == 0:
            _log(metrics_log, progress, _finish(pending, global_batch, throughput))
        extra = dict(io_seconds)
        if step == start_step + 1 and compiled:
            extra["train/compile_s"] = train_step.compile_seconds
            if rank == 0:
                log.info("compiled the training step in %.1f s (train.compile=%s)", train_step.compile_seconds,
                         t["compile"])
        pending = (step, sums, lr, time.perf_counter() - began, stream.epoch, extra)
        io_seconds = {}
        _maybe_fail(config, step, rank, world)

        eval_metrics, improved = {}, False
        if eval_every and (step % eval_every == 0 or step == total_steps) and config["has_eval"]:
            eval_metrics = evaluate(evaluator, eval_examples, max(1, global_batch // world), device, arc_rows, arc)
            if compiled and not eval_compile_logged:      # the first evaluation compiled the step
                eval_metrics["eval/compile_s"], eval_compile_logged = evaluator.step.compile_seconds, True
            score = selection_metric(eval_metrics)
            # Strictly better only: a tie keeps the earlier copy instead of uploading another one.
            improved = score is not None and (best_metric is None or score > best_metric)
            if improved:
                best_metric = score
        due = (checkpoint_every and step % checkpoint_every == 0) or step == total_steps or bool(eval_metrics)
        if eval_metrics or due:     # the record now, with the evaluation's results and before the checkpoint
            record = {**_finish(pending, global_batch, throughput), **eval_metrics}
            pending = None
            if rank == 0:
                _log(metrics_log, progress, record)
        if due:
            io_seconds = _save(step, model, optimizers, ema, carry, stream, best_metric, improved, eval_metrics,
                               config, rank, world, metrics_log, record)
    stream.close()
    if rank == 0:
        metrics_log.close()
