"""TFDS builder for the algorithmic tasks (`recur_jax.tasks.algorithmic.data`), written as ArrayRecord.

Config names `<task>_<hash>`, ArrayRecord in a fixed order (`ds[i]` is example i), reuse of built files,
no TensorFlow: `recur_jax.tasks.builder`.

Features: inputs uint8 [seq_len], targets uint8 [seq_len] (0 = unsupervised), length int32 [].
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any

import numpy as np
import tensorflow_datasets as tfds

from recur_jax.tasks import algorithmic
from recur_jax.tasks.builder import VERSION, ArrayRecordBuilder, config_name, prepare


@dataclasses.dataclass(eq=False)
class AlgorithmicConfig(tfds.core.BuilderConfig):
    """The parameters of one algorithmic data set (see `build_algorithmic` for their meaning)."""

    params: dict[str, Any] = dataclasses.field(default_factory=dict)

    def load(self) -> dict[str, algorithmic.AlgorithmicSet]:
        """Both splits, generated (independent streams of the seed)."""
        p = self.params
        out = {}
        for split_seed, split in enumerate(("train", "test")):
            lo, hi = p[f"{split}_lengths"]
            out[split] = algorithmic.generate(p["task"], p[f"num_{split}"], p["seed"], split_seed, seq_len=p["seq_len"],
                                              min_len=lo, max_len=hi, num_values=p["num_values"],
                                              layout=p.get("layout", "blocks"))
        return out


class Algorithmic(ArrayRecordBuilder):
    """TFDS builder "algorithmic": inputs/targets uint8 [seq_len], length int32; splits train and test."""

    RELEASE_NOTES = {VERSION: "Sorting and multi-digit addition, generated."}

    def features(self) -> dict[str, Any]:
        seq_len = self.builder_config.params["seq_len"]
        return {"inputs": tfds.features.Tensor(shape=(seq_len,), dtype=np.uint8),
                "targets": tfds.features.Tensor(shape=(seq_len,), dtype=np.uint8),
                "length": tfds.features.Scalar(dtype=np.int32)}

    def example(self, data: algorithmic.AlgorithmicSet, i: int) -> dict[str, Any]:
        return {"inputs": data.inputs[i], "targets": data.targets[i], "length": data.lengths[i]}


def build_algorithmic(data_dir: str | os.PathLike, *, task: str, seq_len: int, train_lengths: tuple[int, int],
                      test_lengths: tuple[int, int], num_train: int, num_test: int, seed: int = 0,
                      num_values: int = 10, layout: str = "blocks") -> dict[str, Any]:
    """Generates the splits under `data_dir` if needed and returns their ArrayRecord data sources.

    Args:
      data_dir: TFDS data directory (files under data_dir/algorithmic/<config name>/1.0.0/).
      task: "sort", "addition" or "prefix_sum".
      seq_len: padded sequence length.
      train_lengths, test_lengths: (min, max) list length or digit count of each split; a test range
        above the training one measures length generalisation.
      num_train, num_test: examples per split.
      seed: generation seed (train and test are independent streams of it).
      num_values: (sort) values 0..num_values-1.
      layout: (addition) "blocks" or "interleaved" (`algorithmic.data`).

    Returns:
      {"train": source, "test": source}; `ds[i]` is a dict inputs/targets uint8 [seq_len], length int32.

    Raises:
      ValueError: naming the field, for an unknown task, lengths that do not fit seq_len, bad sizes.
    """
    for split, (lo, hi) in (("train", train_lengths), ("test", test_lengths)):
        algorithmic.check_lengths(task, seq_len, int(lo), int(hi), field=f"data.{split}_lengths", layout=layout)
    if num_train < 1 or num_test < 1:
        raise ValueError(f"data.num_train={num_train}, data.num_test={num_test}; expected >= 1")
    params = {"task": task, "seq_len": int(seq_len), "train_lengths": [int(x) for x in train_lengths],
              "test_lengths": [int(x) for x in test_lengths], "num_train": int(num_train),
              "num_test": int(num_test), "seed": int(seed), "num_values": int(num_values), "format": VERSION}
    if layout != "blocks":  # only then: the data sets built before the field existed keep their names
        params["layout"] = layout
    name, description = config_name(task, params)
    config = AlgorithmicConfig(name=name, version=VERSION, params=params, description=description)
    builder, _ = prepare(Algorithmic, config, data_dir)
    return {split: builder.as_data_source(split) for split in ("train", "test")}
