"""The data a reference checkpoint expects (task, seq_len, grid size), and which source said so.

`all_config.yaml` of the original code has no `seq_len`: `pretrain.py` reads it from the dataset at run
time, and an attention model with rotary (or no) positions runs at any length, so the file alone does not
fix it. Sources, in this order, the first one found deciding (every other one found must agree):
1. the weights, where they fix it: the token MLP (`mlp_t`) maps `puzzle_emb_len + seq_len` positions, and
   learned positions hold one row per position;
2. `+model.seq_len=` on the command line;
3. a `data_manifest:` block in `all_config.yaml` (this project's export writes one; the reference ignores
   it; a user may add one): `task` (sudoku | maze | arc), `seq_len`, `size` (the grid side; sudoku and
   maze), `box` (sudoku, e.g. [3, 3]);
4. the data given: `eval.source=` (a puzzle CSV: the length of its puzzles) when set, else `data_dir=`
   when it holds a dataset (its `dataset.json`).
Without any, the import is refused, naming the options. The task and grid size come from a data manifest
(3 or 4) when one agrees, else from the one task whose token encoding fits `vocab_size` and `seq_len`
(`task=` decides between several).
"""
import logging
import math
from dataclasses import dataclass

from augment import arc, maze, sudoku
from pipeline import storage
from pipeline.data import dataset_format as fmt
from pipeline.data import sources
from pipeline.errors import PipelineError

log = logging.getLogger(__name__)

ASK = ("pass +model.seq_len=<its sequence length> (81 for 9x9 Sudoku, 900 for 30x30 mazes and ARC), or "
       "data_dir=<a dataset of the data it was trained on> (stage=augment builds one)")


@dataclass(frozen=True)
class DataGiven:
    """What the command line says about the data (all optional)."""

    task: str | None = None           # task=: decides between tasks whose encodings both fit
    seq_len: int | None = None        # +model.seq_len=
    data_dir: str | None = None       # a dataset folder, used when it holds a dataset
    eval_source: str | None = None    # a puzzle CSV (stage=eval's eval.source)


def given(cfg) -> DataGiven:
    """The DataGiven of a resolved stage config."""
    seq_len = cfg.model.get("seq_len")
    return DataGiven(task=cfg.task.name, seq_len=None if seq_len is None else int(seq_len), data_dir=cfg.data_dir,
                     eval_source=cfg.eval.get("source") or None)


def seq_len_from_weights(state: dict, prefix_len: int) -> tuple[int, str] | None:
    """(seq_len, how) where the weights fix it (reference key names, prefixes stripped), else None."""
    token_mlp = state.get("L_level.layers.0.mlp_t.down_proj.weight")
    if token_mlp is not None:
        return int(token_mlp.shape[0]) - prefix_len, "the token MLP's weights (mlp_t: prefix + sequence positions)"
    positions = state.get("embed_pos.embedding_weight")
    if positions is not None:
        return int(positions.shape[0]) - prefix_len, "the learned position embeddings (one row per position)"
    return None


def fitting_tasks(vocab: int, seq_len: int) -> dict:
    """{task: its grid fields} for every task whose token encoding has this vocabulary and sequence length."""
    side = math.isqrt(seq_len)
    if side * side != seq_len:
        return {}
    found = {}
    if side in sudoku.BOX_SHAPES and vocab == sudoku.vocab_size(side):
        found["sudoku"] = {"size": side, "box": list(sudoku.box_shape(side))}
    if vocab == maze.VOCAB_SIZE:
        found["maze"] = {"size": side}
    if vocab == arc.VOCAB_SIZE:
        found["arc"] = {}
    return found


def _csv_data(path: str) -> dict:
    loaded = sources.read_puzzle_source(storage.to_absolute(path))
    rows = loaded["test"] if "test" in loaded else loaded["all"]
    if not len(rows):
        raise PipelineError(f"eval.source={path} holds no puzzles to tell the checkpoint's sequence length from")
    return {"seq_len": len(rows.question[0])}


def _given_data(given: DataGiven, vocab: int) -> tuple[dict, str] | None:
    """(manifest fields, source) of the data on the command line: eval.source, else data_dir's dataset."""
    if given.eval_source:
        return _csv_data(str(given.eval_source)), f"the puzzles of eval.source={given.eval_source}"
    if given.data_dir and fmt.dataset_complete(given.data_dir):
        manifest = fmt.read_manifest(given.data_dir)
        if manifest.get("vocab_size") != vocab:
            raise PipelineError(f"data_dir={given.data_dir} holds a {manifest.get('task')} dataset with vocab_size "
                                f"{manifest.get('vocab_size')}, but the checkpoint's vocabulary has {vocab} tokens: "
                                f"pass the data_dir of the data it was trained on")
        return dict(manifest), f"the dataset in data_dir={given.data_dir}"
    return None


def data_fields(reference_config: dict, state: dict, vocab: int, prefix_len: int, given: DataGiven,
                config_path: str) -> dict:
    """task, seq_len and the grid fields (`size`, `box`) of the data a reference checkpoint expects, plus
    `seq_len_source` saying which source decided; PipelineError when nothing says or two sources disagree."""
    block = reference_config.get("data_manifest")
    if block is not None and not (isinstance(block, dict) and isinstance(block.get("seq_len"), int)):
        raise PipelineError(f"{config_path}: data_manifest must be a mapping with an integer seq_len (and task, size, "
                            f"box), got {block!r}")
    data = _given_data(given, vocab)
    found = [seq_len_from_weights(state, prefix_len),
             (given.seq_len, "+model.seq_len") if given.seq_len is not None else None,
             (block["seq_len"], f"the data_manifest block of {config_path}") if block else None,
             (data[0]["seq_len"], data[1]) if data else None]
    found = [f for f in found if f is not None]
    if not found:
        raise PipelineError(f"checkpoint {config_path.rsplit('/', 1)[0]}: its sequence length is not in "
                            f"all_config.yaml (the reference reads it from the dataset) and its weights do not fix "
                            f"it (attention with {reference_config.get('arch', {}).get('pos_encodings', 'rope')} "
                            f"positions runs at any length): {ASK}")
    seq_len, source = found[0]
    if seq_len < 1:
        raise PipelineError(f"{config_path}: {source} gives seq_len {seq_len}")
    for other, other_source in found[1:]:
        if other != seq_len:
            raise PipelineError(f"seq_len {seq_len} from {source}, but {other} from {other_source}: they must agree "
                                f"(pass the data the checkpoint was trained on)")
    fields = {"task": None}
    for manifest in ([block] if block else []) + ([data[0]] if data else []):
        if manifest.get("task"):
            fields = {k: manifest[k] for k in ("task", "size", "box") if k in manifest}
            break
    if fields["task"] is None:
        fields = _task_of(vocab, seq_len, given.task)
    log.info("seq_len %d from %s; task %s", seq_len, source, fields["task"])
    return {**fields, "seq_len": seq_len, "seq_len_source": source}


def _task_of(vocab: int, seq_len: int, chosen: str | None) -> dict:
    tasks = fitting_tasks(vocab, seq_len)
    if len(tasks) > 1 and chosen in tasks:
        tasks = {chosen: tasks[chosen]}
    if len(tasks) > 1:
        raise PipelineError(f"a vocabulary of {vocab} tokens with seq_len {seq_len} fits both "
                            f"{' and '.join(sorted(tasks))}: pass task=<the one it was trained on>")
    if not tasks:
        raise PipelineError(f"a vocabulary of {vocab} tokens with seq_len {seq_len} fits none of this project's "
                            f"tasks' encodings (sudoku, maze, arc): pass data_dir=<a dataset of the data it was "
                            f"trained on>, or add task, size (and box) to a data_manifest block in all_config.yaml")
    (task, grid), = tasks.items()
    return {"task": task, **grid}
