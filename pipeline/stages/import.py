"""`stage=import`: a checkpoint of the original TRM code as a checkpoint folder of this project.

`trm-pipeline stage=import checkpoint=<reference run folder | step_<N> file> run_dir=<new>`
(ARC: `task.identifiers=<identifiers.json>` unless it lies beside the checkpoint; an attention model with
rotary positions also needs its sequence length: `+model.seq_len=` or `data_dir=` its data, see
`pipeline.checkpoints.reference_data`)

Reads `step_<N>` and `all_config.yaml` (local or `s3://`; `pipeline.checkpoints.reference` says how) and
writes `run_dir/imported_<N>/`: `state.pt` with the step file's weights as both the raw and the EMA
weights, `config.json` (the model config, and the reference's config as read), `manifest.json` (the data
the model expects), `identifiers.json` for an ARC run when one is given or lies beside the checkpoint, and
`meta.json` last (step, source file, its sha256). Evaluate it with `stage=eval checkpoint=<that folder>`
(ARC: `stage=eval_arc`, which fits its table rows to the dataset by name). The other stages also take a
reference run as it is (`checkpoint=`, `train.init_from=`, `adapt.base=`), converting it in memory each time;
this stage converts it once, into a folder.
"""
import logging

from pipeline import storage
from pipeline.checkpoints import reference as ref
from pipeline.checkpoints import reference_data
from pipeline.errors import PipelineError

log = logging.getLogger(__name__)


def run(cfg) -> dict:
    if cfg.checkpoint in (None, "latest", "best"):
        raise PipelineError("stage=import needs checkpoint=<reference run folder or step_<N> file>")
    source = storage.to_absolute(str(cfg.checkpoint))
    if not ref.is_reference(source):
        raise PipelineError(f"checkpoint={cfg.checkpoint}: not a reference run (a step_<N> file, or a folder with "
                            f"step_<N> beside {ref.CONFIG_FILE})")
    imported = ref.read_reference(source, cfg.task.get("identifiers"), reference_data.given(cfg))
    dest = ref.to_checkpoint(imported, source).save(storage.join(cfg.run_dir, ref.imported_name(imported.step)))
    summary = {"checkpoint": dest, "source": imported.source, "step": imported.step, "sha256": imported.sha256,
               "task": imported.manifest["task"], "seq_len": imported.config.seq_len,
               "seq_len_from": imported.manifest["seq_len_source"], "num_puzzle_identifiers": imported.config.num_puzzle_identifiers,
               "identifiers": imported.names is not None}
    print("\n".join(f"{k:>22}: {v}" for k, v in summary.items()), flush=True)
    if imported.manifest["task"] == "arc" and imported.names is None:
        log.warning("no %s given (task.identifiers=) or beside the checkpoint: stage=eval_arc will refuse this ARC "
                    "checkpoint until one is given", ref.IDENTIFIERS_FILE)
    return summary
