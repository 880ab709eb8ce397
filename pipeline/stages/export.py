"""`stage=export`: a checkpoint of this project in the original TRM code's layout.

`python -m pipeline.run stage=export [checkpoint=best|latest|<folder>] export.dir=<folder>`

Writes `export.dir/step_<N>` (a plain state_dict as `pretrain.py` saves it: the reference's key names and
order, `_orig_mod.model.inner.` prefix, H_init / L_init in the forward dtype and the rest float32; the EMA
weights unless `export.ema=false`) and `all_config.yaml` (its `arch:` fields, trainer
fields and a `data_manifest:` block the reference ignores), plus for ARC `identifiers.json` naming each
table row as the reference's builder does. The original `pretrain.py` loads `step_<N>` with
`load_checkpoint=`; `stage=import` reads the folder back to the same model.
"""
import logging

import torch

from pipeline import storage
from pipeline.checkpoints import arc_identifiers
from pipeline.checkpoints import reference as ref
from pipeline.checkpoints.checkpoint import Checkpoint
from pipeline.data import dataset_format as fmt
from pipeline.errors import PipelineError
from pipeline.infer import predictor
from pipeline.options import Options

log = logging.getLogger(__name__)


def run(cfg) -> dict:
    x = Options.of(cfg).export
    if not x.dir:
        raise PipelineError("stage=export needs export.dir=<folder> (local or s3://) to write the reference layout to")
    dest = storage.to_absolute(x.dir)
    if storage.exists(storage.join(dest, ref.CONFIG_FILE)) and not cfg.overwrite:
        raise PipelineError(f"export.dir={x.dir} already holds a run ({ref.CONFIG_FILE}); choose another "
                            f"folder or pass overwrite=true")
    checkpoint = predictor.resolve_checkpoint(cfg.checkpoint, cfg.run_dir)
    manifest = checkpoint.manifest
    weights = checkpoint.weights(x.ema, required_by="export.ema")
    names = _identifier_names(checkpoint, cfg) if manifest.get("task") == "arc" else None
    files = ref.write_reference({k: v.to(torch.float32) for k, v in weights.items()}, checkpoint.model_config,
                                checkpoint.config, manifest, checkpoint.step, dest, names)
    summary = {"checkpoint": checkpoint.path, "step": checkpoint.step, "files": files, "ema": x.ema}
    print("\n".join(f"{k:>10}: {v}" for k, v in summary.items()), flush=True)
    return summary


def _identifier_names(checkpoint: Checkpoint, cfg) -> list:
    """identifiers.json for an ARC checkpoint: its own (rows in the reference's order) or, for one trained or
    fitted here, each row's version named from the dataset's identifiers file."""
    path, manifest = checkpoint.path, checkpoint.manifest
    if manifest.get("identifier_order") == "reference":
        own = checkpoint.row_names()
        if own is None:
            raise PipelineError(f"checkpoint {path} has a reference-ordered ARC table but no {ref.IDENTIFIERS_FILE}")
        return own
    data_dir = manifest.get("data_dir") or checkpoint.config.get("data_dir") or cfg.data_dir
    if not fmt.dataset_complete(data_dir):
        raise PipelineError(f"exporting an ARC checkpoint needs its dataset's identifiers file to name the table "
                            f"rows, and data_dir={data_dir} has none; pass data_dir=<the ARC data it was trained on>")
    versions = arc_identifiers.dataset_versions(data_dir, fmt.read_manifest(data_dir))
    rows = int(manifest["num_puzzle_identifiers"])
    names = [arc_identifiers.BLANK] * rows
    for row, name in zip(versions["puzzle_identifier"], versions["name"]):
        if row >= rows:
            raise PipelineError(f"data_dir={data_dir} has puzzle_identifier {row}, beyond checkpoint {path}'s "
                                f"{rows} table rows: pass the data_dir it was trained on")
        names[int(row)] = name
    return names
