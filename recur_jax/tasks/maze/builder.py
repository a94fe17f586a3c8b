"""TFDS builder for Maze-Hard: the published CSV files or the built-in generator, as ArrayRecord.

Config names `csv_<hash>` / `generated_<hash>` (the CSV identity includes file sizes and modification
times), ArrayRecord in a fixed order so `ds[i]` is maze i, no TensorFlow: `recur_jax.tasks.builder`. Splits: source "csv": `path` holds train.csv and test.csv, all mazes in file order
(reference: 1000 + 1000); source "generated": `maze.generate(num_train, seed, stream=0)` and
`maze.generate(num_test, seed, stream=1)`.

Features: question uint8 [900] (tokens 1..4), answer uint8 [900] (tokens 1..5), path_length int32 [].
Dihedral augmentation is applied on the fly by the loader (`maze.augment`), not stored.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any

import numpy as np
import tensorflow_datasets as tfds

from recur_jax.tasks import maze
from recur_jax.tasks.builder import VERSION, ArrayRecordBuilder, config_name, csv_identity, prepare

SPLITS = ("train", "test")


@dataclasses.dataclass(eq=False)
class MazeConfig(tfds.core.BuilderConfig):
    """Build parameters of one Maze variant; create with `MazeConfig.make(...)`.

    Attributes:
      source: "csv" or "generated"; path: (csv) directory with train.csv and test.csv;
      seed, num_train, num_test, min_path, loop_prob: (generated) see `maze.generate`;
      workers: generator processes (not part of the identity).
    """

    source: str = "generated"
    path: str | None = None
    seed: int = 0
    num_train: int = 1000
    num_test: int = 1000
    min_path: int = maze.MIN_PATH
    loop_prob: float = 0.0
    workers: int = 1
    cells: int = maze.SIZE // 2

    @classmethod
    def make(cls, *, source: str, path: str | os.PathLike | None = None, seed: int = 0, num_train: int = 1000,
             num_test: int = 1000, min_path: int = maze.MIN_PATH, loop_prob: float = 0.0,
             workers: int = 1, cells: int = maze.SIZE // 2) -> MazeConfig:
        """Validates the parameters and names the config after their hash.

        Raises:
          ValueError: unknown source, missing path, negative sizes, loop_prob outside [0, 1].
          FileNotFoundError: (csv) train.csv or test.csv missing.
        """
        if cells < 2 or (source == "csv" and cells != maze.SIZE // 2):
            raise ValueError(f"maze data cells={cells}; expected >= 2 (generated mazes; the CSV format is 15 cells, "
                             f"a 30 x 30 board)")
        if source not in ("csv", "generated"):
            raise ValueError(f"maze data source={source!r}; expected 'csv' or 'generated'")
        if num_train < 0 or num_test < 0 or seed < 0 or min_path < 1 or not 0.0 <= loop_prob <= 1.0:
            raise ValueError(f"maze data num_train={num_train}, num_test={num_test}, seed={seed}, min_path={min_path}, "
                             f"loop_prob={loop_prob}; expected non-negative sizes/seed, min_path >= 1, "
                             f"loop_prob in [0, 1]")
        identity: dict[str, Any] = {"source": source, "format": VERSION}
        if source == "csv":
            if not path:
                raise ValueError("maze data source='csv' needs path=<directory with train.csv and test.csv>")
            path, files = csv_identity(path, SPLITS, "Maze-Hard")
            identity.update(path=path, files=files)
        else:
            path = None
            identity.update(seed=int(seed), num_train=int(num_train), num_test=int(num_test), min_path=int(min_path),
                            loop_prob=float(loop_prob))
            if cells != maze.SIZE // 2:  # only then: data sets built before the field existed keep their names
                identity["cells"] = int(cells)
        name, description = config_name(source, identity)
        return cls(name=name, version=VERSION, description=description, source=source, path=path, seed=int(seed), num_train=int(num_train), num_test=int(num_test),
                   min_path=int(min_path), loop_prob=float(loop_prob), workers=int(workers), cells=int(cells))

    def load(self) -> dict[str, maze.MazeSet]:
        """Both splits (reads and validates the CSV files, or generates). Raises MazeDataError."""
        if self.source == "csv":
            return {s: maze.read_csv(os.path.join(self.path, f"{s}.csv")) for s in SPLITS}
        return {split: maze.generate(n, self.seed, stream=stream, min_path=self.min_path, loop_prob=self.loop_prob,
                                     workers=self.workers, cells=self.cells)
                for stream, (split, n) in enumerate((("train", self.num_train), ("test", self.num_test)))}


class Maze(ArrayRecordBuilder):
    """TFDS builder "maze": question/answer uint8 [900], path_length int32 []; see the module docstring."""

    RELEASE_NOTES = {VERSION: "Maze-Hard CSV or generated hard mazes."}
    HOMEPAGE = "https://huggingface.co/datasets/sapientinc/maze-30x30-hard-1k"

    def features(self) -> dict[str, Any]:
        seq_len = (2 * self.builder_config.cells) ** 2
        return {"question": tfds.features.Tensor(shape=(seq_len,), dtype=np.uint8),
                "answer": tfds.features.Tensor(shape=(seq_len,), dtype=np.uint8),
                "path_length": tfds.features.Scalar(dtype=np.int32)}

    def example(self, data: maze.MazeSet, i: int) -> dict[str, Any]:
        return {"question": data.questions[i], "answer": data.answers[i], "path_length": data.path_lengths[i]}


def build_maze(data_dir: str | os.PathLike, *, source: str, path: str | os.PathLike | None = None, seed: int = 0,
               num_train: int = 1000, num_test: int = 1000, min_path: int = maze.MIN_PATH, loop_prob: float = 0.0,
               workers: int = 1, cells: int = maze.SIZE // 2) -> dict[str, Any]:
    """Builds the Maze splits under `data_dir` if needed and returns their data sources.

    `cells`: (generated) cells per side; the board has side 2 * cells (15: Maze-Hard's 30 x 30).

    Returns:
      {"train": source, "test": source}; `ds[i]` = {question [side^2] uint8, answer [side^2] uint8,
      path_length int32}.
    Raises:
      MazeDataError: a malformed CSV line (file and line named); ValueError / FileNotFoundError: bad parameters.
    """
    config = MazeConfig.make(source=source, path=path, seed=seed, num_train=num_train, num_test=num_test,
                             min_path=min_path, loop_prob=loop_prob, workers=workers, cells=cells)
    builder, _ = prepare(Maze, config, data_dir)
    return {split: builder.as_data_source(split) for split in SPLITS}
