"""From `config.data` to the sorting / addition `Task`."""

from __future__ import annotations


import ml_collections
import numpy as np

from recur_jax.core.losses import IGNORE_LABEL_ID
from recur_jax.tasks import algorithmic
from recur_jax.tasks.algorithmic.builder import build_algorithmic
from recur_jax.tasks.base import Task, data_dir as task_data_dir

def make_task(data: ml_collections.ConfigDict, workdir: str) -> Task:
    """Sorting, multi-digit addition or prefix sums (`recur_jax.tasks.algorithmic.data`), generated; data.name picks it.

    Fields: seq_len, train_lengths / test_lengths ((min, max) list length or digit count; a longer test
    range measures length generalisation), num_train, num_test, seed, num_values (sort), layout (addition: "blocks" or "interleaved"). Targets 0
    (padding, the addends' positions) are unsupervised (IGNORE_LABEL_ID); one puzzle id; no augmentation.
    """
    data_dir = task_data_dir(data, workdir)
    splits = build_algorithmic(data_dir, task=data.name, seq_len=data.seq_len, train_lengths=tuple(data.train_lengths),
                               test_lengths=tuple(data.test_lengths), num_train=data.num_train,
                               num_test=data.num_test, seed=data.seed, num_values=data.num_values,
                               layout=data.get("layout", "blocks"))

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
