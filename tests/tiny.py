"""The tiny models the tests build, defined once: a model change made for every test is made here.

`PIPELINE_MODEL`: the network of the pipeline tests (stages trained and evaluated on Ray), as the Hydra
overrides `model_overrides` or a `TRMConfig` (`pipeline_model`); a test varies a field by naming it.
`UNIT_MODEL`: the smaller network of the `trm/` unit tests (`unit_model`), data fields included.
"""
from trm import TRMConfig

PIPELINE_MODEL = dict(hidden_size=32, num_heads=2, L_layers=1, H_cycles=2, L_cycles=1, halt_max_steps=3, puzzle_emb_len=2)
SUDOKU_6X6 = dict(seq_len=36, vocab_size=8, num_puzzle_identifiers=1)      # the data fields of 6x6 Sudoku

UNIT_MODEL = dict(seq_len=9, vocab_size=5, num_puzzle_identifiers=3, hidden_size=16, num_heads=2, expansion=2,
                  H_cycles=2, L_cycles=2, halt_max_steps=3, puzzle_emb_len=4)


def model_overrides(**changes) -> list[str]:
    """`PIPELINE_MODEL` with `changes`, as `model.<field>=<value>` overrides."""
    return [f"model.{name}={value}" for name, value in {**PIPELINE_MODEL, **changes}.items()]


def pipeline_model(**fields) -> TRMConfig:
    """`PIPELINE_MODEL` with the data fields (and any changed setting) in `fields`."""
    return TRMConfig(**{**PIPELINE_MODEL, **fields})


def unit_model(**changes) -> TRMConfig:
    return TRMConfig(**{**UNIT_MODEL, **changes})
