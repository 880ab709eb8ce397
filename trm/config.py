"""`TRMConfig`: the model's hyper-parameters under the reference's names and defaults."""
from dataclasses import dataclass, fields
from typing import Optional

POS_ENCODINGS = ("rope", "learned", "none")
LOSS_TYPES = ("stablemax_cross_entropy", "softmax_cross_entropy")
FORWARD_DTYPES = ("auto", "bfloat16", "float16", "float32")


@dataclass(frozen=True)
class TRMConfig:
    """Hyper-parameters of TRM (reference `config/arch/trm.yaml`; paper symbols in brackets).

    Data-dependent fields come from the dataset manifest: `seq_len` (81 Sudoku, 900 Maze/ARC),
    `vocab_size` (11 Sudoku, 6 Maze, 12 ARC) and `num_puzzle_identifiers` (rows of the puzzle-embedding
    table). Everything else has the reference's default; `L_cycles` is 6 in the reference yaml and for
    Sudoku, 4 on the command line for ARC and Maze.

    Deliberate differences from the reference:
    - `forward_dtype="auto"` (the default) means bfloat16 on CUDA and float32 elsewhere (see
      `trm.device`); the reference always uses bfloat16, which CPUs run slowly.
    - `H_layers` and `no_ACT_continue=False` (the HRM Q-continue path, broken in the reference) do not
      exist: TRM halts on `q_halt > 0` only.
    """

    seq_len: int
    vocab_size: int
    num_puzzle_identifiers: int
    hidden_size: int = 512
    num_heads: int = 8
    expansion: float = 4.0
    L_layers: int = 2
    H_cycles: int = 3            # T: rounds per supervision step, the first T-1 without gradient
    L_cycles: int = 6            # n: z-updates per round
    halt_max_steps: int = 16     # N_sup: supervision steps per example
    halt_exploration_prob: float = 0.1
    puzzle_emb_ndim: Optional[int] = None   # None: hidden_size (the reference's setting); 0: no table
    puzzle_emb_len: int = 16     # prefix positions; only the first carries the learned vector
    pos_encodings: str = "rope"  # rope | learned | none
    mlp_t: bool = False          # MLP across the sequence axis instead of attention
    rms_norm_eps: float = 1e-5
    rope_theta: float = 10000.0
    forward_dtype: str = "auto"  # auto | bfloat16 | float16 | float32
    loss_type: str = "stablemax_cross_entropy"

    def __post_init__(self):
        problems = []
        for name in ("seq_len", "vocab_size", "num_puzzle_identifiers", "hidden_size", "num_heads",
                     "L_layers", "H_cycles", "L_cycles", "halt_max_steps"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                problems.append(f"{name} must be a positive integer, got {value!r}")
        if self.hidden_size % max(self.num_heads, 1):
            problems.append(f"hidden_size {self.hidden_size} is not a multiple of num_heads {self.num_heads}")
        if self.pos_encodings not in POS_ENCODINGS:
            problems.append(f"pos_encodings must be one of {POS_ENCODINGS}, got {self.pos_encodings!r}")
        if self.loss_type not in LOSS_TYPES:
            problems.append(f"loss_type must be one of {LOSS_TYPES}, got {self.loss_type!r}")
        if self.forward_dtype not in FORWARD_DTYPES:
            problems.append(f"forward_dtype must be one of {FORWARD_DTYPES}, got {self.forward_dtype!r}")
        if not 0.0 <= self.halt_exploration_prob <= 1.0:
            problems.append(f"halt_exploration_prob must be in [0, 1], got {self.halt_exploration_prob}")
        if self.emb_ndim > self.puzzle_emb_len * self.hidden_size:
            problems.append(f"puzzle_emb_ndim {self.emb_ndim} does not fit in puzzle_emb_len "
                            f"{self.puzzle_emb_len} positions of hidden_size {self.hidden_size}")
        if problems:
            raise ValueError("invalid TRMConfig: " + "; ".join(problems))

    @property
    def emb_ndim(self) -> int:
        """Width of a puzzle-embedding row (0: no puzzle embedding)."""
        return self.hidden_size if self.puzzle_emb_ndim is None else self.puzzle_emb_ndim

    @property
    def prefix_len(self) -> int:
        """Prefix positions in front of the grid tokens (0 without a puzzle embedding)."""
        return self.puzzle_emb_len if self.emb_ndim > 0 else 0

    @property
    def total_len(self) -> int:
        """Sequence length the network sees: prefix + grid tokens (97 for Sudoku, 916 for ARC)."""
        return self.prefix_len + self.seq_len

    @classmethod
    def from_dict(cls, values: dict) -> "TRMConfig":
        """Build from a mapping (e.g. the Hydra `model` group merged with manifest fields); unknown keys raise."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown TRMConfig fields: {unknown}; known: {sorted(known)}")
        return cls(**values)
