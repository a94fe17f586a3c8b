"""TRM-Att on Maze-Hard (TRM.md 5.1): H3/L4, RoPE. Args: `aug` (8 dihedral augmentations, as the paper;
the official README build has none, which is the default here) and `cpu`.

    python -m launch.main --config=experiments/trm_maze.py --workdir=runs/trm_maze \
        --config.data.path=/path/to/maze-30x30-hard-1k   # train.csv and test.csv

Without `data.path` the built-in generator supplies hard mazes (shortest path >= 110). Evaluation
adds path_valid / path_optimal to exact_accuracy, and <workdir>/report/index.html shows mazes.
"""

from experiments import common, maze_common

CHECK_ARGS = [None, 'aug,cpu']  # the args tests/test_faults.py checks the config of


def get_config(arg: str | None = None):
    args = common.parse_args(arg, {"aug", "cpu"}, "", "experiments/trm_maze.py")
    # int(50000 epochs * 1000 mazes / 768); evaluation every 5000 epochs.
    c = maze_common.paper_config(total_steps=65104, eval_every=6510, augment="aug" in args)
    c.model = common.trm_paper_model(vocab_size=6, seq_len=900, num_puzzle_identifiers=1)
    if "cpu" in args:
        maze_common.cpu_overrides(c)
    return c
