"""`stage=augment`: build the task's dataset (Parquet shards + dataset.json) with Ray Data.

The task builders live in `pipeline/build_<task>.py`; each has `build(cfg, data_dir) -> dict` that
writes the splits (through `dataset_format.write_split`) and returns the task's manifest fields.
"""
import importlib
import logging

from pipeline import dataset_format as fmt
from pipeline import storage
from pipeline.errors import PipelineError
from pipeline.ray_setup import init_ray

log = logging.getLogger(__name__)

BUILDERS = {"sudoku": "pipeline.build_sudoku", "maze": "pipeline.build_maze", "arc": "pipeline.build_arc"}


def run(cfg) -> dict:
    data_dir = cfg.data_dir
    if fmt.dataset_complete(data_dir) and not cfg.overwrite:
        manifest = fmt.read_manifest(data_dir)
        log.info("dataset at %s is complete; keeping it (overwrite=true rebuilds it)", data_dir)
        fmt.print_summary(manifest, data_dir)
        return manifest
    if cfg.task.name not in BUILDERS:
        raise PipelineError(f"task={cfg.task.name!r} has no data builder; choose one of {sorted(BUILDERS)}")
    builder = importlib.import_module(BUILDERS[cfg.task.name])
    init_ray(cfg.ray)
    # Unpublish first: if this run dies, no manifest claims the half-written shards are complete.
    storage.remove(fmt.manifest_path(data_dir))
    fmt.clear_incomplete(data_dir)
    try:
        fields = builder.build(cfg, data_dir)
        manifest = fmt.publish_manifest(cfg, data_dir, fields)
    except BaseException:
        fmt.clear_incomplete(data_dir)
        raise
    fmt.print_summary(manifest, data_dir)
    return manifest
