"""The extrapolation study: train on small instances, solve larger ones by recursing longer.

The strongest form of the depth-of-computation claim (the "deep thinking" results: Schwarzschild et al.
2021, arXiv 2106.04537; Bansal et al. 2022, arXiv 2202.05826): a recurrent solver trained on small
inputs solves larger ones by iterating more at test time, which a network of fixed depth cannot do.

Args: the task, `prefix_sum` (default: bit strings, target the running parity), `addition` (interleaved
digits) or `maze` (perfect mazes of n x n cells, a 2-D convolution), `cpu` (the small study, sized
for 30 minutes on 2 CPU cores per task; mazes run only `MAZE_CPU_ROWS`), and `seedsK` (K = 2..8: every row
trained with seeds 0..K-1, runs `<row>_seed<k>`; the report adds the mean and range over seeds per size).

    python -m launch.sweep --config=experiments/ablations/extrapolation.py:prefix_sum,cpu --root=runs/ext_ps
    python -m launch.extrapolate --config=experiments/ablations/extrapolation.py:prefix_sum,cpu --root=runs/ext_ps

Rows of `get_sweep` (every recursive row keeps TRM's deep supervision, ACT carry and last-sweep /
one-step gradient; the convolution is `layers.DepthwiseConv`, no position encoding, the Q head reads
the mean of z_H so halting does not depend on the size):

  * `trm_conv`: TRM with a depthwise convolution of width 3 as the token mixer (mazes: 5 x 5 over the board,
    which wraps around: `model.conv_padding="circular"`, the reference's EMA rate 0.999 and progressive loss,
    `model.warmup_max_steps=16`);
  * `trm_att`: TRM with attention and RoPE (positions beyond training are new to it);
  * `hrm_conv`: HRM (separate H and L stacks, one-step gradient) with the same convolution;
  * `onepass_params`: a one-pass transformer (attention + RoPE, halt_max_steps 1) with as many blocks
    as TRM's network (1): TRM-attention's parameters, 1.3x TRM-conv's (attention has 4 D^2 weights per
    block where the convolution has 3 D);
  * `onepass_flops`: a one-pass transformer whose training FLOPs per optimizer step first reach
    `trm_conv`'s (`compute_vs_params.training_flops_matched_layers`).

Test sizes (`TEST_SIZES`) and the test-time budgets are evaluated by `launch.extrapolate` on each
finished run: one evaluation per size at the largest budget gives the exact accuracy after every
supervision step 1..N (one curve per size), so "accuracy against steps" and the overthinking check
(accuracy long after the point of solution) come from the same pass.
"""

from experiments import algorithmic_common, common
from experiments.ablations.compute_vs_params import training_flops_matched_layers
from recur_jax.tasks import algorithmic, maze

CHECK_ARGS = ['prefix_sum', 'prefix_sum,cpu', 'addition,cpu', 'maze,cpu']  # the args tests/test_faults.py checks the config of

_FILE = "experiments/ablations/extrapolation.py"
_TASKS = ("prefix_sum", "addition", "maze")
SEED_ARGS = {f"seeds{k}": k for k in range(2, 9)}  # "seedsK": every row trained with seeds 0..K-1
_ARGS = set(_TASKS) | {"cpu"} | set(SEED_ARGS)

# Training size (prefix sums: bits, addition: digits per addend, mazes: cells per side) and the test sizes.
TRAIN_SIZE = {"prefix_sum": 32, "addition": 16, "maze": 6}
TEST_SIZES = {"prefix_sum": (32, 48, 64, 128, 256, 512), "addition": (16, 24, 32, 48, 64), "maze": (6, 9, 12, 18)}
ROWS = ("trm_conv", "trm_att", "hrm_conv", "onepass_params", "onepass_flops")
MAZE_CPU_ROWS = ("trm_conv", "onepass_params")  # what fits the cpu study's time on mazes (324+ tokens)


def _task(args: set[str]) -> str:
    tasks = [t for t in _TASKS if t in args]
    if len(tasks) > 1:
        raise ValueError(f"{_FILE}: choose one task of {_TASKS}, got {tasks}")
    return tasks[0] if tasks else "prefix_sum"


def seq_len_for(task: str, size: int) -> int:
    """The sequence length holding an instance of `size` (addition: two interleaved addends of `size` digits
    and the carry-out digit, rounded up to even; mazes: the board of side 2 * size)."""
    if task == "maze":
        return (2 * size) ** 2
    return 2 * size + 2 if task == "addition" else size


def _maze_data(cells: int):
    from experiments import maze_common

    d = maze_common.data_config(augment=True)
    d.cells = cells
    d.min_path = 2 * cells  # no trivially short paths; the hard set's 110 is for 15 cells
    d.num_train = 20000  # with 2,000 (and width 3, lr 1e-3) the cpu row reached 0.36 exact; see the 2026-12-06 note
    return d


def get_config(arg: str | None = None):
    """The base config (the `trm_conv` row) of the study; args: the task and optionally `cpu`.

    Raises:
      ValueError: an unknown arg or two tasks.
    """
    args = common.parse_args(arg, _ARGS, "prefix_sum", _FILE)
    task = _task(args)
    n = TRAIN_SIZE[task]
    c = algorithmic_common.config("sort")
    c.model.vocab_size = algorithmic.vocab_size(task) if task != "maze" else maze.VOCAB_SIZE
    if task == "maze":
        c.data = _maze_data(n)
    else:
        lo = n if task == "prefix_sum" else 1  # prefix sums: the anchor's fixed 32 bits; addition: 1..16 digits
        c.data = algorithmic_common.data_config(task, seq_len=seq_len_for(task, n), train_lengths=(lo, n),
                                                test_lengths=(n, n))
    if task == "addition":
        c.data.layout = "interleaved"  # a column's digits are neighbours at every length
    c.data.num_test = 256
    c.eval.max_examples = 256
    c.eval.global_batch_size = 64
    c.total_steps = 800 if "cpu" in args else 10000
    c.checkpoint_every = 400
    c.log_every = 50
    c.optim.lr = 1e-3
    c.optim.lr_warmup_steps = 100
    c.optim.weight_decay = 0.1
    m = c.model
    m.arch = "trm"
    m.seq_len = seq_len_for(task, n)
    m.hidden_size = 64 if "cpu" in args else 256
    m.num_heads = 4
    m.L_layers = m.H_layers = 1
    m.H_cycles, m.L_cycles = 2, 3
    m.halt_max_steps = 8
    m.pos_encodings = "none"
    m.conv_kernel = 3
    m.q_head_input = "mean"
    if task != "prefix_sum":
        # Every row gets all 8 supervision steps in training (the Q head still learns): with the reference's
        # halting, addition rows halted at step ~2 and the iteration drifted after it (held-out 16-digit exact
        # accuracy 0.73 at step 2, 0.16 at step 8); without it, 0.996 at every step from 2 to 8.
        m.halt_in_training = False
        c.total_steps = 3000 if "cpu" in args else 20000  # mazes: below
        c.checkpoint_every = 1000
    if task == "maze":  # a 2-D convolution over the board; 144 tokens per example: a smaller batch
        m.conv_grid_width = 2 * n
        # Width 5 reaches the neighbouring cells (two board squares: cells sit at even coordinates, passages
        # between them), so one block application moves information by one cell.
        m.conv_kernel = 5
        c.global_batch_size = 32
        c.eval.global_batch_size = 32
        c.data.num_test = c.eval.max_examples = 128
        c.optim.lr = 2e-3
        c.optim.lr_min_ratio = 0.1  # cosine decay to 0.1 x lr after warmup
        c.total_steps = 6000 if "cpu" in args else 20000
        c.eval_every = 1000
        # The board is a torus: a rule learned on 6 x 6 cells cannot lean on the distance to the board's
        # edge (zero padding), which it did: the same 6 x 6 mazes set in the middle of a 12 x 12 board of
        # walls scored 0.78 against 1.00. The last row and column are walls, so the wrap joins no passages.
        m.conv_padding = "circular"
        # The reference's EMA rate (the cpu presets' 0.95 is for runs of a few hundred steps): which rule
        # the 6 x 6 training settles on moves from checkpoint to checkpoint (12 x 12 exact 0.17 / 0.80 /
        # 0.45 / 0.77 at steps 3000-6000), and the average of the last three checkpoints reached 0.89; with
        # this rate the study's run reached 0.67 (see the 2026-12-06 note: one run each, not a settled gain).
        c.ema_rate = 0.999
        # Progressive loss (Bansal et al. 2022): a new maze first takes r ~ U{0..16} detached steps, so the
        # supervised steps also see the latents of steps 9..24, as 12 x 12 mazes need (solved at steps 30-60).
        # 12 x 12 exact, seeds 0 / 1 / 2: 0.938 / 0.875 / 0.234 (seed 2 learns 6 x 6 slowly: 0.875), against
        # 0.672 (seed 0) without it; +26% training time (see the 2026-12-06 progressive-loss note).
        m.warmup_max_steps = 16
    return c


def _row(name: str, config) -> dict:
    attention = {"model.conv_kernel": 0, "model.conv_grid_width": 0, "model.pos_encodings": "rope",
                 "model.q_head_input": "first"}
    if name == "trm_conv":
        return {}
    if name == "trm_att":
        return attention
    if name == "hrm_conv":
        return {"model.arch": "hrm", "model.grad_mode": "one_step", "model.no_ACT_continue": False}
    one_pass = attention | {"model.arch": "transformer", "model.halt_max_steps": 1}
    if config.model.warmup_max_steps:  # one pass carries nothing from step to step: nothing to warm up
        one_pass["model.warmup_max_steps"] = 0
    if name == "onepass_params":
        return one_pass | {"model.H_layers": config.model.L_layers}
    if name == "onepass_flops":
        layers = training_flops_matched_layers(config, config.model.H_cycles, config.model.L_cycles)
        return one_pass | {"model.H_layers": layers}
    raise ValueError(f"{_FILE}: unknown row {name!r}; expected one of {ROWS}")


def num_seeds(arg: str | None = None) -> int:
    """K of a `seedsK` arg (2..8), else 1.

    Raises:
      ValueError: two seedsK args.
    """
    args = common.parse_args(arg, _ARGS, "prefix_sum", _FILE)
    chosen = sorted(a for a in args if a in SEED_ARGS)
    if len(chosen) > 1:
        raise ValueError(f"{_FILE}: choose one of the seedsK args, got {chosen}")
    return SEED_ARGS[chosen[0]] if chosen else 1


def run_name(row: str, seed: int) -> str:
    """The run directory of `row` trained with `seed`: the row's name for seed 0, `<row>_seed<k>` otherwise
    (`recur_jax.study.extrapolation.seed_groups` reads the suffix back)."""
    return row if seed == 0 else f"{row}_seed{seed}"


def get_sweep(arg: str | None = None):
    """One run per row of `row_labels(arg)` (the module docstring) and seed 0..K-1 (`seedsK`; K = 1 without
    it), in that order."""
    config = get_config(arg)
    args = common.parse_args(arg, _ARGS, "prefix_sum", _FILE)
    rows = MAZE_CPU_ROWS if (_task(args) == "maze" and "cpu" in args) else ROWS
    return [{"_name": run_name(name, seed)} | _row(name, config) | {"seed": seed}
            for name in rows for seed in range(num_seeds(arg))]


def row_labels(arg: str | None = None) -> list[str]:
    """The run name of each run of `get_sweep(arg)`, in order (for the extrapolation report)."""
    return [r["_name"] for r in get_sweep(arg)]


def test_budget(task: str, size: int, train_budget: int, cpu: bool) -> int:
    """Supervision steps at test size `size`: the training budget scaled with the size (a local mixer needs
    steps in proportion to the distance information travels; a maze's paths grow with its area), times 4 up
    to 4x the training size so that the overthinking check (4x the step of solution) has room, times 1.25
    beyond (the largest evaluations dominate the study's time; still 2x TRM-conv's step of solution on
    512-bit prefix sums); mazes times 2; at least the training budget."""
    del cpu
    scale = size / TRAIN_SIZE[task]
    if task == "maze":
        scale = scale ** 2
    factor = 4 if size <= 4 * TRAIN_SIZE[task] else 1.25
    if task == "maze":  # boards grow with the square of the side: 2x
        factor = 2
    return max(train_budget, int(round(factor * train_budget * scale)))


def get_eval_plan(arg: str | None = None) -> list[dict]:
    """The test sizes of the study with their data and budget overrides (`launch.extrapolate`).

    Each size n: held-out instances of exactly n (prefix sums: bits; addition: digits per addend) at
    seq_len `seq_len_for(n)`, a budget of `test_budget` steps, 256 examples up to 4x the training size (64
    beyond, 32 from 512 on: the largest evaluations dominate the study's time on 2 cores); mazes 64, 32 from
    18 cells.
    """
    args = common.parse_args(arg, _ARGS, "prefix_sum", _FILE)
    task, cpu = _task(args), "cpu" in args
    c = get_config(arg)
    plan = []
    for n in TEST_SIZES[task]:
        budget = test_budget(task, n, int(c.model.halt_max_steps), cpu)
        if task == "maze":
            examples = 64 if n <= 2 * TRAIN_SIZE[task] else 32
            data = {"data.cells": n, "data.min_path": 2 * n, "data.num_test": examples, "data.num_train": 32}
        else:
            examples = 256 if n <= 4 * TRAIN_SIZE[task] else (64 if n < 512 else 32)
            data = {"data.seq_len": seq_len_for(task, n), "data.test_lengths": (n, n), "data.num_test": examples}
        plan.append({"size": n, "overrides": data | {"eval.max_examples": examples,
                                                      "eval.global_batch_size": min(64, examples),
                                                      "eval.halt_max_steps": budget}})
    return plan
