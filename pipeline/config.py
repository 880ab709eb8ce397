"""Config resolution shared by every stage: absolute paths, and configs that are safe to save."""
import logging
import os
import re
import sys

from omegaconf import DictConfig, OmegaConf

from pipeline import storage
from pipeline.errors import PipelineError
from pipeline.options import Options
from pipeline.storage import to_absolute

log = logging.getLogger(__name__)

# Config keys whose values must never be written to a manifest, checkpoint or log.
_SECRET_KEY = re.compile(r"(secret|password|passwd|token|api_key|apikey|access_key|credential)", re.IGNORECASE)
# Secrets recognised by their value, wherever they were passed (a command line, a URL, any option):
# `key=value` with a secret-looking key, credentials in a URL, and the token formats of AWS, Hugging Face,
# GitHub and wandb.
_SECRET_VALUES = (
    (re.compile(r"([\w.+-]*(?:secret|password|passwd|token|api_key|apikey|access_key|credential)[\w.-]*=)\S+",
                re.IGNORECASE), r"\1<redacted>"),
    (re.compile(r"(\w[\w+.-]*://)[^/\s:@]+:[^/\s@]+@"), r"\1<redacted>@"),
    (re.compile(r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b"), "<redacted>"),
    (re.compile(r"\b(?:hf|ghp|gho|ghs|github_pat)_[A-Za-z0-9_]{20,}\b"), "<redacted>"),
    (re.compile(r"\blocal-[0-9a-f]{40}\b"), "<redacted>"),
)
MIN_ENV_SECRET_LEN = 8    # shorter values of secret-named variables are too common to search for


# Ray unpacks a job's `--working-dir` upload here and starts the entrypoint inside it; the next upload of
# a changed checkout gets a new folder, so nothing written below it is found again.
RAY_JOB_PACKAGE = os.sep + os.path.join("runtime_resources", "working_dir_files", "_ray_pkg_")
# The folders each stage writes (the others: both).
STAGE_OUTPUTS = {"augment": ("data_dir",), "import": ("run_dir",), "export": ()}


def _check_outputs_outlive_ray_job(cfg: DictConfig) -> None:
    """Inside a Ray job, refuse relative output folders: they would land in Ray's copy of the upload."""
    cwd = os.getcwd()
    if RAY_JOB_PACKAGE not in cwd:
        return
    for key in STAGE_OUTPUTS.get(cfg.stage, ("data_dir", "run_dir")):
        value = cfg.get(key)
        if value is None or not (storage.is_remote(str(value)) or os.path.isabs(os.path.expanduser(str(value)))):
            shown = "not set (default outputs/...)" if value is None else f"the relative path {value!r}"
            raise PipelineError(
                f"{key} is {shown}, but this runs as a Ray job inside Ray's copy of the uploaded working "
                f"directory ({cwd}), which the next upload replaces: pass {key}= as an s3:// URL (or an "
                f"absolute path on storage every node shares)")


TRAINING_STAGES = ("train", "all", "adapt")    # the stages that start Ray Train


def resolve_config(cfg: DictConfig) -> DictConfig:
    """Return a copy with `data_dir`/`run_dir` absolute (default `outputs/<run_name or task>/{data,run}`).

    Paths are made absolute here, in the driver, before any Ray worker sees them: workers may start
    in another working directory (a Ray Job's package folder, another node).
    """
    _check_outputs_outlive_ray_job(cfg)
    cfg = cfg.copy()
    OmegaConf.set_readonly(cfg, False)
    OmegaConf.set_struct(cfg, False)
    name = cfg.get("run_name") or cfg.task.name
    cfg.data_dir = to_absolute(cfg.data_dir or os.path.join("outputs", name, "data"))
    cfg.run_dir = to_absolute(cfg.run_dir or os.path.join("outputs", name, "run"))
    if cfg.stage in TRAINING_STAGES and not cfg.ray.get("address") and not cfg.ray.get("dashboard", True):
        # Ray Train's placement-group cleaner asks the State API, which the dashboard serves, about its
        # controller every second and logs a warning each time it cannot (hundreds of lines per run).
        log.warning("ray.dashboard=false ignored for stage=%s: Ray Train needs the State API the dashboard "
                    "serves", cfg.stage)
        cfg.ray.dashboard = True
    OmegaConf.set_struct(cfg, True)
    Options.of(cfg)     # every section's values checked once, before any stage starts
    return cfg


def _environment_secrets() -> list[str]:
    """Values of this process's secret-named environment variables (AWS_SECRET_ACCESS_KEY, WANDB_API_KEY...)."""
    return sorted((v for k, v in os.environ.items() if _SECRET_KEY.search(k) and len(v) >= MIN_ENV_SECRET_LEN),
                  key=len, reverse=True)


def redact_text(text: str) -> str:
    """`text` with every secret-looking value replaced by `<redacted>` (see `_SECRET_VALUES`), including
    the value of any secret-named environment variable."""
    for pattern, replacement in _SECRET_VALUES:
        text = pattern.sub(replacement, text)
    for secret in _environment_secrets():
        text = text.replace(secret, "<redacted>")
    return text


def redact(value):
    """Nested dicts/lists with secret-named keys dropped and secret-looking string values redacted
    (credentials come from the environment only)."""
    if isinstance(value, dict):
        return {k: ("<redacted>" if _SECRET_KEY.search(str(k)) else redact(v)) for k, v in value.items()}
    if isinstance(value, list):
        return [redact(v) for v in value]
    if isinstance(value, str):
        return redact_text(value)
    return value


def command_line() -> str:
    """The command that started this process, redacted, for manifests and checkpoints."""
    program = "trm-pipeline" if os.path.basename(sys.argv[0]) == "trm-pipeline" else "python -m pipeline.run"
    return redact_text(" ".join([program, *sys.argv[1:]]))


def saved_config(cfg: DictConfig) -> dict:
    """The resolved config as a plain dict, redacted, for manifests and checkpoints."""
    return redact(OmegaConf.to_container(cfg, resolve=True))
