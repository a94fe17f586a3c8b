"""The task registry: `config.data.name` -> the task package that builds its `Task` (`recur_jax.tasks.base`).

Each task is a package under `recur_jax/tasks/` with its data code, TFDS builder (on the shared base,
`recur_jax.tasks.builder`), evaluator where it has one, and `task.make_task(config.data, workdir)`.
A new task adds its package and one line to `TASKS`.
"""

from __future__ import annotations

import importlib

import ml_collections

from recur_jax.tasks.base import Task

TASKS: dict[str, str] = {  # data.name -> the module with make_task(data, workdir) -> Task
    "sudoku": "recur_jax.tasks.sudoku.task", "arc": "recur_jax.tasks.arc.task", "maze": "recur_jax.tasks.maze.task",
    "sort": "recur_jax.tasks.algorithmic.task", "addition": "recur_jax.tasks.algorithmic.task",
    "prefix_sum": "recur_jax.tasks.algorithmic.task"}


def build_task(data: ml_collections.ConfigDict, workdir: str) -> Task:
    """Builds (or reuses) the task's data under `data.data_dir` (default `<workdir>/data`).

    Raises:
      ValueError: unknown `data.name` (lists the known ones); data validation errors
        (`sudoku.SudokuDataError`, `maze.MazeDataError`, `arc.ArcDataError`: ValueErrors naming file
        and line or field).
    """
    if data.name not in TASKS:
        raise ValueError(f"config.data.name={data.name!r}: expected one of {sorted(TASKS)}")
    return importlib.import_module(TASKS[data.name]).make_task(data, workdir)


__all__ = ["TASKS", "Task", "build_task"]
