"""Sudoku data: tokens, the Sudoku-Extreme CSV reader, a solver/rater, a generator, augmentation.

Pure numpy; nothing here imports JAX or TensorFlow.

Conventions (TRM.md 6.2, HRM.md 5.1):

  * a grid is 81 cells in row-major order; "digits" arrays are uint8 with 0 = blank, 1..9 = digits;
  * tokens (model inputs and labels) are int32: PAD = 0, blank = 1, digit d = d + 1 (2..10), so
    VOCAB_SIZE = 11 and SEQ_LEN = 81; every cell is supervised, givens included;
  * a data set is a `SudokuSet` (questions [N, 81] uint8, answers [N, 81] uint8, ratings [N] float32).

Sources of puzzles:

  * `read_csv`: the official Sudoku-Extreme files (HF `sapientinc/sudoku-extreme`, train.csv and
    test.csv, header `source,question,answer,rating`), validated row by row (vectorised);
  * `generate`: a seeded generator of unique-solution puzzles in difficulty tiers, for experiments
    without the official data (e.g. the CPU demo).

`solve` is a bitmask backtracking solver (naked + hidden singles, MRV branching) whose search-node
count is the difficulty rating of generated puzzles. `augment` is the reference `shuffle_sudoku`
(digit relabelling, transpose, band/row and stack/column permutations) vectorised over a batch.
"""

from __future__ import annotations

import csv
import dataclasses
import itertools
import multiprocessing
import os

import numpy as np

SEQ_LEN = 81
VOCAB_SIZE = 11
PAD_ID = 0
BLANK_ID = 1

CSV_HEADER = ("source", "question", "answer", "rating")
MAX_CSV_LINE_CHARS = 4096  # a row is about 170 characters; longer lines are refused before parsing
MAX_CSV_ROWS = 10_000_000  # the official train.csv has about 3.8M rows; about 1.7 GB once parsed

TIERS = ("easy", "medium", "hard", "mixed")
EASY_GIVENS = (36, 45)  # inclusive range of givens of the "easy" tier
HARD_MIN_GUESSES = 1  # the "hard" tier keeps puzzles whose rating (search nodes) is at least this
MIXED_FRACTIONS = (1 / 3, 1 / 3, 1 / 3)  # easy, medium, hard shares of the "mixed" tier (per puzzle draw)

# ----------------------------------------------------------------------------------------------
# Grid geometry and bitmask tables. A candidate set is a 9-bit mask: bit d-1 <=> digit d.

_ALL = 0x1FF
_UNITS = np.array(
    [[r * 9 + c for c in range(9)] for r in range(9)]
    + [[r * 9 + c for r in range(9)] for c in range(9)]
    + [[(3 * (b // 3) + i // 3) * 9 + 3 * (b % 3) + i % 3 for i in range(9)] for b in range(9)],
    dtype=np.intp,
)  # [27, 9]: rows 0..8, columns 9..17, boxes 18..26
_UNITS_T = np.ascontiguousarray(_UNITS.T)  # [9, 27]
_CELL_UNITS = np.array([[i // 9, 9 + i % 9, 18 + 3 * (i // 27) + (i % 9) // 3] for i in range(81)], np.intp)
_CU0, _CU1, _CU2 = (np.ascontiguousarray(_CELL_UNITS[:, k]) for k in range(3))
_PEERS = tuple(
    tuple(sorted({p for u in _CELL_UNITS[i] for p in _UNITS[u]} - {i})) for i in range(81)
)  # 20 peers per cell
_UNITS_PY = tuple(tuple(int(i) for i in u) for u in _UNITS)
_UNIT_NAMES = [f"row {r + 1}" for r in range(9)] + [f"column {c + 1}" for c in range(9)] + [
    f"box {b + 1}" for b in range(9)]

_POPC = np.array([bin(m).count("1") for m in range(512)], np.uint8)
_LOWBIT = np.array([m & -m for m in range(512)], np.uint16)
_DIGIT = np.array([m.bit_length() if m and not m & (m - 1) else 0 for m in range(512)], np.uint8)
_BIT = np.array([0] + [1 << (d - 1) for d in range(1, 10)], np.uint16)  # digit -> mask (0 -> 0)
_KTH = np.zeros((512, 9), np.uint16)  # [mask, k] -> k-th lowest set bit of mask
for _m in range(512):
    _bits = [1 << b for b in range(9) if _m >> b & 1]
    _KTH[_m, : len(_bits)] = _bits
del _m, _bits
_POPC_PY = tuple(int(x) for x in _POPC)


class SudokuDataError(ValueError):
    """A malformed Sudoku data file, one line: "{file}:{line}: {what is wrong}; expected {what}".

    Raised by `read_csv` (and so by `sudoku_tfds.build_sudoku`); `line` is 1-based (the header is
    line 1). A ValueError. The reference builder does not validate its input.

    Attributes:
      file, line, problem, expected: the parts of the message.
    """

    def __init__(self, file: str, line: int, problem: str, expected: str):
        self.file, self.line, self.problem, self.expected = file, line, problem, expected
        super().__init__(f"{file}:{line}: {problem}; expected {expected}")


@dataclasses.dataclass(frozen=True)
class SudokuSet:
    """Puzzles with their solutions: the contents of one split before tokenisation.

    The reference keeps the same data as `<set>__inputs.npy` / `<set>__labels.npy` tokens (TRM.md 6.1);
    here digits are kept and `encode` makes tokens on the fly.

    Attributes:
      questions: uint8 [N, 81], 0 = blank, 1..9 = givens.
      answers: uint8 [N, 81], digits 1..9 (the solution).
      ratings: float32 [N], difficulty (Sudoku-Extreme: the file's `rating` column; generated puzzles:
        search nodes of `solve`, 0 = solvable by singles alone).
    Raises:
      ValueError: (at construction) inconsistent shapes.
    """

    questions: np.ndarray
    answers: np.ndarray
    ratings: np.ndarray

    def __post_init__(self):
        q = np.ascontiguousarray(self.questions, np.uint8)
        a = np.ascontiguousarray(self.answers, np.uint8)
        r = np.ascontiguousarray(self.ratings, np.float32)
        if q.ndim != 2 or q.shape[1] != SEQ_LEN or a.shape != q.shape or r.shape != q.shape[:1]:
            raise ValueError(f"SudokuSet: questions {q.shape}, answers {a.shape}, ratings {r.shape}; "
                             f"expected [N, 81], [N, 81], [N]")
        object.__setattr__(self, "questions", q)
        object.__setattr__(self, "answers", a)
        object.__setattr__(self, "ratings", r)

    def __len__(self) -> int:
        return len(self.questions)

    def take(self, indices) -> SudokuSet:
        """The puzzles at `indices` (int array [M]) in that order."""
        idx = np.asarray(indices, np.intp)
        return SudokuSet(self.questions[idx], self.answers[idx], self.ratings[idx])

    @property
    def num_givens(self) -> np.ndarray:
        """int64 [N]: non-blank cells of each question."""
        return np.count_nonzero(self.questions, axis=1)


# ----------------------------------------------------------------------------------------------
# Tokens


def encode(digits) -> np.ndarray:
    """Digits -> tokens (TRM.md 6.2): blank 0 -> 1, digit d -> d + 1; PAD (0) never appears.

    Args:
      digits: integer array [..., 81] (any shape) with values 0..9.
    Returns:
      int32 array of the same shape, values 1..10.
    Raises:
      ValueError: a value outside 0..9.
    """
    d = np.asarray(digits)
    if d.size and (d.min() < 0 or d.max() > 9):
        raise ValueError(f"encode: digits must be in 0..9, got range [{d.min()}, {d.max()}]")
    return d.astype(np.int32) + 1


def decode(tokens) -> np.ndarray:
    """Tokens -> digits, the inverse of `encode`: 1 (blank) -> 0, 2..10 -> 1..9.

    PAD (0), which a model may predict although data never holds it, also decodes to 0 (no digit),
    so decoded predictions can be checked with `is_valid_solution` (which then fails).

    Args:
      tokens: integer array of any shape with values 0..10 (vocabulary of TRM.md 6.2).
    Returns:
      uint8 array of the same shape, values 0..9.
    Raises:
      ValueError: a value outside 0..10.
    """
    t = np.asarray(tokens)
    if t.size and (t.min() < 0 or t.max() > 10):
        raise ValueError(f"decode: tokens must be in 0..10 (vocabulary of 11), got range [{t.min()}, {t.max()}]")
    return np.maximum(t.astype(np.int32) - 1, 0).astype(np.uint8)


# ----------------------------------------------------------------------------------------------
# Validity


def _check81(x: np.ndarray, name: str) -> None:
    if x.ndim < 1 or x.shape[-1] != SEQ_LEN:
        raise ValueError(f"{name}: expected shape [..., 81], got {x.shape}")


def _unit_masks(g: np.ndarray) -> np.ndarray:
    """[M, 81] digits -> [M, 27] OR of 1 << digit over each unit (uint16; rows, columns, boxes)."""
    out = np.empty((len(g), 27), np.uint16)
    step = 1 << 16
    for s in range(0, len(g), step):
        bits = np.left_shift(np.uint16(1), np.minimum(g[s:s + step], 15).astype(np.uint16)).reshape(-1, 9, 9)
        out[s:s + step, :9] = np.bitwise_or.reduce(bits, axis=2)
        out[s:s + step, 9:18] = np.bitwise_or.reduce(bits, axis=1)
        boxes = bits.reshape(-1, 3, 3, 3, 3)  # [band, row in band, stack, column in stack]
        out[s:s + step, 18:] = np.bitwise_or.reduce(np.bitwise_or.reduce(boxes, axis=4), axis=2).reshape(-1, 9)
    return out


def is_valid_solution(grid) -> np.ndarray:
    """Whether each grid is a complete valid Sudoku: digits 1..9, each once per row, column and box.

    Not in the reference builder (which trusts the file); `read_csv` uses it to validate answers.

    Args:
      grid: integer array [..., 81].
    Returns:
      bool array [...].
    Raises:
      ValueError: last dimension is not 81.
    """
    g = np.asarray(grid)
    _check81(g, "is_valid_solution")
    flat = g.reshape(-1, SEQ_LEN)
    in_range = ((flat >= 1) & (flat <= 9)).all(axis=1)
    ok = in_range & (_unit_masks(np.where(in_range[:, None], flat, 0)) == 0x3FE).all(axis=1)
    return ok.reshape(g.shape[:-1])


def is_consistent(question, answer) -> np.ndarray:
    """Whether each answer keeps every given of its question (blank = 0 matches anything).

    Not in the reference builder; `read_csv` uses it to validate rows.

    Args:
      question, answer: integer arrays [..., 81] of the same shape.
    Returns:
      bool array [...].
    Raises:
      ValueError: shapes differ or the last dimension is not 81.
    """
    q, a = np.asarray(question), np.asarray(answer)
    _check81(q, "is_consistent")
    if q.shape != a.shape:
        raise ValueError(f"is_consistent: question {q.shape} and answer {a.shape} differ")
    return ((q == 0) | (q == a)).all(axis=-1)


def _first_conflict(grid: np.ndarray) -> str:
    """Describes the first unit of a [81] grid that does not hold 1..9 once each."""
    for u, cells in enumerate(_UNITS):
        vals = [int(grid[i]) for i in cells]
        seen = set()
        for v in vals:
            if v in seen:
                return f"repeats digit {v} in {_UNIT_NAMES[u]}"
            seen.add(v)
    return "is not a valid solution"


# ----------------------------------------------------------------------------------------------
# CSV reader


def _fail(file: str, line: int, problem: str, expected: str):
    raise SudokuDataError(file, line, problem, expected)


_Q_LUT = np.full(256, 255, np.uint8)
_Q_LUT[ord(".")] = 0
for _d in range(10):
    _Q_LUT[ord("0") + _d] = _d
_A_LUT = np.full(256, 255, np.uint8)
for _d in range(1, 10):
    _A_LUT[ord("0") + _d] = _d
del _d


def _first_true(mask: np.ndarray) -> int:
    """Index of the first True of a 1-D bool array, or its length when there is none."""
    i = int(np.argmax(mask)) if mask.size else 0
    return i if mask.size and mask[i] else len(mask)


def _validate_chunk(file: str, rows: list, lines: np.ndarray):
    """Validates one chunk of CSV rows; returns (questions, answers, ratings) or raises at the first bad row."""
    n = len(rows)
    ncols = np.fromiter(map(len, rows), np.int64, n)
    k_cols = _first_true(ncols != 4)
    qs = [r[1] for r in rows[:k_cols]]
    ans = [r[2] for r in rows[:k_cols]]
    qlen = np.fromiter(map(len, qs), np.int64, k_cols)
    alen = np.fromiter(map(len, ans), np.int64, k_cols)
    k_len = _first_true((qlen != SEQ_LEN) | (alen != SEQ_LEN))
    k = k_len  # rows [0, k) have 4 columns and 81-character question and answer

    first_bad, problem, expected = n + 1, "", ""

    def consider(i: int, prob: str, exp: str):
        nonlocal first_bad, problem, expected
        if i < first_bad:
            first_bad, problem, expected = i, prob, exp

    if k_cols < n:
        consider(k_cols, f"{ncols[k_cols]} columns", f"{len(CSV_HEADER)} ({','.join(CSV_HEADER)})")
    if k_len < k_cols:
        if qlen[k_len] != SEQ_LEN:
            consider(k_len, f"question has {qlen[k_len]} characters", f"{SEQ_LEN}")
        else:
            consider(k_len, f"answer has {alen[k_len]} characters", f"{SEQ_LEN}")

    qb = np.frombuffer("".join(qs[:k]).encode("ascii", "replace"), np.uint8).reshape(k, SEQ_LEN)
    ab = np.frombuffer("".join(ans[:k]).encode("ascii", "replace"), np.uint8).reshape(k, SEQ_LEN)
    q, a = _Q_LUT[qb], _A_LUT[ab]
    badq = (q == 255).any(axis=1)
    bada = (a == 255).any(axis=1)
    i = _first_true(badq)
    if i < k:
        j = int(np.argmax(q[i] == 255))
        consider(i, f"question has {qs[i][j]!r} at position {j + 1}", "'.', '0' (blank) or a digit 1-9")
    i = _first_true(bada)
    if i < k:
        j = int(np.argmax(a[i] == 255))
        consider(i, f"answer has {ans[i][j]!r} at position {j + 1}", "a digit 1-9")

    rstr = [r[3] for r in rows[:k]]
    try:
        ratings = np.array(rstr, dtype=np.float64) if k else np.zeros(0)
        bad_r = ~np.isfinite(ratings)
    except ValueError:
        ratings = np.zeros(k)
        bad_r = np.zeros(k, bool)
        for t, s in enumerate(rstr):
            try:
                ratings[t] = float(s)
            except ValueError:
                ratings[t] = np.nan
        bad_r = ~np.isfinite(ratings)
    i = _first_true(bad_r)
    if i < k:
        consider(i, f"rating {rstr[i]!r} is not a number", "a finite number")

    okchars = ~(badq | bada)
    qa = np.where(okchars[:, None], q, 0)
    aa = np.where(okchars[:, None], a, 0)
    contra = okchars & ~is_consistent(qa, aa)
    i = _first_true(contra)
    if i < k:
        j = int(np.argmax((qa[i] != 0) & (qa[i] != aa[i])))
        consider(i, f"answer has {aa[i][j]} at cell {j + 1} (row {j // 9 + 1}, column {j % 9 + 1}) "
                    f"where the question gives {qa[i][j]}", "an answer that keeps every given")
    invalid = okchars & ~is_valid_solution(aa)
    i = _first_true(invalid)
    if i < k:
        consider(i, f"answer {_first_conflict(aa[i])}",
                 "a valid solution (each digit once per row, column and box)")

    if first_bad <= n:
        _fail(file, int(lines[first_bad]), problem, expected)
    return q, a, ratings.astype(np.float32)


def _row_hashes(q: np.ndarray) -> np.ndarray:
    """[N, 81] uint8 -> [N] uint64 hashes (splitmix64 over the 11 packed 8-byte words), in blocks."""
    h = np.zeros(len(q), np.uint64)
    step = 1 << 18
    padded = np.zeros((min(step, len(q)), 88), np.uint8)
    with np.errstate(over="ignore"):
        for s in range(0, len(q), step):
            block = q[s:s + step]
            padded[: len(block), :SEQ_LEN] = block
            words = padded[: len(block)].view(np.uint64)
            hb = np.zeros(len(block), np.uint64)
            for w in range(words.shape[1]):
                hb = _mix64(hb ^ words[:, w])
            h[s:s + len(block)] = hb
    return h


def _check_duplicates(file: str, q: np.ndarray, lines: np.ndarray) -> None:
    """Raises SudokuDataError at the first line whose question repeats an earlier one."""
    if len(q) < 2:
        return
    h = _row_hashes(q)
    order = np.argsort(h, kind="stable")
    hs = h[order]
    same = hs[1:] == hs[:-1]
    if not same.any():
        return
    cand = np.zeros(len(q), bool)
    cand[order[1:][same]] = True
    cand[order[:-1][same]] = True
    seen: dict[bytes, int] = {}
    for i in np.nonzero(cand)[0]:  # ascending file order
        key = q[i].tobytes()
        if key in seen:
            _fail(file, int(lines[i]), f"duplicate question (same as line {int(lines[seen[key]])})",
                  "each question once per file")
        seen[key] = i


def _bounded_lines(f, file: str, max_chars: int):
    """The lines of `f`, each read with a length limit (a crafted line cannot exhaust memory)."""
    n = 0
    while True:
        line = f.readline(max_chars + 1)
        if not line:
            return
        n += 1
        if len(line) > max_chars:
            _fail(file, n, f"line longer than {max_chars} characters", "a row of about 170 characters "
                  "(source,question,answer,rating)")
        yield line


def read_csv(path, *, chunk_rows: int = 262144, max_rows: int = MAX_CSV_ROWS,
             max_line_chars: int = MAX_CSV_LINE_CHARS) -> SudokuSet:
    """Reads and validates a Sudoku-Extreme CSV file (TRM.md 6.2; `build_sudoku_dataset.py`).

    Format: header `source,question,answer,rating`; question and answer are 81 characters,
    '.' or '0' for a blank in the question, digits 1-9; rating is a number. The `source` column is
    not kept. Parsing and checks are vectorised per chunk of `chunk_rows` rows; the duplicate check
    hashes all questions once (about 3.8M rows for the official train.csv).

    Args:
      path: the CSV file (str or os.PathLike); its string form names the file in errors.
      chunk_rows: rows parsed and validated at a time (memory bound).
      max_rows: more data rows than this are refused (memory bound of the parsed arrays).
      max_line_chars: a longer physical line is refused before it is parsed; a chunk stops at the first
        row with the wrong number of columns, so a crafted file cannot make huge rows either.
    Returns:
      SudokuSet(questions uint8 [N, 81] (0 = blank), answers uint8 [N, 81], ratings float32 [N]),
      in file order.
    Raises:
      SudokuDataError: naming the file and the first offending 1-based line, for: an empty file, a
        missing or wrong header, no data rows, a wrong column count, a question or answer of the wrong
        length or with a bad character, a rating that is not a finite number, an answer that
        contradicts a given, an answer that is not a valid Sudoku solution, a duplicate question
        (both lines named), malformed CSV quoting, a line longer than `max_line_chars`, or more than
        `max_rows` data rows.
      OSError: the file cannot be opened.
    """
    file = os.fspath(path)
    qs, as_, rs, ls = [], [], [], []
    n_rows = 0
    with open(file, newline="", encoding="utf-8-sig", errors="replace") as f:
        reader = csv.reader(_bounded_lines(f, file, max_line_chars), strict=True)
        try:
            header = next(reader, None)
        except csv.Error as e:
            _fail(file, max(reader.line_num, 1), f"malformed CSV ({e})", "comma-separated fields (RFC 4180)")
        if header is None:
            _fail(file, 1, "empty file", f"the header '{','.join(CSV_HEADER)}'")
        if tuple(h.strip() for h in header) != CSV_HEADER:
            _fail(file, reader.line_num, f"header is {','.join(header)!r}", f"'{','.join(CSV_HEADER)}'")
        header_line = reader.line_num
        csv_error = None
        while csv_error is None:
            rows, lines = [], []
            try:
                for row in itertools.islice(reader, chunk_rows):
                    rows.append(row)
                    lines.append(reader.line_num)
                    if len(row) != len(CSV_HEADER):  # _validate_chunk reports this row or an earlier one
                        break
                    n_rows += 1
                    if n_rows > max_rows:
                        _fail(file, reader.line_num, f"more than {max_rows} data rows",
                              f"at most {max_rows} rows (read_csv max_rows)")
            except csv.Error as e:  # report it after the rows before it, which may fail earlier
                csv_error = (max(reader.line_num, 1), f"malformed CSV ({e})", "comma-separated fields (RFC 4180)")
            except SudokuDataError as e:  # a line over the length limit: also after the rows before it
                if e.problem.startswith("more than"):
                    raise
                csv_error = (e.line, e.problem, e.expected)
            if rows:
                line_arr = np.asarray(lines, np.int64)
                q, a, r = _validate_chunk(file, rows, line_arr)
                qs.append(q), as_.append(a), rs.append(r), ls.append(line_arr)
            elif csv_error is None:
                break
            del rows
        if csv_error is not None:
            _fail(file, *csv_error)
    if not qs:
        _fail(file, header_line + 1, "no puzzles after the header", "at least one data row")
    q, a = np.concatenate(qs), np.concatenate(as_)
    _check_duplicates(file, q, np.concatenate(ls))
    return SudokuSet(q, a, np.concatenate(rs))


def subsample(data: SudokuSet, n: int, seed: int) -> SudokuSet:
    """A seeded random subset of `n` puzzles without replacement, in the drawn order.

    The reference (`build_sudoku_dataset.py --subsample-size 1000`, TRM.md 6.2) draws with the
    unseeded global numpy RNG; here `np.random.default_rng(seed).choice(N, n, replace=False)`.

    Args:
      data: the full set (N puzzles).
      n: subset size, 0 <= n <= N; n == N returns a seeded permutation of the whole set.
      seed: non-negative int.
    Returns:
      SudokuSet of n puzzles.
    Raises:
      ValueError: n < 0 or n > N.
    """
    if not 0 <= n <= len(data):
        raise ValueError(f"subsample: n={n} puzzles requested from a set of {len(data)}; "
                         f"expected 0 <= n <= {len(data)}")
    idx = np.random.default_rng(seed).choice(len(data), size=n, replace=False)
    return data.take(idx)


# ----------------------------------------------------------------------------------------------
# Augmentation (reference `shuffle_sudoku` in build_sudoku_dataset.py, TRM.md 6.2)


def _random_band_perm(rng: np.random.Generator, b: int) -> np.ndarray:
    """[B, 9] row (or column) permutations: random band order, random row order inside each band."""
    bands = rng.permuted(np.tile(np.arange(3), (b, 1)), axis=1)
    inner = rng.permuted(np.tile(np.arange(3), (b, 3, 1)), axis=2)
    return (bands[:, :, None] * 3 + inner).reshape(b, 9)


def augment(questions, answers, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Random validity-preserving transforms, one per example, shared by puzzle and solution.

    Per example, as the reference `shuffle_sudoku`: a permutation of the digits 1..9 (blank 0 stays 0);
    transpose with probability 0.5; a random band order with a random row order inside each band; a
    random stack order with a random column order inside each stack. The new cell (i, j) takes the
    (transposed) old cell (row_perm[i], col_perm[j]), then the digit map. The draws are vectorised
    (not the reference's RNG sequence).

    Args:
      questions: integer digits [..., 81], 0 = blank.
      answers: integer digits [..., 81], same shape.
      rng: numpy Generator (consumed).
    Returns:
      (questions, answers), same shapes and dtypes as the inputs.
    Raises:
      ValueError: shapes differ, the last dimension is not 81, or a value outside 0..9.
    """
    q, a = np.asarray(questions), np.asarray(answers)
    _check81(q, "augment")
    if q.shape != a.shape:
        raise ValueError(f"augment: questions {q.shape} and answers {a.shape} differ")
    for x, name in ((q, "questions"), (a, "answers")):
        if x.size and (x.min() < 0 or x.max() > 9):
            raise ValueError(f"augment: {name} must be digits 0..9")
    q2, a2 = q.reshape(-1, SEQ_LEN), a.reshape(-1, SEQ_LEN)
    b = len(q2)
    digit_map = np.zeros((b, 10), np.intp)
    digit_map[:, 1:] = rng.permuted(np.tile(np.arange(1, 10), (b, 1)), axis=1)
    transpose = rng.random(b) < 0.5
    r = _random_band_perm(rng, b)[:, :, None]
    c = _random_band_perm(rng, b)[:, None, :]
    src = np.where(transpose[:, None, None], c * 9 + r, r * 9 + c).reshape(b, SEQ_LEN)

    def apply(x):
        moved = np.take_along_axis(x, src, axis=1).astype(np.intp)
        return np.take_along_axis(digit_map, moved, axis=1).astype(x.dtype)

    return apply(q2).reshape(q.shape), apply(a2).reshape(a.shape)


def augment_tokens(inputs, labels, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """`augment` on token arrays (blank 1, digits 2..10): decode, augment, encode.

    Args:
      inputs, labels: integer tokens [..., 81] (PAD, if any, comes back as blank).
      rng: numpy Generator.
    Returns:
      (inputs, labels) int32 tokens, same shapes.
    Raises:
      ValueError: out-of-range tokens, or shape errors (see `augment`).
    """
    q, a = augment(decode(inputs), decode(labels), rng)
    return encode(q), encode(a)


# ----------------------------------------------------------------------------------------------
# Reference solver (pure Python, one puzzle)


def _propagate_py(c: list, todo: list) -> bool:
    """Naked + hidden singles to the fixed point, in place; False on a contradiction.

    `todo` lists solved cells whose digit has not been removed from their peers yet.
    """
    peers, units, popc = _PEERS, _UNITS_PY, _POPC_PY
    while True:
        while todo:
            i = todo.pop()
            v = c[i]
            for p in peers[i]:
                w = c[p]
                if w & v:
                    w ^= v
                    if not w:
                        return False
                    c[p] = w
                    if not w & (w - 1):
                        todo.append(p)
        for u in units:
            once = twice = 0
            for i in u:
                w = c[i]
                twice |= once & w
                once |= w
            if once != _ALL:
                return False
            only = once & ~twice
            if only:
                for i in u:
                    w = c[i] & only
                    if w:
                        if popc[w] > 1:  # two digits that each have only this cell
                            return False
                        if c[i] != w:
                            c[i] = w
                            todo.append(i)
        if not todo:
            return True


def _search_py(cand: list, cap: int) -> tuple[list | None, int, int]:
    """Binary-split DFS on candidate masks [81]: returns (first solution masks or None, solutions
    found (at most `cap`), branch nodes). Same search as the vectorised engine, node for node."""
    popc = _POPC_PY
    stack = [(list(cand), [i for i in range(81) if cand[i] and not cand[i] & (cand[i] - 1)])]
    first, nsol, guesses = None, 0, 0
    while stack:
        c, todo = stack.pop()
        if not _propagate_py(c, todo):
            continue
        best, bc = -1, 10
        for i in range(81):
            pc = popc[c[i]]
            if 1 < pc < bc:
                best, bc = i, pc
                if pc == 2:
                    break
        if best < 0:
            nsol += 1
            if first is None:
                first = c
            if nsol >= cap:
                break
            continue
        guesses += 1
        v = c[best]
        a = v & -v
        rest = list(c)
        r = v ^ a
        rest[best] = r
        stack.append((rest, [best] if not r & (r - 1) else []))
        c[best] = a
        stack.append((c, [best]))
    return first, nsol, guesses


def solve(question) -> tuple[np.ndarray | None, int, int]:
    """Solves a 9x9 Sudoku and rates it: backtracking on bitmasks with constraint propagation.

    Propagation is naked singles (a cell's only candidate is removed from its 20 peers) and hidden
    singles (a digit with one place in a row, column or box goes there), to the fixed point; at a
    stall the search branches on the first cell with the fewest candidates (MRV), binary split:
    "cell = its lowest candidate" first, then "cell != that digit". The whole tree is explored until
    a second solution is found, so the node count of a unique puzzle does not depend on where its
    solution lies. The node count is the rating of generated puzzles. Sudoku-Extreme's `rating` is a
    count of tdoku backtracks (mean 22 per puzzle, HRM.md); the two measure the same kind of thing
    (how much search propagation leaves) on different scales.

    Args:
      question: integer digits [81] (0 = blank), e.g. a row of `SudokuSet.questions`.
    Returns:
      (solution uint8 [81] or None, number of solutions capped at 2, guesses) where guesses is the
      number of branching decisions made (0 = solvable by singles alone). With conflicting givens:
      (None, 0, 0).
    Raises:
      ValueError: shape is not [81] or a value outside 0..9.
    """
    q = np.asarray(question)
    if q.shape != (SEQ_LEN,):
        raise ValueError(f"solve: expected digits of shape [81], got {q.shape}")
    if q.min() < 0 or q.max() > 9:
        raise ValueError("solve: digits must be in 0..9")
    cand = [int(_BIT[d]) if d else _ALL for d in q.tolist()]
    first, nsol, guesses = _search_py(cand, 2)
    sol = None if first is None else _DIGIT[np.asarray(first, np.intp)].astype(np.uint8)
    return sol, nsol, guesses


# ----------------------------------------------------------------------------------------------
# Vectorised search engine and generator


def _mix64(x: np.ndarray) -> np.ndarray:
    """splitmix64 finaliser on uint64 arrays (wrapping arithmetic)."""
    x = x + np.uint64(0x9E3779B97F4A7C15)
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


def _hash(*parts) -> np.ndarray:
    """Counter-based random uint64 from integer parts (arrays broadcast)."""
    h = np.zeros((), np.uint64)
    with np.errstate(over="ignore"):
        for p in parts:
            h = _mix64(h ^ np.asarray(p).astype(np.uint64))
    return h


def _uniform(h: np.ndarray) -> np.ndarray:
    return (h >> np.uint64(11)).astype(np.float64) * (1.0 / (1 << 53))


def _once_twice(a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """[9, U, n] masks (the 9 cells of U units, lanes last) -> digits present at least once, at
    least twice, per unit and lane: ([U, n], [U, n])."""
    once = a[0].copy()
    twice = np.zeros_like(once)
    tmp = np.empty_like(once)
    for k in range(1, 9):
        v = a[k]
        np.bitwise_and(once, v, out=tmp)
        twice |= tmp
        once |= v
    return once, twice


_Z16, _ONE16 = np.uint16(0), np.uint16(1)
# SWAR: four 16-bit candidate masks (lanes) per uint64 word; bit 15 of each field is a guard bit.
_G4 = np.uint64(0x8000800080008000)
_ONE4 = np.uint64(0x0001000100010001)
_ALL4 = np.uint64(_ALL * 0x0001000100010001)
_FFFF, _S15 = np.uint64(0xFFFF), np.uint64(15)


def _zmask(v: np.ndarray) -> np.ndarray:
    """Field-wise on uint64 words of four 16-bit fields (each < 0x8000): 0xFFFF where zero, else 0."""
    return ((~((v | _G4) - _ONE4) & _G4) >> _S15) * _FFFF


def _round(x16: np.ndarray, rmask16: np.ndarray | None = None):
    """One synchronous propagation round on candidate masks, cell-major: x16 [81, m] uint16, m % 4 == 0.

    Returns (x2 [81, m] uint16, contradiction [m], all_single [m] (of the input), changed [m],
    determined [m] (every cell where rmask16 [81, m] is 0xFFFF has one candidate in x2; None without
    rmask16)). Naked singles remove each solved digit from the other cells of its units (a solved
    digit twice in a unit empties those cells); hidden singles assign a digit that has one place in
    a unit (two such digits for one cell empty it); contradiction = an empty cell or a digit with no
    place in a unit. Iterated, this reaches the fixed point of `_propagate_py`: both apply the same
    monotone rules to closure. Bitwise work runs on four lanes per uint64 word; `x & (x - 1)` uses
    the guard bit so that no borrow crosses fields.
    """
    m = x16.shape[1]
    x = x16.view(np.uint64)  # [81, m / 4]
    nz = ((x | _G4) - _ONE4) & x  # f & (f - 1) per field: zero <=> at most one candidate
    sm = _zmask(nz)
    once, twice = _once_twice((x & sm)[_UNITS_T])
    e = once[_CU0]
    e |= once[_CU1]
    e |= once[_CU2]
    t = twice[_CU0]
    t |= twice[_CU1]
    t |= twice[_CU2]
    # unsolved cells lose the digits solved in their units; a solved digit seen twice empties the cell
    x1 = x & ~((t & sm) | (e & ~sm))
    once2, twice2 = _once_twice(x1[_UNITS_T])
    miss = np.bitwise_or.reduce(once2 ^ _ALL4, axis=0)
    only = once2 & ~twice2
    h = only[_CU0]
    h |= only[_CU1]
    h |= only[_CU2]
    h &= x1
    nz_h = ((h | _G4) - _ONE4) & h
    x2 = (x1 & _zmask(h)) | (h & _zmask(nz_h))
    empty = np.bitwise_or.reduce(~((x2 | _G4) - _ONE4) & _G4, axis=0)
    chg = np.bitwise_or.reduce(x2 ^ x, axis=0)
    notsingle = np.bitwise_or.reduce(nz, axis=0)
    det = None
    if rmask16 is not None:
        nz2 = ((x2 | _G4) - _ONE4) & x2
        det = np.bitwise_or.reduce(nz2 & rmask16.view(np.uint64), axis=0).view(np.uint16) == 0
    contra = (miss.view(np.uint16) != 0) | (empty.view(np.uint16) != 0)
    return (x2.view(np.uint16).reshape(SEQ_LEN, m), contra, notsingle.view(np.uint16) == 0,
            chg.view(np.uint16) != 0, det)


# job kinds
_FILL, _SINGLES, _EXCL, _RATE = 0, 1, 2, 3
# hash purposes
_P_ATTEMPT, _P_TIER, _P_BOX, _P_ORDER, _P_TARGET, _P_BRANCH = 11, 12, 13, 14, 15, 16
_TIER_CODE = {"easy": 0, "medium": 1, "hard": 2}
_FIRST_BLOCK = 36  # medium/hard: the first singles check removes this many cells at once
_SECONDS_PER_PUZZLE = (1 / 7000, 1 / 2200, 1 / 500)  # one core, measured; to choose workers=None


class _Lanes:
    """Puzzle generation for one chunk of one tier: `n_lanes` attempts in flight, advanced one
    propagation round at a time (numpy, vectorised over lanes).

    Attempt j of chunk k draws everything from hashes of (seed, stream, requested tier, tier, k, j),
    and lanes never interact, so an attempt's outcome is a pure function of j. It FILLs a random
    grid (three random diagonal boxes, completed by a search branching on random candidates), then
    tries to remove the cells in a random order:

      * SINGLES job: remove a block of cells, keep them out if the puzzle stays solvable by singles
        (propagation only). Blocks are exact: singles-solvability is monotone in the givens, so a
        block passes iff each one-cell step would. Failing blocks are halved down to one cell.
      * easy: stop at the target number of givens; medium: after all 81 cells (singles-minimal).
      * hard: a cell that singles cannot spare gets an EXCL job (search for a solution with that cell
        != its digit; none => still unique => removed). After the first such removal the puzzle needs
        search, and every later cell goes to EXCL. At the end (a minimal puzzle) a RATE job counts the
        search nodes; the attempt succeeds if some removal needed EXCL and the rating reaches
        `min_rating`.

    The chunk's output is the successful attempts with the `n_out` smallest indices j (attempts are
    dispatched in order while fewer than n_out have succeeded; those beyond the n_out-th success are
    abandoned), so puzzle p of chunk k depends on (seed, stream, tiers, k, p) only: not on n_out (a
    smaller request is a prefix), the number of lanes, the scheduling or the workers. The search
    stack holds at most 81 entries: each pending alternative belongs to a distinct cell fixed on the
    current path.
    """

    def __init__(self, seed: int, stream: int, tier: int, chunk: int, n_out: int, n_lanes: int,
                 requested: int | None = None, min_rating: int = HARD_MIN_GUESSES):
        self.seed, self.stream, self.tier, self.chunk, self.n_out = seed, stream, tier, chunk, n_out
        self.min_rating = min_rating
        self.requested = tier if requested is None else requested  # "mixed" (3) draws its own puzzles
        self.next_attempt = 0
        self.succ: list[tuple[np.ndarray, ...]] = []
        self.n_succ = 0
        self.threshold = np.iinfo(np.int64).max
        self.n_lanes = n_lanes
        L = -(-n_lanes // 4) * 4  # the round works on groups of four lanes
        self.C = np.full((SEQ_LEN, L), _ALL, np.uint16)  # cell-major candidate masks
        self.RM = np.zeros((SEQ_LEN, L), np.uint16)  # 0xFFFF at the cells a SINGLES job removed
        self.stack = np.zeros((L, SEQ_LEN, SEQ_LEN), np.uint16)  # depth <= 81: one entry per fixed cell
        self.depth = np.zeros(L, np.intp)
        self.guesses = np.zeros(L, np.int64)
        self.nsol = np.zeros(L, np.int32)
        self.kind = np.zeros(L, np.int8)
        self.active = np.zeros(L, bool)
        self.att = np.zeros(L, np.int64)
        self.key = np.zeros(L, np.uint64)
        self.S = np.zeros((L, SEQ_LEN), np.uint8)
        self.G = np.zeros((L, SEQ_LEN), bool)
        self.R = np.zeros((L, SEQ_LEN), bool)
        self.order = np.zeros((L, SEQ_LEN), np.intp)
        self.ptr = np.zeros(L, np.intp)
        self.block = np.zeros(L, np.intp)
        self.target = np.zeros(L, np.intp)
        self.broken = np.zeros(L, bool)
        self.branches = np.zeros(L, np.int64)
        self.lane_rounds = np.zeros(4, np.int64)  # per job kind, for profiling
        self.rounds = 0

    def run(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Returns (questions [n_out, 81], answers [n_out, 81], ratings [n_out], attempt indices [n_out])."""
        self._dispatch(np.arange(self.n_lanes))
        while True:
            if self.n_succ >= self.n_out:
                self.active &= self.att <= self.threshold
            ix = np.nonzero(self.active)[0]
            if not ix.size:
                break
            self.lane_rounds += np.bincount(self.kind[ix], minlength=4)
            self.rounds += 1
            done, res = self._step(ix)
            if done.size:
                self._on_done(done, res)
        att = np.concatenate([s[0] for s in self.succ]) if self.succ else np.zeros(0, np.int64)
        take = np.argsort(att, kind="stable")[: self.n_out]
        cat = [np.concatenate([s[i] for s in self.succ]) if self.succ else None for i in range(1, 4)]
        if len(take) < self.n_out:
            raise RuntimeError("sudoku generator ended with too few puzzles")  # cannot happen
        return cat[0][take], cat[1][take], cat[2][take], att[take]

    # -- attempts -----------------------------------------------------------------------------------

    def _dispatch(self, lanes: np.ndarray) -> None:
        """Free lanes take the next attempts while fewer than n_out attempts have succeeded."""
        if not lanes.size:
            return
        if self.n_succ >= self.n_out:
            self.active[lanes] = False
            return
        self.att[lanes] = self.next_attempt + np.arange(len(lanes))
        self.next_attempt += len(lanes)
        self.active[lanes] = True
        self._start_fill(lanes)

    def _emit(self, lanes: np.ndarray, ratings) -> None:
        if not lanes.size:
            return
        q = np.where(self.G[lanes], self.S[lanes], 0).astype(np.uint8)
        r = np.broadcast_to(np.asarray(ratings, np.float32), (len(lanes),)).copy()
        self.succ.append((self.att[lanes].copy(), q, self.S[lanes].copy(), r))
        self.n_succ += len(lanes)
        if self.n_succ >= self.n_out:
            att = np.concatenate([s[0] for s in self.succ])
            self.threshold = int(np.partition(att, self.n_out - 1)[self.n_out - 1])
        self._dispatch(lanes)

    def _start_fill(self, lanes: np.ndarray) -> None:
        self.key[lanes] = _hash(self.seed, self.stream, self.requested, self.tier, self.chunk, _P_ATTEMPT,
                                self.att[lanes])
        key = self.key[lanes]
        n = len(lanes)
        c = np.full((n, SEQ_LEN), _ALL, np.uint16)
        boxes = _UNITS[[18, 22, 26]]  # the diagonal boxes share no unit: any filling completes
        perm = np.argsort(_hash(key[:, None, None], _P_BOX, np.arange(27).reshape(1, 3, 9)), axis=2) + 1
        c[np.arange(n)[:, None, None], boxes[None]] = _BIT[perm]
        self.C[:, lanes] = c.T
        self.R[lanes] = False
        self.branches[lanes] = 0
        self._set_job(lanes, _FILL)

    def _set_job(self, lanes: np.ndarray, kind: int) -> None:
        self.kind[lanes] = kind
        self.depth[lanes] = 0
        self.guesses[lanes] = 0
        self.nsol[lanes] = 0

    def _start_job(self, lanes: np.ndarray, kind: int) -> None:
        """SINGLES / EXCL / RATE on the current givens less the cells in R."""
        s = self.S[lanes]
        c = np.where(self.G[lanes] & ~self.R[lanes], _BIT[s], np.uint16(_ALL))
        if kind == _EXCL:
            c = np.where(self.R[lanes], c & ~_BIT[s], c)
        self.C[:, lanes] = c.T
        self.RM[:, lanes] = np.where(self.R[lanes], np.uint16(0xFFFF), _Z16).T
        self._set_job(lanes, kind)

    # -- one round ----------------------------------------------------------------------------------

    def _step(self, ix: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """One propagation round for the active lanes `ix`, then search moves; returns the lanes
        whose job ended and their results (1 ok, 2 fail)."""
        L = self.C.shape[1]
        kind = self.kind[ix]
        sing = kind == _SINGLES
        if 4 * len(ix) >= 3 * L:  # nearly all lanes active: run all of them, no gather
            cols, sel = None, ix
            x, rm = self.C, self.RM
        else:
            m = -(-len(ix) // 4) * 4
            cols = np.concatenate([ix, np.full(m - len(ix), ix[0])])
            sel = np.arange(len(ix))
            x, rm = np.take(self.C, cols, axis=1), np.take(self.RM, cols, axis=1)
        x2, contra, allsingle, changed, det = _round(x, rm if sing.any() else None)
        contra, allsingle, changed = contra[sel], allsingle[sel], changed[sel]
        solved = allsingle & ~contra
        stalled = ~(changed | contra | allsingle)
        res = np.zeros(len(ix), np.int8)  # 0 running, 1 ok, 2 fail
        if det is not None:
            ok = sing & ~contra & (solved | det[sel])  # the removed cells are determined again
            res[ok] = 1
            res[sing & ~ok & (stalled | contra)] = 2
        srch = ~sing
        res[srch & solved & (kind == _EXCL)] = 2  # another solution: not unique
        res[srch & solved & (kind == _FILL)] = 1
        rate_sol = srch & solved & (kind == _RATE)
        if rate_sol.any():
            self.nsol[ix[rate_sol]] += 1
        pop = srch & (contra | rate_sol)
        if pop.any():
            p = np.nonzero(pop)[0]
            lanes = ix[p]
            d = self.depth[lanes]
            has = d > 0
            pl = lanes[has]
            x2[:, sel[p[has]]] = self.stack[pl, d[has] - 1].T
            self.depth[pl] -= 1
            ex = p[~has]
            res[ex] = np.where(kind[ex] == _FILL, 2, 1)  # tree exhausted
        br = srch & stalled
        if br.any():
            b = np.nonzero(br)[0]
            lanes = ix[b]
            y = np.ascontiguousarray(x2[:, sel[b]].T)
            pc = _POPC[y]
            cell = np.argmin(np.where(pc > 1, pc, 99), axis=1)  # MRV, first cell on ties
            r = np.arange(len(b))
            v = y[r, cell]
            a = _LOWBIT[v]
            xb = kind[b] == _EXCL  # try the known solution's digit first: another solution, if
            if xb.any():  # any, mostly differs from it in a few cells (the count is unchanged)
                sd = _BIT[self.S[lanes[xb], cell[xb]]]
                a[xb] = np.where(v[xb] & sd, sd, a[xb])
            f = kind[b] == _FILL
            if f.any():
                fl = lanes[f]
                u = _uniform(_hash(self.key[fl], _P_BRANCH, self.branches[fl]))
                a[f] = _KTH[v[f], (u * _POPC[v[f]]).astype(np.intp)]
                self.branches[fl] += 1
            alt = y.copy()
            alt[r, cell] = v ^ a
            self.stack[lanes, self.depth[lanes]] = alt
            self.depth[lanes] += 1
            y[r, cell] = a
            x2[:, sel[b]] = y.T
            self.guesses[lanes] += 1
        if cols is None:
            self.C = x2
        else:
            self.C[:, ix] = x2[:, : len(ix)]
        done = res != 0
        return ix[done], res[done]

    # -- job transitions ----------------------------------------------------------------------------

    def _on_done(self, lanes: np.ndarray, res: np.ndarray) -> None:
        kind = self.kind[lanes]
        ok = res == 1
        for k, handler in ((_FILL, self._fill_done), (_SINGLES, self._singles_done),
                           (_EXCL, self._excl_done), (_RATE, self._rate_done)):
            m = kind == k
            if m.any():
                handler(lanes[m], ok[m])

    def _fill_done(self, lanes: np.ndarray, ok: np.ndarray) -> None:
        self._dispatch(lanes[~ok])  # cannot happen: every diagonal-box filling completes
        lanes = lanes[ok]
        if not lanes.size:
            return
        self.S[lanes] = _DIGIT[self.C[:, lanes].T]
        self.G[lanes] = True
        key = self.key[lanes]
        self.order[lanes] = np.argsort(_hash(key[:, None], _P_ORDER, np.arange(SEQ_LEN)[None]), axis=1)
        self.ptr[lanes] = 0
        self.broken[lanes] = False
        lo, hi = EASY_GIVENS
        self.target[lanes] = lo + (_hash(key, _P_TARGET) % np.uint64(hi - lo + 1)).astype(np.intp)
        self.block[lanes] = SEQ_LEN - self.target[lanes] if self.tier == 0 else _FIRST_BLOCK
        self._next_job(lanes)

    def _singles_done(self, lanes: np.ndarray, ok: np.ndarray) -> None:
        nrem = self.R[lanes].sum(axis=1)
        acc = lanes[ok]
        self.G[acc] &= ~self.R[acc]
        self.ptr[acc] += nrem[ok]
        self.block[acc] = np.minimum(2 * self.block[acc], SEQ_LEN)
        rej, nrej = lanes[~ok], nrem[~ok]
        self.block[rej] = np.maximum(1, nrej // 2)
        one = rej[nrej == 1]
        if self.tier == 2:  # can the cell go while the solution stays unique? Start from the
            # stalled singles state with the cell != its digit (same closure as from scratch)
            cell = np.argmax(self.R[one], axis=1)
            self.C[cell, one] &= ~_BIT[self.S[one, cell]]
            self._set_job(one, _EXCL)
        else:
            self.ptr[one] += 1  # the cell stays a given
        self._next_job(np.concatenate([acc, rej[nrej > 1]]) if self.tier == 2 else lanes)

    def _excl_done(self, lanes: np.ndarray, unique: np.ndarray) -> None:
        acc = lanes[unique]
        self.G[acc] &= ~self.R[acc]
        self.broken[acc] = True
        self.ptr[lanes] += 1
        self.block[lanes] = 1
        self._next_job(lanes)

    def _rate_done(self, lanes: np.ndarray, ok: np.ndarray) -> None:
        g = self.guesses[lanes]
        good = ok & (self.nsol[lanes] == 1) & (g >= self.min_rating)
        self._dispatch(lanes[~good])
        self._emit(lanes[good], g[good].astype(np.float32))

    def _next_job(self, lanes: np.ndarray) -> None:
        """Starts the next removal job of lanes whose last job ended (or emits / fails them)."""
        if not lanes.size:
            return
        self.R[lanes] = False
        remaining = SEQ_LEN - self.ptr[lanes]
        if self.tier == 0:
            need = self.G[lanes].sum(axis=1) - self.target[lanes]
            fin = need == 0
            self._emit(lanes[fin], 0.0)
            stuck = ~fin & (need > remaining)
            self._dispatch(lanes[stuck])  # cannot reach the target givens: the attempt fails
            go = ~fin & ~stuck
            b = np.minimum(np.minimum(self.block[lanes], remaining), need)[go]
        else:
            fin = remaining == 0
            f = lanes[fin]
            if self.tier == 1:
                self._emit(f, 0.0)
            else:
                self._dispatch(f[~self.broken[f]])  # singles-minimal is minimal: rating 0, not hard
                self._start_job(f[self.broken[f]], _RATE)
            go = ~fin
            b = np.minimum(self.block[lanes], remaining)[go]
        g = lanes[go]
        if not g.size:
            return
        ptr = self.ptr[g]
        if self.tier == 2:
            brk = self.broken[g]
            e = g[brk]
            self.R[e, self.order[e, ptr[brk]]] = True
            self._start_job(e, _EXCL)
            g, b, ptr = g[~brk], b[~brk], ptr[~brk]
        pos = np.arange(SEQ_LEN)[None]
        sel = (pos >= ptr[:, None]) & (pos < (ptr + b)[:, None])
        rows, cols = np.nonzero(sel)
        self.R[g[rows], self.order[g[rows], cols]] = True
        self._start_job(g, _SINGLES)


def _generate_chunk(args) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    seed, stream, requested, tier, chunk, n_out, n_lanes, min_rating = args
    lanes = _Lanes(seed, stream, _TIER_CODE[tier], chunk, n_out, n_lanes, TIERS.index(requested), min_rating)
    q, a, r, _ = lanes.run()
    return q, a, r


def _tier_of_slots(seed: int, stream: int, num: int) -> np.ndarray:
    """The "mixed" tier: tier index (0 easy, 1 medium, 2 hard) of each output slot, [num] int8."""
    u = _uniform(_hash(seed, stream, _P_TIER, np.arange(num)))
    return np.searchsorted(np.cumsum(MIXED_FRACTIONS)[:-1], u, side="right").astype(np.int8)


def generate(num: int, seed: int, *, tier: str = "mixed", workers: int | None = None, stream: int = 0,
             min_rating: int = HARD_MIN_GUESSES, chunk_size: int = 2048, lanes: int = 1024) -> SudokuSet:
    """Generates unique-solution 9x9 puzzles with ratings, reproducibly from the seed.

    Method: a random full grid (three random diagonal boxes completed by a search that branches on
    random candidates), then its cells removed in a random order (see `_Lanes`):

      * "easy": removals keep the puzzle solvable by naked + hidden singles alone (so the solution is
        unique); stop at a target drawn uniformly in EASY_GIVENS = 36..45 givens. Rating 0.
      * "medium": the same through all 81 cells: a singles-minimal puzzle (every given is needed for
        singles to finish). Rating 0; 20-31 givens, mean 24.6 (measured on 100k).
      * "hard": removals keep the solution unique (singles when they suffice, otherwise a search for
        a second solution): a minimal puzzle (every given needed for uniqueness), kept only if
        singles alone cannot solve it and its rating is at least `min_rating` (default
        HARD_MIN_GUESSES = 1; about 46% of attempts qualify). 20-30 givens, mean 24.4. Ratings
        measured on 100k: 1: 31%, 2: 21%, 3: 15%, 4: 9%, 5: 7%, >= 10: 6%; median 2, mean 3.6,
        p90 7, p99 19, max 130-170. The kind of Sudoku-Extreme (propagation stalls, search is
        needed), but mostly milder than its hardest puzzles (it reports a mean of 22 tdoku
        backtracks); raise `min_rating` for harder ones (the cost grows as the share of qualifying
        attempts falls).
      * "mixed": each puzzle independently easy, medium or hard with probabilities MIXED_FRACTIONS
        (1/3 each), drawn per output index; its puzzles differ from those of the single tiers.

    Ratings equal `solve(question)[2]`. Grids are not sampled uniformly from all Sudoku grids.
    Puzzles are computed in chunks of `chunk_size` per tier, each by a numpy engine running `lanes`
    attempts in lock-step (see `_Lanes`), chunks spread over `workers` spawned processes. Output i
    depends only on (seed, stream, tier, min_rating, chunk_size, i): not on `workers`, `lanes` or
    `num` (generate(n) is a prefix of generate(m) for n < m). Measured speed, one core: easy ~7k/s,
    medium ~2.2k/s, hard ~500/s, mixed ~1.1k/s; 100k puzzles on an idle 2-core machine with
    workers=2: easy 10 s, medium 31 s, hard 100 s, mixed 52 s.

    Args:
      num: number of puzzles (>= 0).
      seed: non-negative int.
      tier: "easy", "medium", "hard" or "mixed".
      workers: processes (None: os.cpu_count() when the job is expected to take more than ~2 s on
        one core, else 1; 1: in this process). Processes are spawned (safe after JAX started), so a
        script calling this with workers > 1 needs the `if __name__ == "__main__":` guard.
      stream: extra non-negative int mixed into every random choice (e.g. 0 for train, 1 for test).
      min_rating: (hard) the least rating kept, >= 1.
      chunk_size: puzzles per chunk (part of the identity of the output).
      lanes: attempts in flight per chunk (speed only).
    Returns:
      SudokuSet of `num` puzzles: questions uint8 [num, 81] (0 = blank), answers uint8 [num, 81],
      ratings float32 [num] (search nodes of `solve`).
    Raises:
      ValueError: unknown tier, negative num/seed/stream, min_rating < 1, non-positive
        workers/chunk_size/lanes.
    """
    if tier not in TIERS:
        raise ValueError(f"generate: tier={tier!r}; expected one of {TIERS}")
    if num < 0 or seed < 0 or stream < 0:
        raise ValueError(f"generate: num={num}, seed={seed}, stream={stream}; expected non-negative ints")
    if min_rating < 1:
        raise ValueError(f"generate: min_rating={min_rating}; expected >= 1 (hard puzzles need search)")
    if chunk_size < 1 or lanes < 1 or (workers is not None and workers < 1):
        raise ValueError(f"generate: workers={workers}, chunk_size={chunk_size}, lanes={lanes}; expected positive ints")
    seed, stream = int(seed), int(stream)
    slot_tier = _tier_of_slots(seed, stream, num) if tier == "mixed" else np.full(num, TIERS.index(tier), np.int8)
    tasks, where = [], []
    for t in (2, 1, 0):  # slowest tier first: better balance over the workers
        name = TIERS[t]
        slots = np.nonzero(slot_tier == t)[0]
        for k, s in enumerate(range(0, len(slots), chunk_size)):
            n_out = min(chunk_size, len(slots) - s)
            tasks.append((seed, stream, tier, name, k, n_out, max(1, min(lanes, 2 * n_out + 16)), min_rating))
            where.append(slots[s:s + n_out])
    if workers is None:  # processes only pay off beyond about a second of work (spawn start-up)
        counts = np.bincount(slot_tier, minlength=3)
        seconds = float(counts @ np.array(_SECONDS_PER_PUZZLE))
        workers = (os.cpu_count() or 1) if seconds > 2.0 else 1
    workers = min(workers, max(1, len(tasks)))
    if workers == 1:
        parts = [_generate_chunk(t) for t in tasks]
    else:
        with multiprocessing.get_context("spawn").Pool(workers) as pool:
            parts = pool.map(_generate_chunk, tasks, chunksize=1)
    q = np.zeros((num, SEQ_LEN), np.uint8)
    a = np.zeros((num, SEQ_LEN), np.uint8)
    r = np.zeros(num, np.float32)
    for idx, (pq, pa, pr) in zip(where, parts):
        q[idx], a[idx], r[idx] = pq, pa, pr
    return SudokuSet(q, a, r)
