"""Config resolution shared by every stage: absolute paths, and configs that are safe to save."""
import os
import re

from omegaconf import DictConfig, OmegaConf

from pipeline.storage import to_absolute

# Config keys whose values must never be written to a manifest, checkpoint or log.
_SECRET_KEY = re.compile(r"(secret|password|token|api_key|access_key|credential)", re.IGNORECASE)


def resolve_config(cfg: DictConfig) -> DictConfig:
    """Return a copy with `data_dir`/`run_dir` absolute (default `outputs/<task>/{data,run}`).

    Paths are made absolute here, in the driver, before any Ray worker sees them: workers may start
    in another working directory (a Ray Job's package folder, another node).
    """
    cfg = cfg.copy()
    OmegaConf.set_readonly(cfg, False)
    OmegaConf.set_struct(cfg, False)
    task = cfg.task.name
    cfg.data_dir = to_absolute(cfg.data_dir or os.path.join("outputs", task, "data"))
    cfg.run_dir = to_absolute(cfg.run_dir or os.path.join("outputs", task, "run"))
    OmegaConf.set_struct(cfg, True)
    return cfg


def redact(value):
    """Drop secret-looking keys from nested dicts/lists (credentials come from the environment only)."""
    if isinstance(value, dict):
        return {k: ("<redacted>" if _SECRET_KEY.search(str(k)) else redact(v)) for k, v in value.items()}
    if isinstance(value, list):
        return [redact(v) for v in value]
    return value


def saved_config(cfg: DictConfig) -> dict:
    """The resolved config as a plain dict, redacted, for manifests and checkpoints."""
    return redact(OmegaConf.to_container(cfg, resolve=True))
