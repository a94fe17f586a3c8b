"""The Sudoku task: the Sudoku-Extreme CSV format with validation, a solver and difficulty rater, a
seeded generator of puzzles in difficulty tiers, and validity-preserving augmentation.

The package is the task's API (`from recur_jax.tasks import sudoku`; `sudoku.X`); its TFDS builder is
`recur_jax.tasks.sudoku.builder`.
"""

from recur_jax.tasks.sudoku.data import (  # noqa: F401
    SEQ_LEN,
    VOCAB_SIZE,
    PAD_ID,
    BLANK_ID,
    CSV_HEADER,
    MAX_CSV_LINE_CHARS,
    MAX_CSV_ROWS,
    TIERS,
    EASY_GIVENS,
    HARD_MIN_GUESSES,
    MIXED_FRACTIONS,
    SudokuDataError,
    SudokuSet,
    encode,
    decode,
    is_valid_solution,
    is_consistent,
    read_csv,
    subsample,
    augment,
    augment_tokens,
    solve,
    generate,
)
