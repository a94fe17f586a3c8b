"""Sudoku augmentation: the reference `shuffle_sudoku` (digit relabelling, transpose, band/row and
stack/column permutations), vectorised over a batch, on digits or on tokens.
"""

from __future__ import annotations


import numpy as np

from recur_jax.tasks.sudoku.grid import SEQ_LEN, _check81, decode, encode

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
