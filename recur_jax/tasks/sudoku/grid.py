"""Sudoku grids: the token convention, `SudokuSet`, validity checks and the bit tables the solver and
generator share (TRM.md 6.2, HRM.md 5.1). Pure numpy.

Conventions: a grid is 81 cells in row-major order; "digits" arrays are uint8 with 0 = blank, 1..9 =
digits; tokens (model inputs and labels) are int32: PAD = 0, blank = 1, digit d = d + 1 (2..10), so
VOCAB_SIZE = 11 and SEQ_LEN = 81; every cell is supervised, givens included.
"""

from __future__ import annotations

import dataclasses

import numpy as np

SEQ_LEN = 81
VOCAB_SIZE = 11
PAD_ID = 0
BLANK_ID = 1


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

def _mix64(x: np.ndarray) -> np.ndarray:
    """splitmix64 finaliser on uint64 arrays (wrapping arithmetic)."""
    x = x + np.uint64(0x9E3779B97F4A7C15)
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))
