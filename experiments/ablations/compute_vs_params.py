"""The compute-depth study: does depth of computation beat depth of parameters?

Args: `sort` (default) or `sudoku`, and `cpu` (the small study: both parts and their reports in about
30 minutes on 2 CPU cores).

    python -m launch.sweep --config=experiments/ablations/compute_vs_params.py:sort,cpu --root=runs/cvp_sort
    python -m launch.sweep --config=experiments/ablations/compute_vs_params.py:sudoku,cpu --root=runs/cvp_sudoku
    python -m launch.report --root=runs/cvp_sort --plots --analyze --memory
    python -m launch.report --root=runs/cvp_sudoku --plots --analyze --memory

Rows of `get_sweep` (every model has 2-layer blocks of the same width unless said otherwise; the
transformer rows use the same block, attention or MLP-t, as the TRM rows). "Passes" are network passes
of one supervision step, H_cycles * (L_cycles + 1) for TRM. What each row holds equal to the reference
TRM cell (`REFERENCE`: (2, 2) on sorting, (2, 3) on Sudoku) and what it changes:

  * `trm H,L`: TRM over a grid of (H_cycles, L_cycles): same parameters, more or fewer passes;
  * `one pass`: the 2-layer transformer with TRM's parameters, halt_max_steps 1 (one pass, nothing
    carried). Equal parameters and optimizer steps; far less compute, and 64 new examples per step
    where streaming TRM (halt_max_steps > 1) takes only the rows that halted, at least
    global_batch_size / halt_max_steps of them;
  * `one pass, equal examples`: the same with global_batch_size / halt_max_steps rows per step, so it
    sees at most as many new training examples as TRM in as many optimizer steps (TRM's lower bound;
    evaluation batch unchanged). Controls for the data advantage of the one-pass row;
  * `deeper, equal forward FLOPs`: one pass of 2 * H_cycles * (L_cycles + 1) layers, the forward FLOPs
    of one TRM supervision step. Its backward pass covers every layer, so its training FLOPs per step
    exceed TRM's (whose gradient covers only the last sweep) and it has that many times the parameters;
  * `deeper, equal training FLOPs` (sorting only): one pass of the depth whose training FLOPs per
    optimizer step (forward + backward, `recur_jax.core.flops.train_step_flops`) first reach TRM's; with
    equal steps, equal total training compute;
  * `carried`: the 2-layer transformer with TRM's halt_max_steps: no recursion inside a step, but z_H
    is carried from one supervision step to the next (deep supervision), so it recurs across steps;
  * `trm REFERENCE` with gradient truncation `one_step` and `full` (the grid uses `last_sweep`);
    `launch.report --memory` adds each row's train-step memory.

The `cpu` study, chosen to fit 30 minutes on 2 cores:
  * sorting (`sort,cpu`): lists of 2-12 values, 300 steps of batch 64, 2 seeds (mean ± std); all rows
    above, the grid (1,1), (2,2), (3,3);
  * Sudoku (`sudoku,cpu`): the README demo's setting (`experiments/trm_sudoku.py:mlp,cpu`: TRM-MLP,
    hidden 64, 450 steps of batch 64 on easy generated puzzles, halt_max_steps 8), where TRM solves
    about three quarters of the held-out puzzles exactly; 1 seed, 256 test puzzles. Rows: TRM (2,3)
    and (1,1), one pass, one pass with equal examples, deeper with equal forward FLOPs (16 layers) and
    carried. Left out to fit the time (measured on one core, per 450 steps): the gradient modes
    (`one_step` 0.6x and `full` 2.1x TRM's 1.0 s step; sorting shows both), the equal-training-FLOPs
    transformer (11 layers, about TRM's step time) and a second seed.
Without `cpu`: a longer sorting run at the paper's width, or the Sudoku paper setting, with a larger grid
and 2 seeds.
"""

from experiments import algorithmic_common, common, trm_sudoku
from recur_jax.core import flops
from recur_jax.core.models.config import ModelConfig
from recur_jax.study import sweep

CHECK_ARGS = ['sort', 'sort,cpu', 'sudoku,cpu']  # the args tests/test_faults.py checks the config of

_FILE = "experiments/ablations/compute_vs_params.py"
_ARGS = {"sort", "sudoku", "cpu"}
REFERENCE = {"sort": (2, 2), "sudoku": (2, 3)}  # (H_cycles, L_cycles) of the comparisons with TRM
LAYERS = 2  # blocks per TRM network and in the equal-parameter transformer


def _task(args: set[str]) -> str:
    if "sudoku" in args and "sort" in args:
        raise ValueError(f"{_FILE}: choose one task, 'sort' or 'sudoku'")
    return "sudoku" if "sudoku" in args else "sort"


def get_config(arg: str | None = None):
    """The base config of every run of the study (args: `sort` or `sudoku`, optionally `cpu`).

    Raises:
      ValueError: an unknown arg, or both `sort` and `sudoku`.
    """
    args = common.parse_args(arg, _ARGS, "sort", _FILE)
    task = _task(args)
    H, L = REFERENCE[task]
    if task == "sudoku":
        c = trm_sudoku.get_config("mlp,cpu" if "cpu" in args else "mlp")
        if "cpu" in args:  # the demo's training; a smaller test set
            c.data.num_test = 256
            c.eval.max_examples = 256
    else:
        c = algorithmic_common.config("sort")
        if "cpu" not in args:  # a longer run at the paper's width
            c.total_steps = 5000
            c.checkpoint_every = 1000
            c.model.hidden_size = 512
            c.model.num_heads = 8
    c.eval.global_batch_size = c.global_batch_size  # also for the rows with a smaller training batch
    c.model.H_cycles, c.model.L_cycles = H, L
    c.model.L_layers = c.model.H_layers = LAYERS
    return c


def _row(arch: str, H: int, L: int, layers: int, grad_mode: str = "last_sweep") -> dict:
    return {"model.arch": arch, "model.H_cycles": H, "model.L_cycles": L, "model.L_layers": layers,
            "model.H_layers": layers, "model.grad_mode": grad_mode}


def training_flops_matched_layers(config, H: int, L: int) -> int:
    """The fewest layers of a one-pass transformer (halt_max_steps 1) whose training FLOPs per optimizer
    step (`flops.train_step_flops`, forward + backward) reach those of TRM (H, L) with `config.model`'s
    width, layers and gradient mode, at `config.global_batch_size`.

    Args:
      config: an experiment config (`get_config`); only `model` and `global_batch_size` are read.
      H, L: TRM's H_cycles and L_cycles (>= 1).
    Returns:
      The number of transformer layers, an int >= 1.
    Raises:
      ValueError: H or L below 1, or an invalid model config.
    """
    if H < 1 or L < 1:
        raise ValueError(f"H_cycles={H} and L_cycles={L} must both be >= 1")
    base = dict(config.model.to_dict())
    B = int(config.global_batch_size)
    trm = ModelConfig.from_dict(base | {"arch": "trm", "H_cycles": H, "L_cycles": L})
    target = flops.train_step_flops(trm, B)["total"]
    n = 1
    while flops.train_step_flops(ModelConfig.from_dict(base | {"arch": "transformer", "H_layers": n,
                                                               "halt_max_steps": 1}), B)["total"] < target:
        n += 1
    return n


def get_sweep(arg: str | None = None):
    """The study's runs as override dicts (rows x seeds); see the module docstring for what each row is.

    Raises:
      ValueError: an unknown arg, or both `sort` and `sudoku`.
    """
    args = common.parse_args(arg, _ARGS, "sort", _FILE)
    task, cpu = _task(args), "cpu" in args
    small_sudoku = cpu and task == "sudoku"  # the rows left out to fit the cpu study's 30 minutes
    c = get_config(arg)
    H, L = REFERENCE[task]
    if task == "sudoku":
        grid = [(1, 1), (2, 3)] if cpu else [(1, 1), (1, 3), (2, 3), (3, 6)]
    else:
        grid = [(1, 1), (2, 2), (3, 3)] if cpu else [(1, 1), (1, 3), (2, 2), (2, 4), (3, 3), (3, 6)]
    rows = [_row("trm", h, l, LAYERS) for h, l in grid]
    single = {"model.halt_max_steps": 1}  # one pass, no latent carried between supervision steps
    examples = {"global_batch_size": c.global_batch_size // c.model.halt_max_steps}
    rows += [_row("transformer", 1, 1, LAYERS) | single, _row("transformer", 1, 1, LAYERS) | single | examples,
             _row("transformer", 1, 1, LAYERS * H * (L + 1)) | single]
    if not small_sudoku:
        rows.append(_row("transformer", 1, 1, training_flops_matched_layers(c, H, L)) | single)
    rows.append(_row("transformer", 1, 1, LAYERS))  # recurrent only through the carried z_H
    if not small_sudoku:
        rows += [_row("trm", H, L, LAYERS, mode) for mode in ("one_step", "full")]
    seeds = [0] if small_sudoku else [0, 1]
    return sweep.product(rows, sweep.values("seed", seeds))
