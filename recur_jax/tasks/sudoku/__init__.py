"""The Sudoku task: the Sudoku-Extreme CSV format with validation, a solver and difficulty rater, a
seeded generator of puzzles in difficulty tiers, and validity-preserving augmentation.

The package is the task's API (`from recur_jax.tasks import sudoku`; `sudoku.X`), gathered from
`grid` (tokens, `SudokuSet`, validity), `files` (the Sudoku-Extreme CSV reader, subsample), `augment`,
`solver` (solver and rater) and `generator` (tiers); its TFDS builder is `recur_jax.tasks.sudoku.builder`.
Pure numpy; nothing here imports JAX or TensorFlow.
"""

from recur_jax.tasks.sudoku.grid import (
    SEQ_LEN, VOCAB_SIZE, PAD_ID, BLANK_ID, SudokuDataError, SudokuSet, encode, decode, is_valid_solution,
    is_consistent,
)
from recur_jax.tasks.sudoku.files import (
    CSV_HEADER, MAX_CSV_LINE_CHARS, MAX_CSV_ROWS, read_csv, subsample,
)
from recur_jax.tasks.sudoku.augment import augment, augment_tokens
from recur_jax.tasks.sudoku.solver import solve
from recur_jax.tasks.sudoku.generator import (
    TIERS, EASY_GIVENS, HARD_MIN_GUESSES, MIXED_FRACTIONS, generate,
)

__all__ = [
    "SEQ_LEN", "VOCAB_SIZE", "PAD_ID", "BLANK_ID", "SudokuDataError", "SudokuSet", "encode", "decode",
    "is_valid_solution", "is_consistent", "CSV_HEADER", "MAX_CSV_LINE_CHARS", "MAX_CSV_ROWS", "read_csv",
    "subsample", "augment", "augment_tokens", "solve", "TIERS", "EASY_GIVENS", "HARD_MIN_GUESSES",
    "MIXED_FRACTIONS", "generate",
]
