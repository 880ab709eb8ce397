"""augment.sudoku: checked against an independent validity test, brute force on 4x4, and real hard puzzles."""
import csv
import itertools

import numpy as np
import pytest

from augment import sudoku


@pytest.fixture(scope="module")
def hard(shared_data):
    with open(shared_data / "sudoku" / "magictour_top1465.csv") as f:
        rows = list(csv.DictReader(f))[:300]
    questions, q_bad = sudoku.parse([r["question"] for r in rows], 9, blanks_allowed=True)
    answers, a_bad = sudoku.parse([r["answer"] for r in rows], 9, blanks_allowed=False)
    assert (q_bad == "").all() and (a_bad == "").all()
    return questions, answers


@pytest.fixture(scope="module")
def all_4x4_grids():
    """Every valid 4x4 grid (288), by brute force over rows that are permutations."""
    perms = np.array(list(itertools.permutations(range(1, 5))), dtype=np.uint8)
    grids = perms[np.array(list(itertools.product(range(24), repeat=4)))]
    return grids[sudoku.is_valid_solution(grids)]


def all_4x4_symmetries():
    """All 3072 transforms of a 4x4 grid: transpose x band-preserving rows x columns x relabellings."""
    line_perms = [list(a) + list(b) for order in ((0, 1), (1, 0)) for a in itertools.permutations(
        range(2 * order[0], 2 * order[0] + 2)) for b in itertools.permutations(range(2 * order[1], 2 * order[1] + 2))]
    combos = list(itertools.product((False, True), line_perms, line_perms, itertools.permutations(range(1, 5))))
    return sudoku.Transform(np.array([c[0] for c in combos]), np.array([c[1] for c in combos]),
                            np.array([c[2] for c in combos]), np.array([(0, *c[3]) for c in combos]))


def test_independent_checker_catches_each_kind_of_repeat(hard):
    _, answers = hard
    assert sudoku.is_valid_solution(answers).all()
    swapped_in_row = answers[:3].copy()
    swapped_in_row[:, 0, [0, 1]] = swapped_in_row[:, 0, [1, 0]]       # rows stay fine, columns break
    assert not sudoku.is_valid_solution(swapped_in_row).any()
    bands_mixed = answers[:3].copy()
    bands_mixed[:, [2, 3]] = bands_mixed[:, [3, 2]]                   # rows and columns fine, boxes break
    assert not sudoku.is_valid_solution(bands_mixed).any()


def test_strings_round_trip_and_row_reasons(hard):
    questions, answers = hard
    q_text, a_text = sudoku.format_grids(questions[:5]), sudoku.format_grids(answers[:5])
    back, reasons = sudoku.parse(q_text, 9, blanks_allowed=True)
    assert np.array_equal(back, questions[:5]) and (reasons == "").all()
    assert (sudoku.validate_rows(q_text, a_text, 9) == "").all()
    bad_given = q_text[1]
    k = bad_given.index(".")
    wrong = str(answers[1].ravel()[k] % 9 + 1)
    inconsistent = bad_given[:k] + wrong + bad_given[k + 1:]
    broken_answer = a_text[3][1] + a_text[3][0] + a_text[3][2:]
    rows_q = [q_text[0][:80], q_text[1].replace(".", "x", 1), inconsistent, q_text[3], q_text[4]]
    rows_a = [a_text[0], a_text[1], a_text[2], broken_answer, a_text[4].replace("1", ".")]
    reasons = sudoku.validate_rows(rows_q, rows_a, 9)
    assert reasons[0] == "question has 80 characters, expected 81"
    assert reasons[1].startswith(f"question character {k + 1} is 'x'")
    # `inconsistent` may clash with its own row too: it is still a question whose given differs from the answer.
    assert reasons[2] == "question has a given that differs from the answer"
    assert reasons[3].startswith("answer is not a valid grid")
    assert reasons[4].startswith("answer character") and "expected '1'-'9'" in reasons[4]


def test_solver_solves_real_hard_puzzles_and_proves_uniqueness(hard):
    questions, answers = hard
    solved = sudoku.solve(questions)
    assert (solved.count == 1).all()
    assert np.array_equal(solved.solution, answers)
    assert sudoku.is_valid_solution(solved.solution).all()
    assert (solved.guesses > 0).mean() > 0.5 and (solved.nodes >= (questions == 0).sum(axis=(1, 2))).all()


def test_solver_counts_several_and_no_solutions(hard):
    questions, answers = hard
    empty = np.zeros((1, 9, 9), dtype=np.uint8)
    assert sudoku.solve(empty).count[0] == 2 and sudoku.solve(empty, limit=1).count[0] == 1
    clash = questions[:1].copy()
    row = clash[0, 0]
    blank = int(np.flatnonzero(row == 0)[0])
    row[blank] = row[row > 0][0]                               # a given repeated in its row
    assert sudoku.solve(clash).count[0] == 0
    # Givens consistent with a grid but too few to pin it down: the second solution is found.
    few = answers[:1] * (np.arange(81).reshape(1, 9, 9) < 9)  # the first row only
    assert sudoku.solve(few).count[0] == 2
    easy = answers[:1].copy()
    easy[0, 0, 0] = 0
    assert sudoku.solve(easy).guesses[0] == 0                  # a naked single needs no guess


@pytest.mark.parametrize("n", [4, 6, 9])
def test_generated_puzzles_are_valid_unique_minimal_and_seeded(n):
    questions, solutions, ratings = sudoku.generate(np.random.default_rng(7), 40, n)
    assert questions.shape == solutions.shape == (40, n, n) and ratings.shape == (40,)
    assert sudoku.is_valid_solution(solutions).all()
    assert sudoku.givens_consistent(questions, solutions).all()
    solved = sudoku.solve(questions)
    assert (solved.count == 1).all() and np.array_equal(solved.solution, solutions)
    assert np.array_equal(solved.guesses, ratings)
    # Minimal: removing any single given of the first puzzles leaves several solutions.
    for q in questions[:3]:
        for cell in np.argwhere(q > 0):
            lighter = q.copy()
            lighter[tuple(cell)] = 0
            assert sudoku.solve(lighter[None]).count[0] == 2
    again = sudoku.generate(np.random.default_rng(7), 40, n)
    assert np.array_equal(again[0], questions) and np.array_equal(again[1], solutions)
    other = sudoku.generate(np.random.default_rng(8), 40, n)
    assert not np.array_equal(other[1], solutions)


@pytest.mark.parametrize("n, max_blanks", [(6, 12), (9, 30)])
def test_max_blanks_gives_easier_unique_puzzles(n, max_blanks):
    questions, solutions, _ = sudoku.generate(np.random.default_rng(3), 30, n, max_blanks=max_blanks)
    assert ((questions == 0).sum(axis=(1, 2)) == max_blanks).all()
    solved = sudoku.solve(questions)
    assert (solved.count == 1).all() and np.array_equal(solved.solution, solutions)


def test_4x4_puzzles_have_one_completion_among_all_grids(all_4x4_grids):
    assert len(all_4x4_grids) == 288
    questions, solutions, _ = sudoku.generate(np.random.default_rng(0), 50, 4)
    for q, s in zip(questions, solutions):
        matches = all_4x4_grids[sudoku.givens_consistent(np.broadcast_to(q, all_4x4_grids.shape), all_4x4_grids)]
        assert len(matches) == 1 and np.array_equal(matches[0], s)


@pytest.mark.parametrize("n", [4, 6, 9])
def test_augmentation_keeps_puzzles_valid_and_has_an_inverse(n):
    rng = np.random.default_rng(3)
    questions, solutions, _ = sudoku.generate(rng, 30, n)
    copies = 20
    q, s = np.repeat(questions, copies, axis=0), np.repeat(solutions, copies, axis=0)
    t = sudoku.random_transforms(rng, len(q), n)
    aq, as_ = sudoku.apply_transform(q, t), sudoku.apply_transform(s, t)
    assert sudoku.is_valid_solution(as_).all() and sudoku.givens_consistent(aq, as_).all()
    assert np.array_equal(aq == 0, np.where(t.transpose[:, None, None], (q == 0).transpose(0, 2, 1), q == 0)[
        np.arange(len(q))[:, None, None], t.row_perm[:, :, None], t.col_perm[:, None, :]])
    solved = sudoku.solve(aq)
    assert (solved.count == 1).all() and np.array_equal(solved.solution, as_)
    inverse = sudoku.inverse_transform(t)
    assert np.array_equal(sudoku.apply_transform(aq, inverse), q)
    assert np.array_equal(sudoku.apply_transform(as_, inverse), s)
    assert np.array_equal(sudoku.apply_transform(q, sudoku.identity_transforms(len(q), n)), q)
    br, bc = sudoku.box_shape(n)
    assert (t.row_perm.reshape(len(q), n // br, br) // br == t.row_perm[:, ::br, None] // br).all()  # bands stay
    assert (t.col_perm.reshape(len(q), n // bc, bc) // bc == t.col_perm[:, ::bc, None] // bc).all()
    assert t.transpose.any() == (br == bc)
    # Most copies of a puzzle differ from each other (9x9: all of them).
    distinct = len({g.tobytes() for g in as_[:copies]})
    assert distinct == copies if n == 9 else distinct > copies // 2
    again = sudoku.random_transforms(np.random.default_rng(5), 4, n)
    assert np.array_equal(again.row_perm, sudoku.random_transforms(np.random.default_rng(5), 4, n).row_perm)


@pytest.mark.parametrize("n", [6, 9])
def test_canonical_form_is_invariant_and_separates_different_puzzles(n):
    rng = np.random.default_rng(11)
    questions, solutions, _ = sudoku.generate(rng, 25, n)
    canon = sudoku.canonical_form(questions, solutions)
    assert len({c.tobytes() for c in canon}) == 25            # random puzzles at 6x6/9x9 are not equivalent
    t = sudoku.random_transforms(rng, 25, n)
    moved = sudoku.canonical_form(sudoku.apply_transform(questions, t), sudoku.apply_transform(solutions, t))
    assert np.array_equal(moved, canon)
    # The same grid with one given moved to another cell is another puzzle (as many givens).
    moved_given = questions.copy()
    for q, s in zip(moved_given, solutions):
        (r, c), (r2, c2) = np.argwhere(q > 0)[0], np.argwhere(q == 0)[0]
        q[r, c], q[r2, c2] = 0, s[r2, c2]
    assert not (sudoku.canonical_form(moved_given, solutions) == canon).all(axis=1).any()


def test_canonical_form_matches_brute_force_equivalence_on_4x4():
    questions, solutions, _ = sudoku.generate(np.random.default_rng(2), 12, 4)
    canon = sudoku.canonical_form(questions, solutions)
    group = all_4x4_symmetries()
    orbits = [{g.tobytes() for g in sudoku.apply_transform(np.repeat(q[None], len(group), axis=0), group)}
              for q in questions]
    for i, j in itertools.combinations(range(len(questions)), 2):
        assert np.array_equal(canon[i], canon[j]) == (questions[j].tobytes() in orbits[i])
    assert len({c.tobytes() for c in canon}) < len(questions)   # 4x4 puzzles do repeat up to symmetry


@pytest.mark.parametrize("n", [4, 6, 9])
def test_token_transform_moves_tokens_as_the_digit_transform_and_inverts_any_tokens(n):
    rng = np.random.default_rng(5)
    _, solutions, _ = sudoku.generate(rng, 10, n)
    t = sudoku.random_transforms(rng, len(solutions), n)
    tokens_t = sudoku.token_transform(t)
    tokens = sudoku.to_tokens(solutions).reshape(-1, n, n)
    assert np.array_equal(sudoku.apply_transform(tokens, tokens_t), sudoku.to_tokens(sudoku.apply_transform(solutions, t))
                          .reshape(-1, n, n))
    predicted = rng.integers(0, n + 2, tokens.shape, dtype=np.uint8)      # PAD 0 and blank 1 included
    moved = sudoku.apply_transform(predicted, tokens_t)
    cells_only = sudoku.apply_transform(predicted, sudoku.token_transform(
        sudoku.Transform(t.transpose, t.row_perm, t.col_perm, sudoku.identity_transforms(len(t), n).digit_map)))
    fixed = cells_only < 2
    assert fixed.any() and np.array_equal(moved[fixed], cells_only[fixed])   # PAD and blank only move with cells
    assert np.array_equal(sudoku.apply_transform(moved, sudoku.inverse_transform(tokens_t)), predicted)
