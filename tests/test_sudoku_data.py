"""Sudoku data: CSV validation, solver/rater, generator, augmentation, TFDS build (recur_jax.tasks)."""

import os
import sys

import numpy as np
import pytest

from recur_jax.tasks import sudoku
from recur_jax.tasks.sudoku import SudokuDataError

EASY = "53..7....6..195....98....6.8...6...34..8.3..17...2...6.6....28....419..5....8..79"
EASY_SOL = "534678912672195348198342567859761423426853791713924856961537284287419635345286179"
# A. Inkala's "world's hardest sudoku" (2012).
HARD = "8..........36......7..9.2...5...7.......457.....1...3...1....68..85...1..9....4.."
HARD_SOL = "812753649943682175675491283154237896369845721287169534521974368438526917796318452"


def digits(s: str) -> np.ndarray:
    return np.array([0 if c in ".0" else int(c) for c in s], np.uint8)


def text(d, blank: str = ".") -> str:
    return "".join(blank if v == 0 else str(int(v)) for v in d)


@pytest.fixture(scope="module")
def puzzles() -> sudoku.SudokuSet:
    """Small generated sets reused by several tests."""
    return sudoku.generate(24, 7, tier="mixed", workers=1)


def write_csv(path, rows, header="source,question,answer,rating"):
    with open(path, "w", newline="") as f:
        if header is not None:
            f.write(header + "\n")
        for r in rows:
            f.write(r + "\n")
    return str(path)


def good_rows(data: sudoku.SudokuSet, n: int):
    return [f"gen,{text(data.questions[i], '.0'[i % 2])},{text(data.answers[i])},{int(data.ratings[i])}"
            for i in range(n)]


# ------------------------------------------------------------------------------------------------
# CSV


def test_csv_round_trip(tmp_path, puzzles):
    rows = good_rows(puzzles, 10)  # blanks alternate between '.' and '0'
    path = write_csv(tmp_path / "train.csv", rows)
    got = sudoku.read_csv(path)
    np.testing.assert_array_equal(got.questions, puzzles.questions[:10])
    np.testing.assert_array_equal(got.answers, puzzles.answers[:10])
    np.testing.assert_array_equal(got.ratings, puzzles.ratings[:10])
    assert got.questions.dtype == np.uint8 and got.ratings.dtype == np.float32
    # chunked parsing gives the same result
    got2 = sudoku.read_csv(path, chunk_rows=3)
    np.testing.assert_array_equal(got2.questions, got.questions)


def _mutate(rows, puzzles):
    """Malformed files: name -> (rows, header, expected line, words in the message)."""
    q0, a0 = puzzles.questions[0], puzzles.answers[0]
    given = int(np.argmax(q0 != 0))
    swapped = a0.copy()  # swap two digits within a row of the answer: columns break
    swapped[0], swapped[1] = a0[1], a0[0]
    q_blank_row = q0.copy()
    q_blank_row[:2] = 0
    wrong_given = a0.copy()
    wrong_given[given] = a0[given] % 9 + 1
    cases = {
        "wrong header": (rows, "source,quest,answer,rating", 1, ["header"]),
        "header only": ([], "source,question,answer,rating", 2, ["no puzzles"]),
        "column count": (rows[:2] + ["gen," + text(q0) + "," + text(a0)] + rows[2:], None, 4, ["3 columns"]),
        "blank line": (rows[:1] + [""] + rows[1:], None, 3, ["0 columns"]),
        "question length": (rows[:3] + [f"gen,{text(q0)[:80]},{text(a0)},1"], None, 5, ["question has 80"]),
        "answer length": (rows[:3] + [f"gen,{text(q0)},{text(a0)}9,1"], None, 5, ["answer has 82"]),
        "question char": (rows[:1] + [f"gen,x{text(q0)[1:]},{text(a0)},1"], None, 3, ["question has 'x'"]),
        "answer char": (rows[:1] + [f"gen,{text(q0)},{text(a0)[:5]}.{text(a0)[6:]},1"], None, 3,
                        ["answer has '.'"]),
        "rating": (rows[:2] + [f"gen,{text(q0)},{text(a0)},hard"], None, 4, ["rating 'hard'"]),
        "rating nan": (rows[:2] + [f"gen,{text(q0)},{text(a0)},nan"], None, 4, ["rating 'nan'"]),
        "contradicts givens": (rows[:2] + [f"gen,{text(q0)},{text(wrong_given)},1"], None, 4,
                               [f"cell {given + 1}", "keeps every given"]),
        "invalid solution": (rows[:2] + [f"gen,{text(q_blank_row)},{text(swapped)},1"], None, 4,
                             ["answer repeats digit", "valid solution"]),
        "duplicate": (rows + [f"dup,{text(puzzles.questions[1], '0')},{text(puzzles.answers[1])},2"], None,
                      len(rows) + 2, ["duplicate question (same as line 3)"]),
        "first of two errors": (rows[:2] + [f"gen,{text(q0)[:80]},{text(a0)},1", f"gen,{text(q0)},{text(a0)},x"],
                                None, 4, ["question has 80"]),
        "unterminated quote": (rows[:2] + ['"gen,' + text(q0)], None, 4, ["malformed CSV"]),
    }
    return cases


@pytest.mark.parametrize("chunk_rows", [2, 1000])
def test_csv_errors(tmp_path, puzzles, chunk_rows):
    rows = good_rows(puzzles, 6)
    for name, (rws, header, line, words) in _mutate(rows, puzzles).items():
        path = write_csv(tmp_path / "bad.csv", rws, header=header or "source,question,answer,rating")
        with pytest.raises(SudokuDataError) as info:
            sudoku.read_csv(path, chunk_rows=chunk_rows)
        msg = str(info.value)
        assert msg.startswith(f"{path}:{line}: "), (name, msg)
        assert "; expected " in msg and "\n" not in msg, (name, msg)
        for w in words:
            assert w in msg, (name, msg)
        assert info.value.line == line and info.value.file == path
        assert isinstance(info.value, ValueError)


def test_csv_empty_file_and_multiline_record(tmp_path, puzzles):
    path = write_csv(tmp_path / "empty.csv", [], header=None)
    with pytest.raises(SudokuDataError, match=r"empty\.csv:1: empty file; expected"):
        sudoku.read_csv(path)
    # a quoted source spanning two physical lines: later line numbers count physical lines
    rows = good_rows(puzzles, 3)
    q0, a0 = puzzles.questions[0], puzzles.answers[0]
    rows = ['"multi\nline",' + rows[0].split(",", 1)[1]] + rows[1:] + [f"gen,{text(q0)[:10]},{text(a0)},1"]
    path = write_csv(tmp_path / "multi.csv", rows)
    with pytest.raises(SudokuDataError, match=r"multi\.csv:6: question has 10 characters; expected 81"):
        sudoku.read_csv(path)


# ------------------------------------------------------------------------------------------------
# Tokens and validity


def test_encode_decode():
    q = digits(EASY)
    t = sudoku.encode(q)
    assert t.dtype == np.int32 and t.min() >= sudoku.BLANK_ID and t.max() <= sudoku.VOCAB_SIZE - 1
    assert (t[q == 0] == sudoku.BLANK_ID).all() and (t[q > 0] == q[q > 0] + 1).all()
    np.testing.assert_array_equal(sudoku.decode(t), q)
    np.testing.assert_array_equal(sudoku.decode(np.zeros(81, np.int32)), np.zeros(81))  # PAD: no digit
    with pytest.raises(ValueError):
        sudoku.decode(np.full(81, 11))
    with pytest.raises(ValueError):
        sudoku.encode(np.full(81, 10))


def test_validity_helpers():
    sol, q = digits(EASY_SOL), digits(EASY)
    assert sudoku.is_valid_solution(sol) and sudoku.is_consistent(q, sol)
    bad = sol.copy()
    bad[[0, 1]] = bad[[1, 0]]
    zero = sol.copy()
    zero[5] = 0
    np.testing.assert_array_equal(sudoku.is_valid_solution(np.stack([sol, bad, zero])), [True, False, False])
    assert not sudoku.is_consistent(q, bad)  # cells 0 and 1 are givens 5 and 3
    assert sudoku.is_valid_solution(np.broadcast_to(sol, (2, 3, 81))).shape == (2, 3)


# ------------------------------------------------------------------------------------------------
# Solver


def test_solver_known_puzzles():
    sol, n, guesses = sudoku.solve(digits(EASY))
    assert n == 1 and guesses == 0 and text(sol) == EASY_SOL
    sol, n, guesses = sudoku.solve(digits(HARD))
    assert n == 1 and text(sol) == HARD_SOL and guesses >= 20
    sol, n, _ = sudoku.solve(np.zeros(81, np.uint8))
    assert n == 2 and sudoku.is_valid_solution(sol)
    clash = digits(EASY)
    clash[2] = 5  # a second 5 in row 1
    assert sudoku.solve(clash) == (None, 0, 0)
    with pytest.raises(ValueError):
        sudoku.solve(np.zeros(80, np.uint8))


# ------------------------------------------------------------------------------------------------
# Generator


def _check_unique(data: sudoku.SudokuSet):
    for i in range(len(data)):
        sol, n, guesses = sudoku.solve(data.questions[i])
        assert n == 1, i
        np.testing.assert_array_equal(sol, data.answers[i])
        assert guesses == data.ratings[i], i


def test_generator_tiers():
    easy = sudoku.generate(30, 1, tier="easy", workers=1)
    medium = sudoku.generate(16, 1, tier="medium", workers=1)
    hard = sudoku.generate(16, 1, tier="hard", workers=1)
    for data in (easy, medium, hard):
        assert sudoku.is_valid_solution(data.answers).all() and sudoku.is_consistent(data.questions, data.answers).all()
        _check_unique(data)  # unique solution, and the stored rating is the solver's node count
    lo, hi = sudoku.EASY_GIVENS
    assert ((easy.num_givens >= lo) & (easy.num_givens <= hi)).all() and (easy.ratings == 0).all()
    assert (medium.ratings == 0).all() and (medium.num_givens < lo).all()
    assert (hard.ratings >= sudoku.HARD_MIN_GUESSES).all() and (hard.num_givens < lo).all()
    # medium is singles-minimal, hard is minimal
    for q in medium.questions[:2]:
        for c in np.nonzero(q)[0]:
            q2 = q.copy()
            q2[c] = 0
            _, n, g = sudoku.solve(q2)
            assert n == 2 or g > 0
    for q in hard.questions[:2]:
        for c in np.nonzero(q)[0]:
            q2 = q.copy()
            q2[c] = 0
            assert sudoku.solve(q2)[1] == 2


def test_generator_reproducible(puzzles):
    again = sudoku.generate(24, 7, tier="mixed", workers=1, lanes=5)
    np.testing.assert_array_equal(again.questions, puzzles.questions)
    np.testing.assert_array_equal(again.ratings, puzzles.ratings)
    prefix = sudoku.generate(9, 7, tier="mixed", workers=1)
    np.testing.assert_array_equal(prefix.questions, puzzles.questions[:9])
    other = sudoku.generate(24, 8, tier="mixed", workers=1)
    assert (other.questions != puzzles.questions).any(axis=1).all()
    test_stream = sudoku.generate(24, 7, tier="mixed", workers=1, stream=1)
    assert (test_stream.questions != puzzles.questions).any(axis=1).all()
    assert len(np.unique(puzzles.questions, axis=0)) == len(puzzles)
    _check_unique(puzzles)
    counts = np.bincount(np.minimum(puzzles.ratings, 1).astype(int), minlength=2)
    assert counts.min() > 0  # mixed holds puzzles with and without search


def test_generator_workers_independent():
    one = sudoku.generate(20, 3, tier="mixed", workers=1, chunk_size=4)
    two = sudoku.generate(20, 3, tier="mixed", workers=2, chunk_size=4)
    np.testing.assert_array_equal(one.questions, two.questions)
    np.testing.assert_array_equal(one.answers, two.answers)
    np.testing.assert_array_equal(one.ratings, two.ratings)


def test_generator_args():
    with pytest.raises(ValueError, match="tier"):
        sudoku.generate(1, 0, tier="extreme")
    with pytest.raises(ValueError):
        sudoku.generate(-1, 0)
    assert len(sudoku.generate(0, 0, workers=1)) == 0


# ------------------------------------------------------------------------------------------------
# Augmentation and subsampling


def test_augment(puzzles):
    rng = np.random.default_rng(0)
    q = np.repeat(puzzles.questions, 8, axis=0)
    a = np.repeat(puzzles.answers, 8, axis=0)
    q2, a2 = sudoku.augment(q, a, rng)
    assert q2.dtype == q.dtype and q2.shape == q.shape
    assert sudoku.is_valid_solution(a2).all() and sudoku.is_consistent(q2, a2).all()
    np.testing.assert_array_equal((q2 == 0).sum(1), (q == 0).sum(1))
    assert (q2 != q).any(axis=1).mean() > 0.99 and (a2 != a).any(axis=1).all()
    assert len(np.unique(a2, axis=0)) == len(a2)  # copies of one puzzle get different transforms
    for i in range(0, len(q2), 37):  # a symmetry keeps the solution unique and the rating
        sol, n, g = sudoku.solve(q2[i])
        assert n == 1 and (sol == a2[i]).all()
    # deterministic given the generator; tokens variant agrees
    q3, a3 = sudoku.augment(q, a, np.random.default_rng(0))
    np.testing.assert_array_equal(q3, q2)
    t_in, t_lab = sudoku.augment_tokens(sudoku.encode(q), sudoku.encode(a), np.random.default_rng(0))
    np.testing.assert_array_equal(sudoku.decode(t_in), q2)
    np.testing.assert_array_equal(sudoku.decode(t_lab), a2)


def test_augment_matches_reference_shuffle(puzzles):
    """Recovers each example's transform from marker grids (same generator state => same draws) and
    checks it is shuffle_sudoku's: digit map with 0 fixed, optional transpose, band/row and
    stack/column permutations; then applies that reference formula to real puzzles."""
    n = 200

    def run(q, a):
        return sudoku.augment(q, a, np.random.default_rng(11))

    cells = np.arange(81)
    rows = np.broadcast_to(cells // 9 + 1, (n, 81)).astype(np.uint8)
    cols = np.broadcast_to(cells % 9 + 1, (n, 81)).astype(np.uint8)
    ro, co = run(rows, cols)
    dmap = np.zeros((n, 10), np.intp)
    for v in range(1, 10):
        dmap[:, v] = run(np.full((n, 81), v, np.uint8), cols)[0][:, 0]
    assert (np.sort(dmap[:, 1:], axis=1) == np.arange(1, 10)).all()
    dinv = np.zeros((n, 10), np.intp)
    np.put_along_axis(dinv, dmap, np.arange(10)[None].repeat(n, 0), axis=1)
    src_r = (np.take_along_axis(dinv, ro.astype(np.intp), 1) - 1).reshape(n, 9, 9)
    src_c = (np.take_along_axis(dinv, co.astype(np.intp), 1) - 1).reshape(n, 9, 9)
    q = np.resize(puzzles.questions, (n, 81))
    a = np.resize(puzzles.answers, (n, 81))
    q_out, a_out = run(q, a)
    transposed = 0
    for k in range(n):
        t = not (src_r[k] == src_r[k][:, :1]).all()  # without transpose, a row reads one source row
        transposed += t
        row_perm = src_c[k][:, 0] if t else src_r[k][:, 0]
        col_perm = src_r[k][0] if t else src_c[k][0]
        for perm in (row_perm, col_perm):
            bands = perm.reshape(3, 3) // 3
            assert (bands == bands[:, :1]).all() and sorted(bands[:, 0]) == [0, 1, 2]
        mapping = (row_perm[:, None] * 9 + col_perm[None, :]).reshape(81)
        for x, out in ((q[k], q_out[k]), (a[k], a_out[k])):
            grid = x.reshape(9, 9)
            ref = dmap[k][(grid.T if t else grid).reshape(81)[mapping]]
            np.testing.assert_array_equal(out, ref)
    assert 0.3 < transposed / n < 0.7


def test_subsample(puzzles):
    s1 = sudoku.subsample(puzzles, 10, seed=4)
    s2 = sudoku.subsample(puzzles, 10, seed=4)
    np.testing.assert_array_equal(s1.questions, s2.questions)
    assert len(s1) == 10 and len(np.unique(s1.questions, axis=0)) == 10
    assert (sudoku.subsample(puzzles, 10, seed=5).questions != s1.questions).any()
    with pytest.raises(ValueError):
        sudoku.subsample(puzzles, len(puzzles) + 1, seed=0)


# ------------------------------------------------------------------------------------------------
# TFDS


def test_tfds_generated(tmp_path):
    from recur_jax.tasks.sudoku.builder import build_sudoku

    kw = dict(source="generated", seed=2, num_train=12, num_test=6, tier="mixed", workers=1)
    splits = build_sudoku(tmp_path, **kw)
    assert {k: len(v) for k, v in splits.items()} == {"train": 12, "test": 6}
    train = sudoku.generate(12, 2, tier="mixed", workers=1, stream=0)
    test = sudoku.generate(6, 2, tier="mixed", workers=1, stream=1)
    for ds, ref in ((splits["train"], train), (splits["test"], test)):
        for i in range(len(ds)):
            ex = ds[i]
            np.testing.assert_array_equal(ex["question"], ref.questions[i])
            np.testing.assert_array_equal(ex["answer"], ref.answers[i])
            assert float(ex["rating"]) == ref.ratings[i]
            assert np.asarray(ex["question"]).dtype == np.uint8
    names = os.listdir(tmp_path / "sudoku")
    again = build_sudoku(tmp_path, **kw)  # reused, same order
    assert os.listdir(tmp_path / "sudoku") == names
    np.testing.assert_array_equal(again["train"][5]["question"], train.questions[5])
    build_sudoku(tmp_path, **dict(kw, seed=3))
    assert len(os.listdir(tmp_path / "sudoku")) == 2  # other parameters: another config
    assert "tensorflow" not in sys.modules


def test_tfds_csv(tmp_path, puzzles):
    from recur_jax.tasks.sudoku.builder import build_sudoku

    src = tmp_path / "extreme"
    src.mkdir()
    write_csv(src / "train.csv", good_rows(puzzles, 20))
    test_rows = [f"t,{text(puzzles.questions[i])},{text(puzzles.answers[i])},{i}" for i in range(20, 24)]
    write_csv(src / "test.csv", test_rows)
    splits = build_sudoku(tmp_path / "data", source="csv", path=src, seed=1, num_train=7)
    ref = sudoku.subsample(sudoku.read_csv(src / "train.csv"), 7, seed=1)
    assert len(splits["train"]) == 7 and len(splits["test"]) == 4
    for i in range(7):
        np.testing.assert_array_equal(splits["train"][i]["question"], ref.questions[i])
    for i in range(4):
        np.testing.assert_array_equal(splits["test"][i]["answer"], puzzles.answers[20 + i])
        assert float(splits["test"][i]["rating"]) == 20 + i
    # a malformed file: the data error comes through unchanged
    bad = tmp_path / "bad"
    bad.mkdir()
    write_csv(bad / "train.csv", good_rows(puzzles, 3) + ["gen,123,456,1"])
    write_csv(bad / "test.csv", test_rows)
    with pytest.raises(SudokuDataError) as info:
        build_sudoku(tmp_path / "data", source="csv", path=bad, num_train=2)
    assert str(info.value).startswith(f"{bad / 'train.csv'}:5: question has 3 characters; expected 81")
    with pytest.raises(FileNotFoundError, match="test.csv"):
        os.remove(bad / "test.csv")
        build_sudoku(tmp_path / "data", source="csv", path=bad, num_train=2)
