"""The compute-depth study: does depth of computation beat depth of parameters?

Args: `sort` (default) or `sudoku`, and `cpu` (the whole study in at most 30 minutes on 2 CPU cores).

    python -m launch.sweep --config=experiments/ablations/compute_vs_params.py:sort,cpu --root=runs/cvp_sort
    python -m launch.report --root=runs/cvp_sort

Runs (each row of `get_sweep`, over seeds):
  * TRM over a grid of (H_cycles, L_cycles): network passes per supervision step = H_cycles * (L_cycles + 1);
  * the non-recursive transformer baseline with TRM's parameters (H_layers = L_layers, halt_max_steps 1:
    one pass, nothing carried);
  * a deeper non-recursive transformer with the forward FLOPs of one supervision step of the middle TRM
    cell (H_layers = L_layers * H_cycles * (L_cycles + 1), halt_max_steps 1); its backward pass runs
    through all layers, so its training FLOPs exceed TRM's, whose gradient covers only the last sweep;
  * the 2-layer transformer with TRM's halt_max_steps: no recursion inside a step, but z_H is carried
    from one supervision step to the next (deep supervision), so it recurs across steps;
  * TRM at the middle cell with gradient truncation `one_step` and `full` (the grid uses `last_sweep`).
"""

from experiments import algorithmic_common, common, sudoku_common, trm_sudoku
from recur_jax import sweep

_FILE = "experiments/ablations/compute_vs_params.py"
MIDDLE = (2, 2)  # (H_cycles, L_cycles) of the FLOP-matched and gradient-mode comparisons


def get_config(arg: str | None = None):
    args = common.parse_args(arg, {"sort", "sudoku", "cpu"}, "sort", _FILE)
    if "sudoku" in args and "sort" in args:
        raise ValueError(f"{_FILE}: choose one task, 'sort' or 'sudoku'")
    if "sudoku" in args:
        c = trm_sudoku.get_config("mlp,cpu" if "cpu" in args else "mlp")
        if "cpu" in args:
            c.total_steps = 200
            c.checkpoint_every = 100
            c.model.halt_max_steps = 4
            c.eval.max_examples = 500
        return c
    c = algorithmic_common.config("sort")
    if "cpu" not in args:  # a longer run at the paper's width
        c.total_steps = 5000
        c.checkpoint_every = 1000
        c.model.hidden_size = 512
        c.model.num_heads = 8
    return c


def _row(arch: str, H: int, L: int, layers: int, grad_mode: str = "last_sweep") -> dict:
    return {"model.arch": arch, "model.H_cycles": H, "model.L_cycles": L, "model.L_layers": layers,
            "model.H_layers": layers, "model.grad_mode": grad_mode}


def get_sweep(arg: str | None = None):
    args = common.parse_args(arg, {"sort", "sudoku", "cpu"}, "sort", _FILE)
    layers = 2
    grid = [(1, 1), MIDDLE, (3, 3)] if "cpu" in args else [(1, 1), (1, 3), MIDDLE, (2, 4), (3, 3), (3, 6)]
    H, L = MIDDLE
    rows = [_row("trm", h, l, layers) for h, l in grid]
    single = {"model.halt_max_steps": 1}  # one pass, no latent carried between supervision steps
    rows += [_row("transformer", 1, 1, layers) | single, _row("transformer", 1, 1, layers * H * (L + 1)) | single,
             _row("transformer", 1, 1, layers)]  # the last: recurrent only through the carried z_H
    rows += [_row("trm", H, L, layers, mode) for mode in ("one_step", "full")]
    seeds = [0] if ("cpu" in args and "sudoku" in args) else [0, 1]
    return sweep.product(rows, sweep.values("seed", seeds))
