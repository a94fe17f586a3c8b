"""From `config.data` to the Sudoku `Task`."""

from __future__ import annotations

import os

import ml_collections
import numpy as np

from recur_jax.tasks import sudoku
from recur_jax.tasks.base import Task, data_dir as task_data_dir
from recur_jax.tasks.sudoku.builder import build_sudoku

def _sudoku_example(question: np.ndarray, answer: np.ndarray) -> dict[str, np.ndarray]:
    return {"inputs": sudoku.encode(question), "labels": sudoku.encode(answer),
            "puzzle_identifiers": np.zeros((), np.int32)}


def _rating_stats(ratings: np.ndarray) -> dict[str, float]:
    r = np.asarray(ratings, np.float64)
    if r.size == 0:
        return {}
    return {"mean": float(r.mean()), "median": float(np.median(r)), "p90": float(np.percentile(r, 90)),
            "max": float(r.max()), "fraction_needing_search": float(np.mean(r > 0))}


def make_task(data: ml_collections.ConfigDict, workdir: str) -> Task:
    """Sudoku: the published CSV files (data.path) or the built-in generator (data.tier).

    Tokens: pad 0, blank 1, digits 2..10 (vocab 11, seq 81); every cell is supervised; one puzzle id.
    Training examples are augmented on the fly (digit relabelling, transpose, band/stack and
    row/column-in-band permutations) when data.augment is set.
    """
    data_dir = task_data_dir(data, workdir)
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
