"""Test-time compute for `stage=eval` (Sudoku, Maze): copies of each puzzle, answers mapped back, selection.

A batch of B puzzles becomes C = tta x trajectories copies, laid out version-major: row (v * K + k) * B + b
is version v, trajectory k of puzzle b. Version 0 is the puzzle itself; the other versions are
validity-preserving transforms, each answer mapped back with the exact inverse: the task module's
`tta_transform` (`pipeline/tasks/`; Sudoku: `augment.sudoku.random_transforms`, maze: the dihedral symmetries
1..7 in id order). Trajectories differ by the latent noise
(`TRM.recurse`). A selector then picks one answer per puzzle from the copies' per-step predictions:

- `vote`: the answer most copies give (each copy's answer step: the last, or with `eval.halt_on_q` its
  first with q_halt > 0), ties by the voters' mean q_halt, then by copy order;
- `q_halt`: the (step, copy) with the highest halting logit;
- `first_halt`: the earliest step at which some copy's q_halt > 0, the copy with the highest q_halt there;
  the highest q_halt at the last step when no copy halts.

With one copy `vote` is the plain pass's answer and `first_halt` that of `eval.halt_on_q=true`.
"""
import dataclasses
import typing
import zlib

import numpy as np

from pipeline import tasks
from pipeline.errors import PipelineError

if typing.TYPE_CHECKING:
    from pipeline.options import EvalOptions

SELECTORS = ("vote", "q_halt", "first_halt")


@dataclasses.dataclass(frozen=True)
class Settings:
    """How much inference compute each puzzle gets (`eval.*`); the defaults are the plain pass."""
    max_steps: int | None = None    # supervision steps; None = the model's N_sup
    trajectories: int = 1
    noise: float = 0.0              # std of the latent noise added at every z-update
    tta: int = 1                    # versions of each puzzle, the first the puzzle itself
    select: tuple = ("vote",)       # selectors scored from the same copies; the first gives `preds`
    seed: int = 0

    @property
    def copies(self) -> int:
        return self.tta * self.trajectories

    def describe(self, select: str, n_sup: int) -> dict:
        """One setting as metrics.json records it."""
        return {"max_steps": self.max_steps or n_sup, "trajectories": self.trajectories, "noise": self.noise,
                "tta": self.tta, "select": select, "seed": self.seed}


def settings_from_options(e: "EvalOptions", seed: int, task: str) -> Settings:
    """`eval.max_steps`, `eval.trajectories`, `eval.noise`, `eval.tta`, `eval.select`, `eval.seed` (null: `seed`);
    their types and bounds are checked with the options (`pipeline.options.EvalOptions`), the task's limit here."""
    most = tasks.get(task).MAX_TTA
    if most is not None and e.tta > most:
        raise PipelineError(f"eval.tta={e.tta}: a {task} puzzle has {most} versions at most")
    return Settings(max_steps=e.max_steps, trajectories=e.trajectories, noise=e.noise, tta=e.tta, select=e.select,
                    seed=seed if e.seed is None else e.seed)


STREAM = {"versions": 0, "noise": 1}      # independent random streams per puzzle


def puzzle_hashes(inputs: np.ndarray) -> list:
    """crc32 of each puzzle's tokens: with the seed, all of a puzzle's randomness (its versions, its
    copies' noise keys) comes from it, so a puzzle's answer does not depend on which other puzzles share
    its batch, on the batch size, or on the actor that runs it."""
    return [zlib.crc32(np.ascontiguousarray(row).tobytes()) for row in inputs]


def noise_keys(seed: int, hashes: list, copies: int) -> np.ndarray:
    """[copies * B] uint32 keys for `trm.noise.RowKeyedNormal`, in the copies' row order (copy-major)."""
    keys = [np.random.SeedSequence([seed, STREAM["noise"], h]).generate_state(copies) for h in hashes]
    return np.stack(keys, axis=1).reshape(-1) if keys else np.zeros(0, np.uint32)


# ---------------------------------------------------------------------------------------------------
# Versions and their inverses

@dataclasses.dataclass
class Versions:
    """The tta versions of a batch of B puzzles (version 0 the identity)."""
    size: int
    count: int            # B
    apply: object         # (v >= 1, grids [R * B, size, size], inverse) -> grids: the task's `tta_transform`


def make_versions(task: str, size: int, tta: int, seed: int, hashes: list) -> Versions:
    """The versions of the B puzzles whose `puzzle_hashes` are `hashes`: each puzzle's random choices come
    from (seed, its hash) alone."""
    apply = None
    if tta > 1:
        rngs = [np.random.default_rng([seed, STREAM["versions"], h]) for h in hashes]
        apply = tasks.get(task).tta_transform(size, tta, rngs)
    return Versions(size, len(hashes), apply)


def transform(versions: Versions, v: int, tokens: np.ndarray, inverse: bool = False) -> np.ndarray:
    """Token grids `[R * B, size * size]` (rows repeating the B puzzles) moved by version v, or back."""
    if v == 0 or not len(tokens):
        return tokens
    grids = tokens.reshape(len(tokens), versions.size, versions.size)
    return np.ascontiguousarray(versions.apply(v, grids, inverse)).reshape(len(tokens), -1)


def copies_of(versions: Versions, tta: int, trajectories: int, tokens: np.ndarray) -> np.ndarray:
    """[C * B, L]: every version of the B puzzles, each repeated for the trajectories (version-major)."""
    return np.concatenate([np.tile(transform(versions, v, tokens), (trajectories, 1)) for v in range(tta)])


def map_back(versions: Versions, tta: int, trajectories: int, step_preds: np.ndarray) -> np.ndarray:
    """[S, C * B, L] per-step predictions of the copies -> [S, C, B, L] in the original puzzles' frame."""
    S, rows, L = step_preds.shape
    per_version = step_preds.reshape(S, tta, rows // tta, L)
    out = np.empty_like(per_version)
    for v in range(tta):
        # version v's rows over all steps, flattened (s, k, b) with b fastest: what `transform` expects
        out[:, v] = transform(versions, v, per_version[:, v].reshape(-1, L), inverse=True).reshape(S, -1, L)
    return out.reshape(S, tta * trajectories, versions.count, L)


# ---------------------------------------------------------------------------------------------------
# Selection and scoring

@dataclasses.dataclass
class Choice:
    """One answer per puzzle: preds [B, L], its q_halt [B] (vote: the voters' mean), step [B] (1-based) and
    copy [B] (for vote, the first copy giving the answer)."""
    preds: np.ndarray
    q_halt: np.ndarray
    step: np.ndarray
    copy: np.ndarray


def _pick(step_preds: np.ndarray, step_q: np.ndarray, step: np.ndarray, copy: np.ndarray) -> Choice:
    b = np.arange(step_preds.shape[2])
    return Choice(step_preds[step, copy, b], step_q[step, copy, b], step + 1, copy)


def select(name: str, step_preds: np.ndarray, step_q: np.ndarray, answer_step: np.ndarray) -> Choice:
    """The selector `name` on per-step predictions [S, C, B, L] and halt logits [S, C, B]; `answer_step`
    [C, B] (1-based) is each copy's own answer step, which `vote` counts."""
    S, C, B = step_q.shape
    if name == "q_halt":
        best = step_q.reshape(S * C, B).argmax(0)
        return _pick(step_preds, step_q, best // C, best % C)
    if name == "first_halt":
        halts = (step_q > 0).any(1)                                   # [S, B]
        step = np.where(halts.any(0), halts.argmax(0), S - 1)
        return _pick(step_preds, step_q, step, step_q[step, :, np.arange(B)].argmax(1))
    if name != "vote":
        raise ValueError(f"unknown selector {name!r}")
    b = np.arange(B)
    answers = step_preds[answer_step - 1, np.arange(C)[:, None], b]   # [C, B, L]
    q = step_q[answer_step - 1, np.arange(C)[:, None], b]             # [C, B]
    votes = np.zeros((C, B), dtype=np.int64)
    q_sum = np.zeros((C, B), dtype=np.float32)
    for c in range(C):   # one pass per copy keeps memory at C x B x L
        same = (answers == answers[c]).all(-1)                        # [C, B]: copies agreeing with copy c
        votes[c] = same.sum(0)
        q_sum[c] = np.where(same, q, 0).sum(0, dtype=np.float32)
    mean_q = (q_sum / votes).astype(np.float32)
    top = votes == votes.max(0)
    copy = np.where(top, mean_q, -np.inf).argmax(0)
    return Choice(answers[copy, b], mean_q[copy, b], answer_step[copy, b], copy)


def score(preds: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(exact [...] bool, token accuracy [...] float32) of predictions [..., L] against labels [..., L]
    (label 0 = ignored; nothing to score: False, 0), computed as `trm.evaluate_batch` does."""
    mask = labels != 0
    correct = (mask & (preds == labels)).sum(-1)
    counted = mask.sum(-1)
    has_labels = counted > 0
    exact = (correct == counted) & has_labels
    accuracy = np.where(has_labels, correct.astype(np.float32) / np.maximum(counted, 1).astype(np.float32), 0)
    return exact, accuracy.astype(np.float32)
