"""`stage=augment`: build the task's dataset (Parquet shards + dataset.json) with Ray Data.

The task's builder is `build(cfg, data_dir) -> dict` of its module `pipeline/tasks/<task>.py`: it writes the
splits (through `dataset_format.write_split`) and returns the task's manifest fields.

A complete dataset is kept only when it was made from this command's inputs (`pipeline.data.fingerprint`:
the task options, the seed, the source files' sizes and digests); otherwise the stage stops and names
what differs, or, with `overwrite=true`, builds the new dataset beside the old one and replaces it only
once the build has succeeded (a bad source leaves the old dataset as it was).
"""
import logging

from pipeline import storage, tasks
from pipeline.data import dataset_format as fmt
from pipeline.data import fingerprint
from pipeline.errors import PipelineError
from pipeline.ray_setup import init_ray

log = logging.getLogger(__name__)


def changes_from_existing(cfg, wanted: dict) -> list[str] | None:
    """None when `data_dir` holds no complete dataset; else how it differs from `wanted` (a fingerprint):
    [] when it was made from these inputs (a dataset from before fingerprints counts as such)."""
    if not fmt.dataset_complete(cfg.data_dir):
        return None
    return fingerprint.differences(fmt.read_manifest(cfg.data_dir).get("fingerprint", wanted), wanted)


def run(cfg) -> dict:
    data_dir = cfg.data_dir
    task = tasks.get(cfg.task.name)
    wanted = fingerprint.dataset_fingerprint(cfg)
    changed = changes_from_existing(cfg, wanted)
    complete = changed is not None
    if complete and not cfg.overwrite:
        if changed:
            raise PipelineError(f"data_dir={data_dir} holds a dataset made from other inputs: "
                                f"{fingerprint.describe(changed)}. Pass overwrite=true to rebuild it, or another "
                                f"data_dir")
        manifest = fmt.read_manifest(data_dir)
        log.info("dataset at %s is complete and made from these inputs; keeping it", data_dir)
        fmt.print_summary(manifest, data_dir)
        return manifest
    init_ray(cfg.ray)
    # A complete dataset is replaced only after the new one is built; an incomplete one is cleared first.
    building = f"{data_dir.rstrip('/')}.rebuild" if complete else data_dir
    if complete:
        storage.remove(building)                           # a rebuild an earlier run left unfinished
    else:
        storage.remove(fmt.manifest_path(data_dir))        # unpublished: a crash leaves nothing "complete"
    fmt.clear_incomplete(building)
    try:
        fields = task.build(cfg, building)
        if complete:
            log.info("replacing the dataset at %s (overwrite=true)", data_dir)
            storage.remove(fmt.manifest_path(data_dir))       # unpublished first: never a mix of old and new
            storage.remove(data_dir)
            storage.move(building, data_dir)
        manifest = fmt.publish_manifest(cfg, data_dir, {**fields, "fingerprint": wanted})
    except BaseException:
        fmt.clear_incomplete(building)
        if complete:
            storage.remove(building)
        raise
    fmt.print_summary(manifest, data_dir)
    return manifest
