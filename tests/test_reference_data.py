"""A reference checkpoint's sequence length is never guessed: taken from the weights where they fix it, else
from +model.seq_len, a data_manifest block or the data given (eval.source, data_dir), the source said; refused
naming the options when nothing says, or when two sources disagree."""
import pytest

from pipeline import storage
from pipeline.checkpoints import reference as ref
from pipeline.checkpoints.reference_data import DataGiven
from pipeline.errors import PipelineError
from pipeline.run import run_stage
from tests.conftest import compose
from tests.test_reference_checkpoint import documented_config, documented_state, write_reference


def _run(tmp_path, vocab, seq_len, mlp_t=False, config=None, name="ref") -> str:
    """A reference run folder of a model for data of `vocab` tokens and `seq_len` positions."""
    return write_reference(tmp_path / name, documented_state(vocab=vocab, seq_len=seq_len, mlp_t=mlp_t),
                           config or documented_config(mlp_t=mlp_t))


def _sudoku_6x6(folder) -> str:
    """A data folder whose manifest says 6x6 Sudoku (all the import reads of it)."""
    storage.write_json_atomic(str(folder / "dataset.json"), {"task": "sudoku", "seq_len": 36, "vocab_size": 8,
                                                             "num_puzzle_identifiers": 1, "size": 6, "box": [2, 3]})
    return str(folder)


def test_attention_run_without_data_is_refused_naming_the_options(tmp_path):
    """The issue's case: vocabulary 6 was imported as a 900-token maze whatever the data was."""
    source = _run(tmp_path, vocab=6, seq_len=16)
    with pytest.raises(PipelineError, match=r"sequence length is not in all_config.yaml .* do not fix it \(attention "
                                            r"with rope positions .*\): pass \+model.seq_len=.* or data_dir="):
        run_stage(compose("stage=import", f"checkpoint={source}", f"run_dir={tmp_path / 'run'}",
                          f"data_dir={tmp_path / 'no_data'}"))
    assert not (tmp_path / "run").exists()


def test_mlp_weights_fix_seq_len_and_a_contradicting_option_is_refused(tmp_path):
    """The MLP variant's token MLP spans prefix + seq_len positions: 16 + 36 here, 6x6 Sudoku (vocab 8)."""
    source = _run(tmp_path, vocab=8, seq_len=36, mlp_t=True)
    imported = ref.read_reference(source)
    assert imported.config.seq_len == 36 and imported.manifest["seq_len_source"].startswith("the token MLP's weights")
    assert (imported.manifest["task"], imported.manifest["size"], imported.manifest["box"]) == ("sudoku", 6, [2, 3])
    with pytest.raises(PipelineError, match=r"seq_len 36 from the token MLP's weights .*, but 81 from \+model.seq_len"):
        ref.read_reference(source, given=DataGiven(seq_len=81))


def test_a_vocabulary_two_tasks_share_needs_the_task(tmp_path):
    """6 tokens and 16 positions: a 4x4 Sudoku or a 4x4 maze."""
    source = _run(tmp_path, vocab=6, seq_len=16, mlp_t=True)
    with pytest.raises(PipelineError, match="fits both maze and sudoku: pass task="):
        ref.read_reference(source)
    imported = ref.read_reference(source, given=DataGiven(task="maze"))
    assert (imported.manifest["task"], imported.manifest["size"], imported.config.seq_len) == ("maze", 4, 16)


def test_seq_len_and_task_come_from_the_data_given(tmp_path):
    source = _run(tmp_path, vocab=8, seq_len=36)
    data_dir = _sudoku_6x6(tmp_path)
    imported = ref.read_reference(source, given=DataGiven(data_dir=data_dir))
    assert imported.config.seq_len == 36 and imported.manifest["size"] == 6
    assert imported.manifest["seq_len_source"] == f"the dataset in data_dir={data_dir}"
    csv = tmp_path / "puzzles.csv"
    csv.write_text("source,question,answer,rating\nx," + "." * 36 + "," + "1" * 36 + ",0\n")
    imported = ref.read_reference(source, given=DataGiven(eval_source=str(csv)))
    assert imported.config.seq_len == 36 and imported.manifest["seq_len_source"] == f"the puzzles of eval.source={csv}"
    other_vocab = _run(tmp_path, vocab=11, seq_len=81, name="sudoku9")
    with pytest.raises(PipelineError, match=r"data_dir=.* holds a sudoku dataset with vocab_size 8, but the "
                                            r"checkpoint's vocabulary has 11 tokens"):
        ref.read_reference(other_vocab, given=DataGiven(data_dir=data_dir))


def test_a_data_manifest_block_is_read_and_must_be_well_formed(tmp_path):
    config = documented_config()
    config["data_manifest"] = {"task": "maze", "seq_len": 16, "size": 4}
    imported = ref.read_reference(_run(tmp_path, vocab=6, seq_len=16, config=config))
    assert (imported.manifest["task"], imported.config.seq_len) == ("maze", 16)
    assert imported.manifest["seq_len_source"].startswith("the data_manifest block of")
    config["data_manifest"] = {"task": "maze", "seq_len": "16"}
    source = _run(tmp_path, vocab=6, seq_len=16, config=config, name="bad")
    with pytest.raises(PipelineError, match="data_manifest must be a mapping with an integer seq_len"):
        ref.read_reference(source)
