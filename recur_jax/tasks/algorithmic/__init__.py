"""The algorithmic tasks: sorting and multi-digit addition, generated with a length knob.

The package is the task's API (`from recur_jax.tasks import algorithmic`; `algorithmic.X`); its TFDS builder is
`recur_jax.tasks.algorithmic.builder`.
"""

from recur_jax.tasks.algorithmic.data import (
    PAD,
    TASKS,
    AlgorithmicSet,
    vocab_size,
    check_lengths,
    generate,
    decode_number,
)

__all__ = [
    "PAD", "TASKS", "AlgorithmicSet", "vocab_size", "check_lengths", "generate", "decode_number",
]
