"""TRM on Sudoku-Extreme (TRM.md 5.1). Args: `mlp` (TRM-MLP, default) or `att` (TRM-Att), and `cpu`.

    python -m launch.main --config=experiments/trm_sudoku.py:mlp --workdir=runs/trm_mlp \
        --config.data.path=/path/to/sudoku-extreme   # train.csv and test.csv

Without `data.path` the built-in generator supplies the puzzles. `cpu` is a run of about 5 minutes on
2 CPU cores on easy generated puzzles (singles-solvable, see recur_jax/tasks/sudoku/generator.py), float32.
`cpu,long` trains the same model 4x longer on the mixed tier (`sudoku_common.cpu_long_overrides`, about
20 minutes): the checkpoint the test-time compute figures in WORKSPACE.md use.
"""

from experiments import common, sudoku_common

CHECK_ARGS = ['mlp', 'att', 'mlp,cpu', 'att,cpu', 'mlp,cpu,long']  # the args tests/test_faults.py checks the config of


def get_config(arg: str | None = None):
    args = common.parse_args(arg, {"mlp", "att", "cpu", "long"}, "mlp", "experiments/trm_sudoku.py")
    # int(50000 epochs * 1000 puzzles / 768); evaluation every 5000 epochs.
    c = sudoku_common.paper_config(total_steps=65104, eval_every=6510)
    att = "att" in args
    c.model = common.trm_paper_model(vocab_size=11, seq_len=81, num_puzzle_identifiers=1, L_cycles=6,
                                     pos_encodings="rope" if att else "none", mlp_t=not att)
    if "cpu" in args:
        sudoku_common.cpu_overrides(c)
    if "long" in args:
        if "cpu" not in args:
            raise ValueError("experiments/trm_sudoku.py: 'long' lengthens the cpu run; use it with 'cpu'")
        sudoku_common.cpu_long_overrides(c)
    return c
