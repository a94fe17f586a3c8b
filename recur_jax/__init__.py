"""recur_jax: the Hierarchical Reasoning Model and the Tiny Recursive Model in JAX/Flax (NNX).

Packages, in layers (a package imports only from the layers below it; tests/test_layout.py checks):

  io         safe reading and atomic writing of files (size/depth limits, paths kept inside a root)
  core       the maths: layers, models (TRM, HRM, baseline), the truncated recursion, ACT, losses,
             optimizers (AdamATan2, sparse SignSGD), FLOP counts, official-checkpoint conversion
  tasks      one package per task (sudoku, maze, arc, algorithmic): data, TFDS builder, evaluator
  run        training runs: config validation, state, the pure step, the loop, checkpoints, workdir,
             logging, evaluation, sharding, multi-host, preemption, CPU performance settings
  inference  using trained runs: solving puzzles
  study      sweeps, results tables, plots, analysis of trained runs, benchmarks
  parity     checks against the official PyTorch code: golden-value fixtures, training-curve replay
"""

__version__ = "0.1.0"
