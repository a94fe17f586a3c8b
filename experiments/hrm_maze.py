"""HRM on Maze-Hard (HRM.md 5.2): H2/L2 cycles, 4+4 layers, D 512, no EMA. Args: `aug` (8 dihedral
augmentations on the fly; off in the official build) and `cpu`."""

from experiments import common, maze_common

CHECK_ARGS = [None, 'cpu']  # the args tests/test_faults.py checks the config of


def get_config(arg: str | None = None):
    args = common.parse_args(arg, {"aug", "cpu"}, "", "experiments/hrm_maze.py")
    # 20000 epochs of 1000 mazes at batch 768; evaluation every 2000 epochs.
    c = maze_common.paper_config(total_steps=26041, eval_every=2604, augment="aug" in args)
    c.ema = False
    c.model = common.hrm_paper_model(vocab_size=6, seq_len=900, num_puzzle_identifiers=1)
    if "cpu" in args:
        maze_common.cpu_overrides(c)
    return c
