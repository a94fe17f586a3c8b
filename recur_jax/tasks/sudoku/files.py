"""The official Sudoku-Extreme CSV files (HF `sapientinc/sudoku-extreme`, train.csv and test.csv,
header `source,question,answer,rating`): read and validated row by row (vectorised), with limits on
line length and row count, errors naming file and line; and the seeded training subsample.
"""

from __future__ import annotations

import csv
import itertools
import os

import numpy as np

from recur_jax.tasks.sudoku.grid import SEQ_LEN, SudokuDataError, SudokuSet, _first_conflict, _mix64, is_consistent, is_valid_solution

CSV_HEADER = ("source", "question", "answer", "rating")
MAX_CSV_LINE_CHARS = 4096  # a row is about 170 characters; longer lines are refused before parsing
MAX_CSV_ROWS = 10_000_000  # the official train.csv has about 3.8M rows; about 1.7 GB once parsed

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
