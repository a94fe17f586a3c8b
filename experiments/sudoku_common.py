"""Sudoku data settings and the small CPU variant shared by trm_sudoku.py and hrm_sudoku.py."""

import ml_collections

from experiments import common


def data_config() -> ml_collections.ConfigDict:
    """The official protocol, seeded: 1000 training puzzles subsampled, the full test set."""
    d = ml_collections.ConfigDict()
    d.name = "sudoku"
    d.path = ""  # a directory with train.csv/test.csv (Sudoku-Extreme format); "" = built-in generator
    d.data_dir = ""  # where TFDS writes ArrayRecord files; "" = <workdir>/data
    d.num_train = 1000
    d.num_test = 0  # 0: the full test set (CSV) / 10000 generated puzzles
    d.tier = "hard"  # generator tier when no path is given
    d.seed = 0
    d.augment = True
    return d


def paper_config(total_steps: int, eval_every: int) -> ml_collections.ConfigDict:
    """The Sudoku settings both papers share: the official protocol, weight decay 1.0, puzzle-embedding
    lr 1e-4 (TRM.md 5.1, HRM.md 5.2); evaluation and checkpoints every `eval_every` steps."""
    c = common.base_config()
    c.data = data_config()
    c.total_steps = total_steps
    c.eval_every = eval_every
    c.checkpoint_every = eval_every
    c.optim.weight_decay = 1.0
    c.optim.puzzle_emb_lr = 1e-4
    c.optim.puzzle_emb_weight_decay = 1.0
    return c


def cpu_overrides(c: ml_collections.ConfigDict) -> None:
    """A run of about 5 minutes on 2 CPU cores: a small float32 model on easy generated puzzles.

    Easy tier: 36-45 givens, every puzzle solvable by naked/hidden singles (no search). Measured on
    2 cores (TRM-MLP): 450 steps reach 0.711 held-out exact accuracy on 1,000 test puzzles (the README
    run, about 5 minutes of training on a quiet machine). The higher learning rate and the short EMA horizon suit a run of a few hundred steps.
    """
    common.cpu_training(c, total_steps=450, global_batch_size=64, checkpoint_every=150, log_every=25, ema_rate=0.95,
                        lr_warmup_steps=100)
    c.optim.puzzle_emb_lr = 1e-2
    c.optim.weight_decay = 0.1
    c.optim.puzzle_emb_weight_decay = 0.1
    c.data.tier = "easy"
    c.data.num_train = 3000
    c.data.num_test = 1000
    c.model.hidden_size = 64
    c.model.num_heads = 4
    c.model.puzzle_emb_ndim = 64
    c.model.puzzle_emb_len = 1 if c.model.arch == "trm" else 0
    c.model.forward_dtype = "float32"
    c.model.halt_max_steps = 8
    if c.model.arch == "trm":
        c.model.H_cycles = 2
        c.model.L_cycles = 3
    else:
        c.model.H_layers = 2
        c.model.L_layers = 2


def cpu_long_overrides(c: ml_collections.ConfigDict) -> None:
    """The `cpu` run trained 4x longer (1800 steps, about 20 minutes on 2 cores) on 6,000 puzzles of the
    generator's mixed tier (a third each easy, medium and hard; the test set is mixed too), for a Q head
    that is calibrated enough to study test-time compute (early halting, sampled trajectories). Measured
    (2026-12-06): 0.376 exact on its mixed test set, 0.941 on 1,000 easy and 0.056 on 1,000 hard puzzles.
    """
    c.total_steps = 1800
    c.checkpoint_every = 600
    c.data.tier = "mixed"
    c.data.num_train = 6000
