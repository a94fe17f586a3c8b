"""TFDS builder for Sudoku: the Sudoku-Extreme CSV files or the built-in generator, as ArrayRecord.

Config names `csv_<hash>` / `generated_<hash>`, ArrayRecord in a fixed order, reuse of built files:
`recur_jax.tasks.builder`. TensorFlow is neither needed nor imported.

Splits (TRM.md 6.2, HRM.md 5.1, seeded here):
  * source "csv": `path` holds train.csv and test.csv. train = `sudoku.subsample(read_csv(train.csv),
    num_train, seed)` (the reference draws 1000 unseeded); test = the full test.csv in file order, or
    a seeded subsample of `num_test` puzzles when given.
  * source "generated": train = `sudoku.generate(num_train, seed, tier=tier, stream=0)`,
    test = `sudoku.generate(num_test, seed, tier=tier, stream=1)` (independent streams).

Features: question uint8 [81] (0 = blank), answer uint8 [81] (digits 1..9), rating float32 [].
Augmentation is not stored: it is applied on the fly by the loaders (`sudoku.augment`).
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any

import numpy as np
import tensorflow_datasets as tfds

from recur_jax.tasks import sudoku
from recur_jax.tasks.builder import VERSION, ArrayRecordBuilder, config_name, csv_identity, prepare

SPLITS = ("train", "test")
DEFAULT_NUM_TEST_GENERATED = 10000


@dataclasses.dataclass(eq=False)
class SudokuConfig(tfds.core.BuilderConfig):
    """Build parameters of one Sudoku variant; create with `SudokuConfig.make(...)`.

    Attributes:
      source: "csv" or "generated".
      path: (csv) absolute directory holding train.csv and test.csv.
      seed: subsampling (csv) or generation (generated) seed.
      num_train: training puzzles.
      num_test: test puzzles (csv: None = the full test.csv).
      tier: (generated) `sudoku.generate` tier.
      workers: (generated) generator processes; not part of the identity (output is the same).
    """

    source: str = "generated"
    path: str | None = None
    seed: int = 0
    num_train: int = 1000
    num_test: int | None = None
    tier: str | None = "hard"
    workers: int | None = None

    @classmethod
    def make(cls, *, source: str, path: str | os.PathLike | None = None, seed: int = 0, num_train: int = 1000,
             num_test: int | None = None, tier: str = "hard", workers: int | None = None) -> SudokuConfig:
        """Validates the parameters and names the config after their hash.

        For "csv" the identity includes the size and modification time of both files, so an edited
        file is rebuilt. `num_test` None or 0 means: csv, the full test set; generated, 10000.

        Raises:
          ValueError: unknown source or tier, a missing path for "csv", negative sizes or seed.
          FileNotFoundError: (csv) the directory lacks train.csv or test.csv.
        """
        if source not in ("csv", "generated"):
            raise ValueError(f"sudoku data source={source!r}; expected 'csv' or 'generated'")
        if num_train < 0 or seed < 0 or (num_test is not None and num_test < 0):
            raise ValueError(f"sudoku data: num_train={num_train}, num_test={num_test}, seed={seed}; "
                             f"expected non-negative ints")
        num_test = num_test or None
        identity: dict[str, Any] = {"source": source, "seed": int(seed), "num_train": int(num_train),
                                    "format": VERSION}
        if source == "csv":
            if not path:
                raise ValueError("sudoku data source='csv' needs path=<directory with train.csv and test.csv>")
            path, files = csv_identity(path, SPLITS, "Sudoku-Extreme")
            identity.update(path=path, num_test=num_test, files=files)
            tier = None
        else:
            if tier not in sudoku.TIERS:
                raise ValueError(f"sudoku data tier={tier!r}; expected one of {sudoku.TIERS}")
            path = None
            num_test = DEFAULT_NUM_TEST_GENERATED if num_test is None else int(num_test)
            identity.update(num_test=num_test, tier=tier)
        name, description = config_name(source, identity)
        return cls(name=name, version=VERSION, description=description, source=source, path=path, seed=int(seed), num_train=int(num_train), num_test=num_test,
                   tier=tier, workers=workers)

    def load(self) -> dict[str, sudoku.SudokuSet]:
        """The puzzles of both splits (reads and validates the CSV files, or generates).

        Raises:
          SudokuDataError: a malformed CSV file (one line naming file and line).
          ValueError: num_train (or num_test) larger than the file.
        """
        if self.source == "csv":
            train = sudoku.read_csv(os.path.join(self.path, "train.csv"))
            if self.num_train > len(train):
                raise ValueError(f"{os.path.join(self.path, 'train.csv')}: num_train={self.num_train} but the "
                                 f"file has {len(train)} puzzles; expected num_train <= {len(train)}")
            test = sudoku.read_csv(os.path.join(self.path, "test.csv"))
            if self.num_test is not None:
                if self.num_test > len(test):
                    raise ValueError(f"{os.path.join(self.path, 'test.csv')}: num_test={self.num_test} but "
                                     f"the file has {len(test)} puzzles; expected num_test <= {len(test)}")
                test = sudoku.subsample(test, self.num_test, self.seed)
            return {"train": sudoku.subsample(train, self.num_train, self.seed), "test": test}
        return {split: sudoku.generate(n, self.seed, tier=self.tier, stream=stream, workers=self.workers)
                for stream, (split, n) in enumerate((("train", self.num_train), ("test", self.num_test)))}


class Sudoku(ArrayRecordBuilder):
    """TFDS builder "sudoku": question uint8 [81] (0 = blank), answer uint8 [81], rating float32.

    Construct with `config=SudokuConfig.make(...)`; there are no predefined configs. `build_sudoku` is
    the usual entry point.
    """

    RELEASE_NOTES = {VERSION: "Sudoku-Extreme CSV (seeded subsample) or generated puzzles."}
    HOMEPAGE = "https://huggingface.co/datasets/sapientinc/sudoku-extreme"

    def features(self) -> dict[str, Any]:
        return {"question": tfds.features.Tensor(shape=(sudoku.SEQ_LEN,), dtype=np.uint8),
                "answer": tfds.features.Tensor(shape=(sudoku.SEQ_LEN,), dtype=np.uint8),
                "rating": tfds.features.Scalar(dtype=np.float32)}

    def example(self, data: sudoku.SudokuSet, i: int) -> dict[str, Any]:
        return {"question": data.questions[i], "answer": data.answers[i], "rating": data.ratings[i]}


def build_sudoku(data_dir: str | os.PathLike, *, source: str, path: str | os.PathLike | None = None, seed: int = 0,
                 num_train: int = 1000, num_test: int | None = None, tier: str = "hard",
                 workers: int | None = None) -> dict[str, Any]:
    """Builds the Sudoku splits under `data_dir` if needed and returns their data sources.

    Args:
      data_dir: TFDS data directory (files go to data_dir/sudoku/<config name>/1.0.0/).
      source: "csv" (Sudoku-Extreme files in `path`) or "generated" (`sudoku.generate`).
      path: (csv) directory holding train.csv and test.csv.
      seed: subsampling / generation seed.
      num_train: training puzzles (csv: seeded subsample of train.csv; reference: 1000).
      num_test: test puzzles; None or 0: csv the full test.csv, generated 10000.
      tier: (generated) "easy", "medium", "hard" or "mixed" (see `sudoku.generate`).
      workers: (generated) generator processes (None: all cores); does not change the data.
    Returns:
      {"train": source, "test": source}: ArrayRecord data sources; `len(ds)`, and `ds[i]` is a dict
      question uint8 [81], answer uint8 [81], rating float32 [], in a fixed order (keys 0..N-1).
    Raises:
      SudokuDataError: malformed CSV (one line: "{file}:{line}: ...; expected ...").
      FileNotFoundError: (csv) train.csv or test.csv missing.
      ValueError: bad parameters (unknown source or tier, sizes larger than the files, ...).
    """
    config = SudokuConfig.make(source=source, path=path, seed=seed, num_train=num_train, num_test=num_test,
                               tier=tier, workers=workers)
    builder, _ = prepare(Sudoku, config, data_dir)
    return {split: builder.as_data_source(split) for split in SPLITS}
