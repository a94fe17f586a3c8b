"""What every task gives training and evaluation: the `Task` bundle.

A Task bundles what training and evaluation need from a data set:

  * `train`, `test`: random-access sources (TFDS ArrayRecord data sources);
  * `train_transform(record, rng)`: augmentation on the fly + tokenisation -> example dict;
  * `test_transform(record)`: tokenisation only;
  * `vocab_size`, `seq_len`, `num_puzzle_identifiers` that the model config must match;
  * `describe`: a JSON-able description of the data (source, sizes, difficulty), for run records;
  * `make_evaluator(workdir, is_main)`: (optional) the task's evaluator, whose metrics join the
    evaluation result (ARC pass@K with voting, maze path validity) and which writes a visual report
    under `<workdir>/report` on the main process.

Examples are dicts of int32 arrays: inputs [S], labels [S] (IGNORE_LABEL_ID = unsupervised),
puzzle_identifiers [] (scalar). Each task package's `task.make_task(config.data, workdir) -> Task`
builds one; `recur_jax.tasks.registry.build_task` picks the package from `data.name`.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

import ml_collections
import numpy as np

from recur_jax.io import paths


@dataclasses.dataclass
class Task:
    """A data set ready for the loaders (see the module docstring).

    Attributes: as the module docstring lists them; `name` is `config.data.name`.
    """

    name: str
    train: Any
    test: Any
    train_transform: Callable[[Any, np.random.Generator], dict[str, np.ndarray]]
    test_transform: Callable[[Any], dict[str, np.ndarray]]
    vocab_size: int
    seq_len: int
    num_puzzle_identifiers: int
    describe: dict[str, Any]
    make_evaluator: Callable[[str, bool], Any] | None = None
    grid_width: int = 0  # width of the row-major grid the seq_len tokens form (0: a sequence)


def data_dir(data: ml_collections.ConfigDict, workdir: str) -> str:
    """Where a task builds its files: `data.data_dir`, or `<workdir>/data` (a cloud workdir: a local
    cache, `recur_jax.io.paths.local_data_dir`).

    Raises:
      ValueError: `data.data_dir` is a URL (TFDS/ArrayRecord build local files; give a local directory).
    """
    if data.data_dir and paths.is_url(data.data_dir):
        raise ValueError(f"config.data.data_dir={data.data_dir!r}: expected a local directory (generated data is "
                         f"built with local files; leave it empty to use a local cache beside a cloud workdir)")
    return data.data_dir or paths.local_data_dir(workdir)


def csv_ints(text: str, field: str) -> list[int]:
    """Comma-separated integers >= 1 of a `config.data.<field>` string (e.g. ARC's pass_ks "1,2,5").

    Raises:
      ValueError: naming the field, for a non-integer, an empty list or a value below 1.
    """
    try:
        values = [int(x) for x in str(text).split(",") if x.strip()]
    except ValueError:
        raise ValueError(f"config.data.{field}={text!r}: expected comma-separated integers") from None
    if not values or min(values) < 1:
        raise ValueError(f"config.data.{field}={text!r}: expected comma-separated integers >= 1")
    return values
