"""What every task's TFDS builder shares: configs named by a hash of their parameters, ArrayRecord files
written in a fixed order, and "build once, reuse after".

Each set of build parameters is its own BuilderConfig named `<prefix>_<12 hex digits of SHA-256 of the
parameters>` (`config_name`), so different paths, sizes, seeds or tiers never collide in one data_dir
and a second call with the same parameters reuses the files; a CSV source's identity includes each
file's size and modification time (`csv_identity`), so an edited file is rebuilt. Examples are written
with `file_format="array_record"` and shuffling disabled under keys 0..N-1, so `ds[i]` is example i of
the split in a fixed order; they are read back with `builder.as_data_source()` (random access, no
TensorFlow at run time).

A task's builder subclasses `ArrayRecordBuilder` (its TFDS name comes from the class name, e.g.
`Sudoku` -> "sudoku") and gives `features()` and `example(data, i)`; its config gives `load()`,
which reads and validates (or generates) every split before TFDS runs, so data errors surface
unchanged (`prepare`).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator, Sequence
from typing import Any

import tensorflow_datasets as tfds

VERSION = "1.0.0"


def config_name(prefix: str, identity: dict[str, Any]) -> tuple[str, str]:
    """(name, description) of a BuilderConfig: `<prefix>_<sha256(identity)[:12]>` and the identity as JSON.

    Args:
      prefix: e.g. the source ("csv", "generated") or the task; identity: JSON-serialisable parameters.
    """
    text = json.dumps(identity, sort_keys=True)
    return f"{prefix}_{hashlib.sha256(text.encode()).hexdigest()[:12]}", text[:2000]


def csv_identity(path: str | os.PathLike, splits: Sequence[str], what: str) -> tuple[str, dict[str, list[int]]]:
    """(absolute directory, {split: [size, mtime_ns]}) of `<path>/<split>.csv` for each split.

    Raises:
      FileNotFoundError: a split's file is missing (names it and `what` the files are, e.g. "Maze-Hard").
    """
    path = os.path.abspath(os.fspath(path))
    files = {}
    for split in splits:
        f = os.path.join(path, f"{split}.csv")
        if not os.path.isfile(f):
            raise FileNotFoundError(f"{f}: not found; expected the {what} files "
                                    f"{' and '.join(s + '.csv' for s in splits)} in {path}")
        st = os.stat(f)
        files[split] = [st.st_size, st.st_mtime_ns]
    return path, files


class ArrayRecordBuilder(tfds.core.GeneratorBasedBuilder, skip_registration=True):
    """Base of the task builders: ArrayRecord, unshuffled keys 0..N-1, splits from the config's `load()`.

    Subclasses define `features()` (name -> tfds feature), `example(data, i)` (the i-th example of one
    split's loaded data) and optionally `HOMEPAGE` and `split_generators(loaded)` (default: one TFDS split
    per key of the loaded dict). Construct with `config=...`, `data_dir=...`,
    `file_format="array_record"`, and `preloaded=` the config's `load()` to skip loading it again.
    """

    VERSION = tfds.core.Version(VERSION)
    BUILDER_CONFIGS: list[tfds.core.BuilderConfig] = []
    HOMEPAGE: str | None = None

    def __init__(self, *args, preloaded: Any = None, **kwargs):
        self._preloaded = preloaded
        super().__init__(*args, **kwargs)

    def features(self) -> dict[str, Any]:
        """name -> `tfds.features` of one example."""
        raise NotImplementedError

    def example(self, data: Any, i: int) -> dict[str, Any]:
        """The i-th example of one split's loaded data, as a dict of `features()`."""
        raise NotImplementedError

    def split_generators(self, loaded: Any) -> dict[str, Iterator]:
        """TFDS split name -> generator of (key, example); default: one split per key of `loaded`."""
        return {split: self._generate_examples(data) for split, data in loaded.items()}

    def _generate_examples(self, data: Any) -> Iterator[tuple[int, dict[str, Any]]]:
        for i in range(len(data)):
            yield i, self.example(data, i)

    def _info(self) -> tfds.core.DatasetInfo:
        return self.dataset_info_from_configs(features=tfds.features.FeaturesDict(self.features()),
                                              disable_shuffling=True,  # keys 0..N-1 in order: ds[i] is example i
                                              homepage=self.HOMEPAGE)

    def _split_generators(self, dl_manager):
        loaded = self._preloaded if self._preloaded is not None else self.builder_config.load()
        return self.split_generators(loaded)

    # TFDS's own lines speak of downloads ("Downloading and preparing dataset Unknown size"): nothing is
    # downloaded here, so one line of ours says what is built where.
    def _log_download_bytes(self) -> None:
        print(f"building the {self.name} data ({self.builder_config.name}) in {self.data_dir}", flush=True)

    def _log_download_done(self) -> None:
        pass


def prepare(builder_cls: type[ArrayRecordBuilder], config: tfds.core.BuilderConfig, data_dir: str | os.PathLike
            ) -> tuple[ArrayRecordBuilder, Any]:
    """The builder of `config` under `data_dir`, built now if it was not already.

    Returns:
      (builder, loaded): `loaded` is the config's `load()` when this call built the files (so that a
      caller can write more beside them), else None.
    Raises:
      whatever the config's `load()` raises (the task's data errors, naming file and line), before TFDS
      writes anything.
    """
    data_dir = os.fspath(data_dir)
    builder = builder_cls(config=config, data_dir=data_dir, file_format="array_record")
    if builder.is_prepared():
        return builder, None
    loaded = config.load()
    builder = builder_cls(config=config, data_dir=data_dir, file_format="array_record", preloaded=loaded)
    from tensorflow_datasets.core.utils import tqdm_utils

    tqdm_utils.disable_progress_bar()  # TFDS's per-split bars (the files take seconds; the line above says what)
    try:
        builder.download_and_prepare(download_config=tfds.download.DownloadConfig(
            download_mode=tfds.download.GenerateMode.REUSE_DATASET_IF_EXISTS))
    finally:
        tqdm_utils.enable_progress_bar()
    return builder, loaded


__all__ = ["ArrayRecordBuilder", "VERSION", "config_name", "csv_identity", "prepare"]
