"""HRM on Sudoku-Extreme 1k (HRM.md 5.2): H2/L2 cycles, 4+4 layers, D 512, no EMA. Arg `cpu` as in trm_sudoku."""

from experiments import common, sudoku_common

CHECK_ARGS = [None, 'cpu']  # the args tests/test_faults.py checks the config of


def get_config(arg: str | None = None):
    args = common.parse_args(arg, {"cpu"}, "", "experiments/hrm_sudoku.py")
    # 20000 epochs of 1000 puzzles at batch 768; evaluation every 2000 epochs.
    c = sudoku_common.paper_config(total_steps=26041, eval_every=2604)
    c.ema = False
    c.model = common.hrm_paper_model(vocab_size=11, seq_len=81, num_puzzle_identifiers=1)
    if "cpu" in args:
        sudoku_common.cpu_overrides(c)
    return c
