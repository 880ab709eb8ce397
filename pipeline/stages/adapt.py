"""`stage=adapt`: test-time training of a trained ARC model on tasks it never saw.

`python -m pipeline.run stage=adapt task=arc task.source=<new tasks> adapt.base=<checkpoint folder>
 data_dir=<their dataset> run_dir=<adapted run>`   (then `stage=eval_arc` with the same data_dir and run_dir)

A TRM answers only tasks whose puzzle-embedding rows it trained (blank rows score 0). This stage builds the
new tasks' dataset as `stage=augment` does (or keeps it), then starts from `adapt.base` (a checkpoint folder
of this project, or a reference run): its network (EMA weights where saved) and a new puzzle table holding
one row per version of the new tasks, each the mean of the base's trained rows (`run_dir/adapt_start/`,
written once). It trains on the new tasks' demonstration pairs with the train.* options through the same
recipe and loop as `stage=train` (resumable, multi-worker, s3://): the embeddings alone for the first
`adapt.embedding_only_fraction` of the steps, then everything (`adapt.mode=full`), or the embeddings alone
throughout (`adapt.mode=embeddings`). The base checkpoint is only read.
"""
import copy
import dataclasses
import logging

import torch
from omegaconf import OmegaConf, open_dict

from pipeline import storage
from pipeline.checkpoints import checkpoint as ckpt
from pipeline.checkpoints import reference_data
from pipeline.checkpoints.checkpoint import Checkpoint
from pipeline.errors import PipelineError
from pipeline.options import AdaptOptions, Options
from pipeline.stages import augment
from pipeline.train.recipe import TrainRecipe, fit

log = logging.getLogger(__name__)

START = "adapt_start"          # run_dir/adapt_start/: the weights adaptation starts from


def embedding_only_steps(a: AdaptOptions, steps: int) -> int:
    """Steps that train the embeddings alone: all of them for `embeddings`, the first `fraction` for `full`."""
    return steps if a.mode == "embeddings" else int(round(a.embedding_only_fraction * steps))


def mean_rows(table: torch.Tensor, rows: int) -> torch.Tensor:
    """A table of `rows` rows for new puzzles: row 0 (the blank identifier) kept, every other row the mean of
    the base's trained rows (those not all zero: the table starts at zero and only trained rows move)."""
    trained = table[1:][table[1:].abs().sum(1) > 0]
    mean = trained.mean(0) if len(trained) else torch.zeros(table.shape[1], dtype=table.dtype)
    new = mean.expand(rows, -1).clone()
    new[0] = table[0]
    return new


def _base(cfg) -> Checkpoint:
    given = Options.of(cfg).adapt.base
    if not given:
        raise PipelineError("stage=adapt needs adapt.base=<checkpoint folder> (the trained model to adapt)")
    base = Checkpoint.open(given, "adapt.base", require_test=False, given=reference_data.given(cfg))
    if not base.converted and base.path.startswith(cfg.run_dir.rstrip("/") + "/"):
        raise PipelineError(f"adapt.base={base.path} lies inside run_dir={cfg.run_dir}: adapt into another run_dir "
                            f"(the base checkpoint is never written to)")
    return base


def _model_section(base: Checkpoint, manifest: dict) -> dict:
    """The base's model options, its data fields taken from the new dataset (which must match its shape)."""
    for key in ("task", "seq_len", "vocab_size"):
        if base.manifest.get(key) != manifest.get(key):
            raise PipelineError(f"adapt.base {base.path} was trained on data with {key}={base.manifest.get(key)!r}, "
                                f"the new tasks' dataset has {key}={manifest.get(key)!r} (build it with the base's "
                                f"task.canvas)")
    return {k: v for k, v in base.config["model"].items() if k not in ckpt.MANIFEST_FIELDS}


def _write_start(cfg, base: Checkpoint, manifest: dict) -> Checkpoint:
    """run_dir/adapt_start/: the base's network (EMA weights where saved, unless adapt.ema=false) and a table
    of mean rows for the new dataset's identifiers; written once, meta.json last."""
    dest = storage.join(cfg.run_dir, START)
    if ckpt.is_complete(dest, need_ranks=False):
        return Checkpoint.read(dest)
    weights = base.weights(Options.of(cfg).adapt.ema)
    weights["puzzle_emb.weights"] = mean_rows(weights["puzzle_emb.weights"], int(manifest["num_puzzle_identifiers"]))
    meta = {"step": 0, "world_size": 1, "adapted_from": base.path}
    Checkpoint(dest, {"model": OmegaConf.to_container(cfg.model, resolve=True)}, manifest, meta,
               ckpt.start_state(weights, 0, ema=None)).save(dest)
    log.info("adaptation starts from %s: %s's network, %d new puzzle-embedding rows at the mean of its trained rows",
             dest, base.path, int(manifest["num_puzzle_identifiers"]) - 1)
    return Checkpoint.read(dest)


def run(cfg) -> dict:
    if cfg.task.name != "arc":
        raise PipelineError(f"stage=adapt trains ARC tasks' embeddings; task={cfg.task.name} has no new tasks to adapt to")
    base = _base(cfg)
    manifest = augment.run(cfg)
    cfg = copy.deepcopy(cfg)
    with open_dict(cfg):
        cfg.model = _model_section(base, manifest)
    given = Options.of(cfg)
    options = dataclasses.replace(given.train, embedding_only_steps=embedding_only_steps(given.adapt, given.train.steps))
    model_config = ckpt.model_config(OmegaConf.to_container(cfg.model, resolve=True), manifest)
    log.info("adapting to %d tasks for %d steps, the first %d on the embeddings alone (adapt.mode=%s)",
             manifest["splits"]["train"]["groups"], options.steps, options.embedding_only_steps, given.adapt.mode)
    return fit(TrainRecipe(cfg=cfg, options=options, section="train", data_dir=cfg.data_dir, manifest=manifest,
                           run_dir=cfg.run_dir, model_config=model_config,
                           start_weights=lambda: _write_start(cfg, base, manifest)))
