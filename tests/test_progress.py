"""The training progress line: rank 0 posts to a board, the driver shows one bar and a line per evaluation."""
import ray

from pipeline.progress import Board, DriverProgress, Poster, evaluation_line, train_postfix

EVAL = {"step": 500, "eval/exact_accuracy": 0.964, "eval/accuracy": 0.991, "eval/exact_accuracy_step1": 0.108,
        "eval/exact_accuracy_step2": 0.938, "eval/exact_accuracy_step10": 0.5}


def test_evaluation_line_orders_supervision_steps():
    assert evaluation_line(EVAL) == ("eval @ step 500: exact 96.4 % (per supervision step 10.8 / 93.8 / 50.0), "
                                     "token 99.1 %")


def test_board_keeps_the_latest_record_and_every_evaluation(ray_local):
    board = Board.remote()
    poster = Poster(board)
    for step in range(1, 6):
        poster.post({"step": step, "train/lm_loss": 1.0 / step})   # throttled: most are not sent
    poster.post(EVAL)                                                # evaluations always are
    latest, evaluations = ray.get(board.take.remote())
    assert latest == EVAL and evaluations == [EVAL]
    assert ray.get(board.take.remote()) == (EVAL, [])                # each evaluation is shown once


def test_driver_prints_each_evaluation_once(ray_local, capsys):
    board = Board.remote()
    with DriverProgress(board, total_steps=1000, start_step=0):
        ray.get(board.post.remote(EVAL))
    assert capsys.readouterr().err.count("eval @ step 500: exact 96.4 %") == 1



def test_progress_line_shows_tokens_per_second_and_mfu():
    record = {"step": 10, "train/lm_loss": 0.5, "train/samples_per_s": 800.0, "train/tokens_per_s": 720000.0}
    assert train_postfix(record) == {"loss": "0.5", "samples/s": "800", "tokens/s": "7.2e+05"}   # CPU: no MFU
    assert train_postfix({**record, "train/mfu": 0.412})["MFU"] == "41.2%"
