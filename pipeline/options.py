"""Typed options: each config section a frozen dataclass, built and checked once from the resolved config.

`Options.of(cfg)` turns the sections a stage reads (task, train, eval, eval_arc, adapt, export, solve, report) into
dataclasses whose field types say what a value may be; a value that is not is refused in one line naming the
option, the value and what is allowed (`train.steps='ten': expected an integer`). `pipeline.config.resolve_config`
builds them once before any stage starts (so a bad value fails before Ray does), and a stage reads its values
from them, typed, instead of casting config values where it uses them. The YAML under `pipeline/conf/` keeps
the defaults and their comments; `tests/test_options.py` checks that every key there has its field here.

Field types understood: `int`, `float`, `bool`, `str`, `X | None`, `Literal[...]` (choices, compared
case-insensitively for strings), `bool | Literal["auto"]`, `float | Literal["auto"]`, `tuple[int, ...]` and
`tuple[str, ...]` (a single value is a tuple of one); `minimum` (field metadata) bounds a number from below.
"""
import dataclasses
import types
import typing
from dataclasses import dataclass, field
from typing import Literal

from pipeline.errors import PipelineError
from pipeline.infer.test_time import SELECTORS
from trm.compile import COMPILE_MODES


def at_least(minimum: float):
    """A dataclass field whose number must be >= `minimum`."""
    return field(metadata={"minimum": minimum})


_WORDS = {int: "an integer", float: "a number", bool: "true or false", str: "a string"}


def _convert(value, kind, name: str):
    """`value` as `kind`, or PipelineError naming `name`, the value and what is allowed."""
    origin, args = typing.get_origin(kind), typing.get_args(kind)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        choices = [a for a in args if a is not type(None)]
        for choice in sorted(choices, key=lambda a: typing.get_origin(a) is not Literal):   # choices first
            try:
                return _convert(value, choice, name)
            except PipelineError:
                pass
        raise PipelineError(f"{name}={value!r}: expected {' or '.join(_describe(c) for c in choices)}"
                            + (" or null" if type(None) in args else ""))
    if origin is Literal:
        for allowed in args:
            if value == allowed and type(value) is type(allowed) or (
                    isinstance(value, str) and isinstance(allowed, str) and value.lower() == allowed.lower()):
                return allowed
        raise PipelineError(f"{name}={value!r}: not one of {', '.join(str(a) for a in args)}")
    if origin is tuple:
        values = [value] if isinstance(value, str) or not hasattr(value, "__iter__") else list(value)
        return tuple(_convert(v, args[0], f"{name}[{i}]") for i, v in enumerate(values))
    if kind is bool:
        if isinstance(value, bool):
            return value
    elif kind is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
    elif kind is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    elif kind is str:
        if isinstance(value, str):
            return value
        if isinstance(value, int) and not isinstance(value, bool):     # Hydra reads `solve.puzzle=5300...` as a number
            return str(value)
    raise PipelineError(f"{name}={value!r}: expected {_describe(kind)}")


def _describe(kind) -> str:
    if typing.get_origin(kind) is Literal:
        return " or ".join(str(a) for a in typing.get_args(kind))
    if typing.get_origin(kind) is tuple:
        return f"a list of {_describe(typing.get_args(kind)[0])}s"
    return _WORDS.get(kind, str(kind))


def build(cls, values, section: str):
    """`cls` (an options dataclass) from a mapping, checking every field; `section` prefixes the names in errors.
    Keys the mapping has and `cls` lacks are refused (a section of the YAML without its field here)."""
    values = dict(values)
    hints = typing.get_type_hints(cls, include_extras=False)
    known = {f.name for f in dataclasses.fields(cls)}
    extra = sorted(set(values) - known)
    if extra:
        raise PipelineError(f"{section}.{extra[0]}: no such option (the {section} options: {', '.join(sorted(known))})")
    converted = {}
    for f in dataclasses.fields(cls):
        name = f"{section}.{f.name}"
        if f.name not in values:
            raise PipelineError(f"{name} is missing from the config")
        value = _convert(values[f.name], hints[f.name], name)
        minimum = f.metadata.get("minimum")
        if minimum is not None and value is not None and value < minimum:
            raise PipelineError(f"{name}={value!r}: must be at least {minimum}")
        converted[f.name] = value
    options = cls(**converted)
    if hasattr(options, "check"):
        options.check(section)
    return options


Auto = Literal["auto"]


@dataclass(frozen=True)
class TrainOptions:
    """`train:` (`conf/train/default.yaml` says what each is); `stage=adapt` sets `embedding_only_steps`."""
    num_workers: int = at_least(1)
    use_gpu: bool | Auto
    cpus_per_worker: float | Auto
    placement_strategy: Literal["PACK", "SPREAD", "STRICT_SPREAD"]
    global_batch_size: int = at_least(1)
    steps: int = at_least(1)
    lr: float
    lr_min_ratio: float
    lr_warmup_steps: int = at_least(0)
    beta1: float
    beta2: float
    weight_decay: float
    puzzle_emb_lr: float
    puzzle_emb_weight_decay: float
    compile: bool | Auto
    compile_mode: Literal[COMPILE_MODES]
    ema: bool
    ema_rate: float
    in_memory_mb: float = at_least(0)
    stream_window_rows: int = at_least(1)
    checkpoint_every: int | None = at_least(0)   # null: only at evaluations and the end
    keep_last: int = at_least(1)
    eval_every: int | None = at_least(0)         # null or 0: never
    eval_examples: int | None = at_least(1)
    init_from: str | None
    resume: bool | Auto
    max_failures: int = at_least(0)
    node_wait_s: float = at_least(1)
    wandb_project: str
    ray_log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"]
    embedding_only_steps: int = at_least(0)
    fail_once_at_step: int | None

    def check(self, section: str) -> None:
        if self.global_batch_size % self.num_workers:
            raise PipelineError(f"{section}.global_batch_size={self.global_batch_size} must be a multiple of "
                                f"{section}.num_workers={self.num_workers} (each worker holds an equal share of the batch)")


@dataclass(frozen=True)
class EvalOptions:
    """`eval:` (stage=eval; stage=eval_arc and stage=solve use the inference settings); see `conf/config.yaml`."""
    source: str | None
    ema: bool
    halt_on_q: bool
    batch_size: int = at_least(1)
    num_actors: int | None = at_least(1)
    cpus_per_actor: int = at_least(1)
    limit: int | None = at_least(1)
    compile: bool | Auto
    render: int = at_least(0)
    record_steps: bool
    max_steps: int | None = at_least(1)
    trajectories: int = at_least(1)
    noise: float = at_least(0)
    tta: int = at_least(1)
    select: tuple[Literal[SELECTORS], ...]
    seed: int | None

    def check(self, section: str) -> None:
        if not self.select:
            raise PipelineError(f"{section}.select=[]: name at least one of {', '.join(SELECTORS)}")


@dataclass(frozen=True)
class EvalArcOptions:
    """`eval_arc:` (stage=eval_arc)."""
    num_aug: int | None = at_least(0)
    pass_ks: tuple[int, ...]
    predictions: str | None

    def check(self, section: str) -> None:
        if not self.pass_ks or min(self.pass_ks) < 1:
            raise PipelineError(f"{section}.pass_ks={list(self.pass_ks)}: need positive integers")


@dataclass(frozen=True)
class AdaptOptions:
    """`adapt:` (stage=adapt)."""
    base: str | None
    mode: Literal["full", "embeddings"]
    embedding_only_fraction: float = at_least(0)
    ema: bool

    def check(self, section: str) -> None:
        if self.embedding_only_fraction > 1:
            raise PipelineError(f"{section}.embedding_only_fraction={self.embedding_only_fraction}: must be in [0, 1]")


@dataclass(frozen=True)
class ExportOptions:
    """`export:` (stage=export)."""
    dir: str | None
    ema: bool


@dataclass(frozen=True)
class SolveOptions:
    """`solve:` (stage=solve)."""
    puzzle: str | None
    file: str | None


@dataclass(frozen=True)
class ReportOptions:
    """`report:` (run_dir/report.html)."""
    enabled: bool
    max_items: int = at_least(0)
    page_size: int = at_least(1)
    arc_answers: int = at_least(1)


@dataclass(frozen=True)
class Options:
    """The typed sections of one resolved config; `task` is the task module's `TaskOptions`."""
    task: object
    train: TrainOptions
    eval: EvalOptions
    eval_arc: EvalArcOptions
    adapt: AdaptOptions
    export: ExportOptions
    solve: SolveOptions
    report: ReportOptions

    @classmethod
    def of(cls, cfg) -> "Options":
        """Every section of `cfg` built and checked (cheap: a stage calls it where it reads its options)."""
        from omegaconf import OmegaConf

        from pipeline import tasks
        kinds = {**typing.get_type_hints(cls), "task": tasks.get(cfg.task.name).TaskOptions}
        return cls(**{f.name: build(kinds[f.name], OmegaConf.to_container(cfg[f.name], resolve=True), f.name)
                      for f in dataclasses.fields(cls)})
