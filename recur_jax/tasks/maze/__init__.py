"""The maze task: the Maze-Hard CSV format, a seeded generator of hard 30x30 mazes (or
any other size), shortest paths,
path validity, and dihedral augmentation.

The package is the task's API (`from recur_jax.tasks import maze`; `maze.X`); its TFDS builder is
`recur_jax.tasks.maze.builder`, its evaluator `recur_jax.tasks.maze.evaluator`.
"""

from recur_jax.tasks.maze.data import (
    CHARS,
    GOAL,
    OPEN,
    PATH,
    START,
    WALL,
    VOCAB_SIZE,
    SIZE,
    SEQ_LEN,
    MIN_PATH,
    MAX_CSV_BYTES,
    MazeDataError,
    MazeSet,
    board_side,
    encode,
    decode,
    shortest_path,
    draw_path,
    path_validity,
    generate_one,
    generate,
    read_csv,
    augment,
    describe,
)

__all__ = [
    "CHARS", "GOAL", "OPEN", "PATH", "START", "WALL", "VOCAB_SIZE", "SIZE", "SEQ_LEN", "MIN_PATH",
    "MAX_CSV_BYTES", "MazeDataError", "MazeSet", "board_side", "encode", "decode", "shortest_path", "draw_path",
    "path_validity", "generate_one", "generate", "read_csv", "augment", "describe",
]
