"""Maze-Hard data settings and the small CPU variant shared by trm_maze.py and hrm_maze.py."""

import ml_collections

from experiments import common, sudoku_common


def data_config(augment: bool) -> ml_collections.ConfigDict:
    """1000 training and 1000 test mazes: the published CSV files (data.path) or the generator."""
    d = ml_collections.ConfigDict()
    d.name = "maze"
    d.path = ""  # a directory with train.csv/test.csv (maze-30x30-hard-1k format); "" = built-in generator
    d.data_dir = ""  # where TFDS writes ArrayRecord files; "" = <workdir>/data
    d.num_train = 1000
    d.num_test = 1000
    d.min_path = 110  # generator: shortest path length (moves) at least this
    d.loop_prob = 0.0  # generator: share of extra walls opened (0: a unique shortest path)
    d.workers = 1  # generator processes
    d.cells = 15  # generator: cells per side, a board of side 2 * cells (15: Maze-Hard's 30 x 30)
    d.seed = 0
    d.augment = augment  # a random dihedral transform per training example
    d.report_num_tasks = 8  # mazes shown in <workdir>/report/index.html
    return d


def paper_config(total_steps: int, eval_every: int, augment: bool) -> ml_collections.ConfigDict:
    """Weight decay 1.0, puzzle-embedding lr 1e-4 (TRM.md 5.1, HRM.md 5.2)."""
    c = sudoku_common.paper_config(total_steps, eval_every)  # the same optimizer settings as Sudoku
    c.data = data_config(augment)
    return c


def cpu_overrides(c: ml_collections.ConfigDict) -> None:
    """A run of a few minutes on 2 CPU cores: 256 generated mazes, a tiny float32 model."""
    common.cpu_training(c, total_steps=60, global_batch_size=16, checkpoint_every=60, log_every=10, ema_rate=0.9,
                        lr_warmup_steps=10)
    c.optim.puzzle_emb_lr = 1e-2
    c.optim.weight_decay = 0.1
    c.optim.puzzle_emb_weight_decay = 0.1
    c.data.num_train = 256
    c.data.num_test = 32
    c.data.report_num_tasks = 4
    common.tiny_model(c)
