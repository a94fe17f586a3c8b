"""From `config.data` to the Maze `Task`."""

from __future__ import annotations

import os

import ml_collections
import numpy as np

from recur_jax.io import paths
from recur_jax.tasks import maze
from recur_jax.tasks.base import Task, data_dir as task_data_dir
from recur_jax.tasks.maze.builder import build_maze

def make_task(data: ml_collections.ConfigDict, workdir: str) -> Task:
    """Maze-Hard (TRM.md 6.3): the published CSV files (data.path) or the built-in generator.

    Tokens: wall 1, open 2, S 3, G 4, path 5 (vocab 6, seq 900); every cell supervised; one puzzle id.
    `data.cells` (generated mazes; default 15) sets the cells per side: a board of side 2 * cells, seq_len
    side^2 (length extrapolation: train small, test larger).
    With data.augment, each training example gets a random dihedral transform (of 8) on the fly.
    Evaluation adds `path_valid` / `path_optimal` and a report of the first data.report_num_tasks mazes.
    """
    from recur_jax.tasks.maze.evaluator import MazeEvaluator

    data_dir = task_data_dir(data, workdir)
    cells = int(data.get("cells", maze.SIZE // 2))
    side = 2 * cells
    if data.path:
        splits = build_maze(data_dir, source="csv", path=data.path)
        source = {"source": "csv", "path": os.path.abspath(data.path)}
    else:
        splits = build_maze(data_dir, source="generated", seed=int(data.seed), num_train=int(data.num_train),
                            num_test=int(data.num_test), min_path=int(data.min_path), loop_prob=float(data.loop_prob),
                            workers=int(data.workers), cells=cells)
        source = {"source": "generated", "seed": int(data.seed), "min_path": int(data.min_path),
                  "loop_prob": float(data.loop_prob), "board": f"{side}x{side}"}
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
        return MazeEvaluator(paths.join(wd, "report") if is_main else None, int(data.report_num_tasks))

    describe = dict(source, name="maze", num_train=len(splits["train"]), num_test=len(splits["test"]))
    for split in ("train", "test"):
        ds = splits[split]
        lengths = np.array([int(ds[i]["path_length"]) for i in range(min(len(ds), 2000))])
        if lengths.size:
            describe[f"{split}_path_length"] = {"min": int(lengths.min()), "mean": float(lengths.mean()),
                                                "max": int(lengths.max())}
    return Task(name="maze", train=splits["train"], test=splits["test"], train_transform=train_transform,
                test_transform=test_transform, vocab_size=maze.VOCAB_SIZE, seq_len=side * side,
                num_puzzle_identifiers=1, describe=describe, make_evaluator=make_evaluator, grid_width=side)
