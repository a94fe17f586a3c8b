"""TFDS builder for the algorithmic tasks (`recur_jax.tasks.algorithmic.data`), written as ArrayRecord.

One BuilderConfig per parameter set, named `<task>_<12 hex digits of SHA-256 of the parameters>`, so
different tasks, sizes, lengths and seeds never collide in one data_dir and the same parameters reuse
the files. Records are written unshuffled under keys 0..N-1: `ds[i]` is example i. No TensorFlow.

Features: inputs uint8 [seq_len], targets uint8 [seq_len] (0 = unsupervised), length int32 [].
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from typing import Any

import numpy as np
import tensorflow_datasets as tfds

from recur_jax.tasks import algorithmic

_VERSION = "1.0.0"


@dataclasses.dataclass(eq=False)
class AlgorithmicConfig(tfds.core.BuilderConfig):
    """The parameters of one algorithmic data set (see `build_algorithmic` for their meaning)."""

    params: dict[str, Any] = dataclasses.field(default_factory=dict)


class Algorithmic(tfds.core.GeneratorBasedBuilder):
    """TFDS builder "algorithmic": inputs/targets uint8 [seq_len], length int32; splits train and test."""

    VERSION = tfds.core.Version(_VERSION)
    RELEASE_NOTES = {_VERSION: "Sorting and multi-digit addition, generated."}
    BUILDER_CONFIGS: list[AlgorithmicConfig] = []

    def _info(self) -> tfds.core.DatasetInfo:
        seq_len = self.builder_config.params["seq_len"]
        return self.dataset_info_from_configs(
            features=tfds.features.FeaturesDict({
                "inputs": tfds.features.Tensor(shape=(seq_len,), dtype=np.uint8),
                "targets": tfds.features.Tensor(shape=(seq_len,), dtype=np.uint8),
                "length": tfds.features.Scalar(dtype=np.int32),
            }),
            disable_shuffling=True,
        )

    def _split_generators(self, dl_manager):
        p = self.builder_config.params
        out = {}
        for split_seed, split in enumerate(("train", "test")):
            lo, hi = p[f"{split}_lengths"]
            data = algorithmic.generate(p["task"], p[f"num_{split}"], p["seed"], split_seed, seq_len=p["seq_len"],
                                        min_len=lo, max_len=hi, num_values=p["num_values"])
            out[split] = self._generate_examples(data)
        return out

    def _generate_examples(self, data: algorithmic.AlgorithmicSet):
        for i in range(len(data)):
            yield i, {"inputs": data.inputs[i], "targets": data.targets[i], "length": data.lengths[i]}


def build_algorithmic(data_dir: str | os.PathLike, *, task: str, seq_len: int, train_lengths: tuple[int, int],
                      test_lengths: tuple[int, int], num_train: int, num_test: int, seed: int = 0,
                      num_values: int = 10) -> dict[str, Any]:
    """Generates the splits under `data_dir` if needed and returns their ArrayRecord data sources.

    Args:
      data_dir: TFDS data directory (files under data_dir/algorithmic/<config name>/1.0.0/).
      task: "sort" or "addition".
      seq_len: padded sequence length.
      train_lengths, test_lengths: (min, max) list length or digit count of each split; a test range
        above the training one measures length generalisation.
      num_train, num_test: examples per split.
      seed: generation seed (train and test are independent streams of it).
      num_values: (sort) values 0..num_values-1.

    Returns:
      {"train": source, "test": source}; `ds[i]` is a dict inputs/targets uint8 [seq_len], length int32.

    Raises:
      ValueError: naming the field, for an unknown task, lengths that do not fit seq_len, bad sizes.
    """
    for split, (lo, hi) in (("train", train_lengths), ("test", test_lengths)):
        algorithmic.check_lengths(task, seq_len, int(lo), int(hi), field=f"data.{split}_lengths")
    if num_train < 1 or num_test < 1:
        raise ValueError(f"data.num_train={num_train}, data.num_test={num_test}; expected >= 1")
    params = {"task": task, "seq_len": int(seq_len), "train_lengths": [int(x) for x in train_lengths],
              "test_lengths": [int(x) for x in test_lengths], "num_train": int(num_train),
              "num_test": int(num_test), "seed": int(seed), "num_values": int(num_values), "format": _VERSION}
    digest = hashlib.sha256(json.dumps(params, sort_keys=True).encode()).hexdigest()[:12]
    config = AlgorithmicConfig(name=f"{task}_{digest}", version=_VERSION, params=params,
                               description=json.dumps(params, sort_keys=True))
    builder = Algorithmic(config=config, data_dir=os.fspath(data_dir), file_format="array_record")
    if not builder.is_prepared():
        builder.download_and_prepare(download_config=tfds.download.DownloadConfig(
            download_mode=tfds.download.GenerateMode.REUSE_DATASET_IF_EXISTS))
    return {split: builder.as_data_source(split) for split in ("train", "test")}
