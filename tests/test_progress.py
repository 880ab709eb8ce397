"""The training progress line: rank 0 posts to a board, the driver shows one bar and a line per evaluation."""
import ray

from pipeline.progress import (
    Board,
    DriverProgress,
    Poster,
    TrainingEta,
    duration,
    eta_postfix,
    evaluation_line,
    evaluation_seconds_per_example,
    evaluation_stage_seconds,
    run_seconds_left,
    train_postfix,
)

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
    with DriverProgress(board, total_steps=1000, start_step=0) as progress:
        ray.get(board.post.remote({**EVAL, "eta_s": 65.0}))
    assert capsys.readouterr().err.count("eval @ step 500: exact 96.4 %") == 1
    assert progress.bar.postfix == "ETA=1 min 05 s"       # the ETA posted (tqdm's own is left out of the line)



def test_progress_line_shows_tokens_per_second_and_mfu():
    record = {"step": 10, "train/lm_loss": 0.5, "train/samples_per_s": 800.0, "train/tokens_per_s": 720000.0}
    assert train_postfix(record) == {"loss": "0.5", "samples/s": "800", "tokens/s": "7.2e+05"}   # CPU: no MFU
    assert train_postfix({**record, "train/mfu": 0.412})["MFU"] == "41.2%"


def _timeline(total=1000, step_s=0.1, eval_every=100, eval_s=30.0, compile_s=20.0, save_s=2.0):
    """The records of a run as `train_loop` writes them: a step's record once the next step ran, an
    evaluation's record (with its seconds) before its save, the save's seconds on the next record."""
    records, now, saved = [], 1000.0, None
    for step in range(1, total + 1):
        now += step_s
        record = {"step": step, "time": now}
        if saved is not None:
            record.update({"train/checkpoint_write_s": saved / 2, "train/checkpoint_report_s": saved / 2})
            saved = None
        if step % eval_every == 0 or step == total:
            first = not any("eval/count" in r for r in records)
            took = eval_s + (compile_s if first else 0.0)
            now += took
            record.update({"time": now, "eval/count": 300.0, "eval/exact_accuracy": 0.5, "eval/accuracy": 0.9,
                           "train/evaluation_s": took, **({"eval/compile_s": compile_s} if first else {})})
            now += save_s
            saved = save_s
        records.append(record)
    return records, now


def test_training_eta_stays_put_across_an_evaluation():
    """The ETA just after an evaluation equals the one just before it, less the time that passed: the
    pause was budgeted (a rate over wall time counts the pause as the steps' time and jumps after it)."""
    records, end = _timeline()
    eta = TrainingEta(1000, eval_every=100, checkpoint_every=0, has_eval=True)
    left = {}
    for record in records:
        eta.observe(record)
        left[record["step"]] = (eta.seconds_left(), record["time"])
    for before, after in ((399, 401), (699, 701)):
        (eta_before, t_before), (eta_after, t_after) = left[before], left[after]
        assert abs(eta_after + (t_after - t_before) - eta_before) < 0.02 * eta_before
    # and it is the true time left (after the first evaluation and save were timed)
    for step in (150, 500, 900):
        eta_s, now = left[step]
        assert abs(eta_s - (end - now)) < 0.02 * (end - now) + 1.0


def test_training_eta_counts_evaluations_and_saves_left():
    eta = TrainingEta(1050, eval_every=100, checkpoint_every=250, has_eval=True)
    for step in (0, 240, 1000):
        eta.step = step
        evals = [s for s in range(step + 1, 1051) if s % 100 == 0 or s == 1050]
        saves = [s for s in range(max(step, 1), 1051) if s % 250 == 0 or s in evals]   # step's own save is next
        assert (eta.evaluations_left(), eta.saves_left()) == (len(evals), len(saves))
    no_eval = TrainingEta(1050, eval_every=100, checkpoint_every=0, has_eval=False)
    no_eval.step = 0
    assert (no_eval.evaluations_left(), no_eval.saves_left()) == (0, 1)   # the last step's save only


def test_run_eta_adds_the_evaluation_stage_at_the_periodic_evaluations_speed():
    evaluation = {"train/evaluation_s": 50.0, "eval/compile_s": 20.0, "eval/count": 300.0}
    per_example = evaluation_seconds_per_example(evaluation)
    assert per_example == 0.1
    evaluation_stage = evaluation_stage_seconds(per_example, compile_s=20.0, examples=1000)
    assert evaluation_stage == 120.0 and run_seconds_left({"eta_s": 600.0}, evaluation_stage) == 720.0
    assert evaluation_stage_seconds(None, 0.0, examples=1000) is None                   # before any evaluation
    assert run_seconds_left({"eta_s": 600.0}, None) is None
    assert eta_postfix({"eta_s": 600.0}, 700.0) == {"ETA": "10 min 00 s", "run ETA": "11 min 40 s"}
    assert eta_postfix({"step": 3}, None) == {"ETA": "?"}
    assert [duration(s) for s in (0.2, 42, 185, 5280)] == ["under 1 s", "42 s", "3 min 05 s", "1 h 28 min"]
