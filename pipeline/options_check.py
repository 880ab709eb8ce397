"""Checks of a command line that need no Ray: unknown option names and a missing `task.source`.

Hydra accepts `+train.step=300` (a typo of `train.steps`) as a new key that nothing reads, and answers
`train.step=300` with advice to write exactly that. `check_overrides` refuses both, naming the closest
valid option; `check_task_source` refuses a source path that does not exist before Ray spends half a
minute starting.
"""
import dataclasses
import difflib
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from pipeline.data import fingerprint
from pipeline.errors import PipelineError

CONF_DIR = Path(__file__).resolve().parent / "conf"
# Keys a stage reads although no YAML of every task lists them (read with .get()): ARC's identifiers file
# also names reference checkpoints' rows for any task given one.
OPTIONAL_KEYS = ("task.identifiers",)
SOURCE_STAGES = ("augment", "all", "adapt")   # the stages that read task.source


def config_groups() -> set[str]:
    """The Hydra config groups of pipeline/conf (task, model, train, preset)."""
    return {p.name for p in CONF_DIR.iterdir() if p.is_dir() and not p.name.startswith("_")}


def known_keys(cfg: DictConfig) -> set[str]:
    """Every dotted option name of the composed config (sections too), plus the model fields TRMConfig takes."""
    from trm import TRMConfig
    keys = set()

    def walk(node, prefix):
        for key, value in node.items():
            name = f"{prefix}{key}"
            keys.add(name)
            if isinstance(value, dict):
                walk(value, name + ".")
    walk(OmegaConf.to_container(cfg, resolve=False), "")
    keys.update(f"model.{f.name}" for f in dataclasses.fields(TRMConfig))
    keys.update(OPTIONAL_KEYS)
    return keys


def closest(key: str, keys: set[str]) -> str | None:
    """The valid name nearest to `key`: among its own section's options first, then among all."""
    section = key.rpartition(".")[0]
    siblings = [k for k in keys if k.rpartition(".")[0] == section]
    for pool in (siblings, sorted(keys)):
        match = difflib.get_close_matches(key, pool, n=1, cutoff=0.6)
        if match:
            return match[0]
    return None


def unknown_option(key: str, keys: set[str]) -> PipelineError:
    guess = closest(key, keys)
    hint = f"did you mean {guess}?" if guess else "see pipeline/conf/ for the options"
    return PipelineError(f"{key}: no such option; {hint}")


def check_overrides(overrides: list[str], cfg: DictConfig) -> None:
    """Refuse an override whose key is not an option of `cfg` (the config composed without additions),
    `+`/`++` or not; Hydra's own keys and config-group choices (`task=arc`) pass."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    groups = config_groups()
    keys = known_keys(cfg)
    for override in OverridesParser.create().parse_overrides(overrides):
        key = override.key_or_group
        if key.split("/")[0].split(".")[0] == "hydra" or (key in groups and override.package is None):
            continue
        if key not in keys:
            raise unknown_option(key, keys)


def check_command_line(args: list[str]) -> None:
    """`check_overrides` for `python -m pipeline.run` arguments, composing the config the way Hydra will
    (the group choices given) but without any `+` addition. Anything Hydra itself refuses is left to Hydra."""
    from hydra import compose, initialize_config_module
    from hydra.core.override_parser.overrides_parser import OverridesParser
    overrides = [a for a in args if not a.startswith("-")]
    try:
        parsed = OverridesParser.create().parse_overrides(overrides)
    except Exception:       # a malformed override: Hydra's message says what is wrong with it
        return
    groups = config_groups()
    choices = [text for text, o in zip(overrides, parsed) if not o.is_add() and not o.is_force_add()
               and not o.is_delete() and o.key_or_group.split("/")[0] in groups | {"hydra"}
               and "." not in o.key_or_group]
    try:
        with initialize_config_module(config_module="pipeline.conf", version_base=None):
            cfg = compose(config_name="config", overrides=choices)
    except Exception:       # e.g. task=sudok: Hydra names the group's valid choices itself
        return
    check_overrides(overrides, cfg)


def check_task_source(cfg: DictConfig) -> None:
    """A `task.source` path (file, folder or ARC Kaggle prefix, local or s3://) exists, for the stages that
    read it; `generate` and `hf:` ids are the builders' to check."""
    source = cfg.task.get("source")
    if cfg.stage not in SOURCE_STAGES or not isinstance(source, str) or source == "generate" \
            or source.startswith("hf:"):
        return
    if not fingerprint.file_identities(source):
        raise PipelineError(f"task.source={source}: no such file, folder or file prefix (for task={cfg.task.name}, "
                            f"see the README's Data sources; relative paths are from {Path.cwd()})")
