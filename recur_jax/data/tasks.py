"""Tasks: from `config.data` to data sources, per-example transforms and the vocabulary facts.

A Task bundles what training and evaluation need from a data set:

  * `train`, `test`: random-access sources (TFDS ArrayRecord data sources);
  * `train_transform(record, rng)`: augmentation on the fly + tokenisation -> example dict;
  * `test_transform(record)`: tokenisation only;
  * `vocab_size`, `seq_len`, `num_puzzle_identifiers` that the model config must match;
  * `describe`: a JSON-able description of the data (source, sizes, difficulty), for run records.

Examples are dicts of int32 arrays: inputs [S], labels [S] (IGNORE_LABEL_ID = unsupervised),
puzzle_identifiers [] (scalar).
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any, Callable

import ml_collections
import numpy as np

from recur_jax.data import algorithmic, sudoku
from recur_jax.data.algorithmic_tfds import build_algorithmic
from recur_jax.data.sudoku_tfds import build_sudoku
from recur_jax.losses import IGNORE_LABEL_ID


@dataclasses.dataclass
class Task:
    """A data set ready for the loaders (see the module docstring)."""

    name: str
    train: Any
    test: Any
    train_transform: Callable[[Any, np.random.Generator], dict[str, np.ndarray]]
    test_transform: Callable[[Any], dict[str, np.ndarray]]
    vocab_size: int
    seq_len: int
    num_puzzle_identifiers: int
    describe: dict[str, Any]


def _sudoku_example(question: np.ndarray, answer: np.ndarray) -> dict[str, np.ndarray]:
    return {"inputs": sudoku.encode(question), "labels": sudoku.encode(answer),
            "puzzle_identifiers": np.zeros((), np.int32)}


def _rating_stats(ratings: np.ndarray) -> dict[str, float]:
    r = np.asarray(ratings, np.float64)
    if r.size == 0:
        return {}
    return {"mean": float(r.mean()), "median": float(np.median(r)), "p90": float(np.percentile(r, 90)),
            "max": float(r.max()), "fraction_needing_search": float(np.mean(r > 0))}


def sudoku_task(data: ml_collections.ConfigDict, workdir: str) -> Task:
    """Sudoku: the published CSV files (data.path) or the built-in generator (data.tier).

    Tokens: pad 0, blank 1, digits 2..10 (vocab 11, seq 81); every cell is supervised; one puzzle id.
    Training examples are augmented on the fly (digit relabelling, transpose, band/stack and
    row/column-in-band permutations) when data.augment is set.
    """
    data_dir = data.data_dir or os.path.join(workdir, "data")
    if data.path:
        splits = build_sudoku(data_dir, source="csv", path=data.path, seed=data.seed, num_train=data.num_train,
                              num_test=data.num_test or None)
        source = {"source": "csv", "path": os.path.abspath(data.path)}
    else:
        splits = build_sudoku(data_dir, source="generated", seed=data.seed, num_train=data.num_train,
                              num_test=data.num_test or 10000, tier=data.tier)
        source = {"source": "generated", "tier": data.tier, "seed": data.seed}
    augment = bool(data.augment)

    def train_transform(record, rng: np.random.Generator):
        q, a = np.asarray(record["question"])[None], np.asarray(record["answer"])[None]
        if augment:
            q, a = sudoku.augment(q, a, rng)
        return _sudoku_example(q[0], a[0])

    def test_transform(record):
        return _sudoku_example(np.asarray(record["question"]), np.asarray(record["answer"]))

    describe = dict(source, name="sudoku", num_train=len(splits["train"]), num_test=len(splits["test"]))
    for split in ("train", "test"):
        ds = splits[split]
        n = min(len(ds), 2000)
        ratings = np.array([ds[i]["rating"] for i in range(n)])
        givens = np.array([int(np.count_nonzero(np.asarray(ds[i]["question"]))) for i in range(n)])
        describe[f"{split}_rating"] = _rating_stats(ratings)
        describe[f"{split}_givens"] = {"mean": float(givens.mean()), "min": int(givens.min()),
                                       "max": int(givens.max())} if n else {}
    return Task(name="sudoku", train=splits["train"], test=splits["test"], train_transform=train_transform,
                test_transform=test_transform, vocab_size=sudoku.VOCAB_SIZE, seq_len=sudoku.SEQ_LEN,
                num_puzzle_identifiers=1, describe=describe)


def algorithmic_task(data: ml_collections.ConfigDict, workdir: str) -> Task:
    """Sorting or multi-digit addition (`recur_jax.data.algorithmic`), generated; data.name picks it.

    Fields: seq_len, train_lengths / test_lengths ((min, max) list length or digit count; a longer test
    range measures length generalisation), num_train, num_test, seed, num_values (sort). Targets 0
    (padding, the addends' positions) are unsupervised (IGNORE_LABEL_ID); one puzzle id; no augmentation.
    """
    data_dir = data.data_dir or os.path.join(workdir, "data")
    splits = build_algorithmic(data_dir, task=data.name, seq_len=data.seq_len, train_lengths=tuple(data.train_lengths),
                               test_lengths=tuple(data.test_lengths), num_train=data.num_train,
                               num_test=data.num_test, seed=data.seed, num_values=data.num_values)

    def example(record, rng=None):
        del rng
        targets = np.asarray(record["targets"]).astype(np.int32)
        return {"inputs": np.asarray(record["inputs"]).astype(np.int32),
                "labels": np.where(targets == algorithmic.PAD, IGNORE_LABEL_ID, targets).astype(np.int32),
                "puzzle_identifiers": np.zeros((), np.int32)}

    describe = {"name": data.name, "source": "generated", "seed": int(data.seed), "seq_len": int(data.seq_len),
                "train_lengths": list(data.train_lengths), "test_lengths": list(data.test_lengths),
                "num_train": len(splits["train"]), "num_test": len(splits["test"])}
    return Task(name=data.name, train=splits["train"], test=splits["test"], train_transform=example,
                test_transform=example, vocab_size=algorithmic.vocab_size(data.name, data.num_values),
                seq_len=int(data.seq_len), num_puzzle_identifiers=1, describe=describe)


TASKS: dict[str, Callable[[ml_collections.ConfigDict, str], Task]] = {
    "sudoku": sudoku_task, "sort": algorithmic_task, "addition": algorithmic_task}


def build_task(data: ml_collections.ConfigDict, workdir: str) -> Task:
    """Builds (or reuses) the task's data under `data.data_dir` (default `<workdir>/data`).

    Raises:
      ValueError: unknown `data.name` (lists the known ones); data validation errors (e.g.
        `sudoku.SudokuDataError`, a ValueError naming file and line).
    """
    if data.name not in TASKS:
        raise ValueError(f"config.data.name={data.name!r}: expected one of {sorted(TASKS)}")
    return TASKS[data.name](data, workdir)
