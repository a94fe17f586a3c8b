"""Deterministic, checkpointable loaders over random-access data sources (grain MapDataset).

Training: an endless stream of epochs; each epoch visits every training record once in an order
seeded by (seed, epoch), and every example gets its own augmentation drawn from a generator seeded by
its *global* position in the stream. Global batch `step` is the records at stream positions
[step * G, (step + 1) * G); process p of P takes rows [p * G/P, (p + 1) * G/P). So:

  * the data of a step depends only on (seed, step), never on the number of devices or processes;
  * the loader's whole state is the step number (what checkpoints store as the data position).

Evaluation: sequential global batches over the test set, the last one padded with rows that carry no
labels (inputs = PAD, labels = IGNORE_LABEL_ID, puzzle id 0), which the metrics exclude.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any

import grain
import numpy as np

from recur_jax.core.losses import IGNORE_LABEL_ID

Example = dict[str, np.ndarray]  # inputs [S] int32, labels [S] int32, puzzle_identifiers [] int32
Transform = Callable[[Any, np.random.Generator], Example]


def _stack(examples: Sequence[Example]) -> dict[str, np.ndarray]:
    return {k: np.stack([np.asarray(e[k]) for e in examples]).astype(np.int32) for k in examples[0]}


class TrainLoader:
    """Seeded, shuffled, augmented training batches addressed by step number.

    Args:
      source: a random-access source (`len(source)`, `source[i]`), e.g. a TFDS ArrayRecord data source.
      global_batch_size: G, rows per step over all processes.
      seed: shuffling and augmentation seed.
      transform: (record, rng) -> example dict (inputs [S], labels [S], puzzle_identifiers []),
        e.g. augmentation then tokenisation; rng is seeded per stream position.
      process_index, process_count: this process's slice of each global batch.
    Raises:
      ValueError: an empty source, or G not divisible by process_count.
    """

    def __init__(self, source: Any, *, global_batch_size: int, seed: int, transform: Transform,
                 process_index: int = 0, process_count: int = 1):
        if len(source) == 0:
            raise ValueError("training data source is empty")
        if global_batch_size % process_count:
            raise ValueError(f"global_batch_size={global_batch_size} is not divisible by the "
                             f"{process_count} processes")
        self.num_records = len(source)
        self.global_batch_size = global_batch_size
        self.local_batch_size = global_batch_size // process_count
        self.process_index = process_index
        self._ds = grain.MapDataset.source(source).seed(seed).shuffle().repeat().random_map(transform)

    def batch(self, step: int) -> dict[str, np.ndarray]:
        """This process's rows of global batch `step` (0-based): dict of int32 [G/P, ...] arrays."""
        start = step * self.global_batch_size + self.process_index * self.local_batch_size
        return _stack([self._ds[i] for i in range(start, start + self.local_batch_size)])

    def epoch(self, step: int) -> float:
        """Epochs of the training set consumed after `step` steps (loader passes, as the reference counts)."""
        return step * self.global_batch_size / self.num_records


def eval_batches(source: Any, *, global_batch_size: int, to_example: Callable[[Any], Example],
                 process_index: int = 0, process_count: int = 1,
                 max_examples: int | None = None) -> Iterator[tuple[dict[str, np.ndarray], int]]:
    """Sequential evaluation batches, padded to the global batch size.

    Yields:
      (local batch dict of int32 arrays [G/P, ...], number of real rows in the *global* batch).
    """
    n = len(source) if max_examples is None else min(len(source), max_examples)
    local = global_batch_size // process_count
    template = None
    for start in range(0, n, global_batch_size):
        real = min(global_batch_size, n - start)
        lo = start + process_index * local
        rows = [to_example(source[i]) for i in range(lo, min(lo + local, n))]
        if template is None:
            template = rows[0] if rows else to_example(source[0])
        while len(rows) < local:
            rows.append({"inputs": np.zeros_like(template["inputs"]),
                         "labels": np.full_like(template["labels"], IGNORE_LABEL_ID),
                         "puzzle_identifiers": np.zeros_like(template["puzzle_identifiers"])})
        yield _stack(rows), real
