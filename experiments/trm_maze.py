"""TRM-Att on Maze-Hard (TRM.md 5.1): H3/L4, RoPE. Args: `aug` (8 dihedral augmentations, as the paper;
the official README build has none, which is the default here) and `cpu`.

    python -m launch.main --config=experiments/trm_maze.py --workdir=runs/trm_maze \
        --config.data.path=/path/to/maze-30x30-hard-1k   # train.csv and test.csv

Without `data.path` the built-in generator supplies hard mazes (shortest path >= 110). Evaluation
adds path_valid / path_optimal to exact_accuracy, and <workdir>/report/index.html shows mazes.
"""

from experiments import common, maze_common


def get_config(arg: str | None = None):
    args = common.parse_args(arg, {"aug", "cpu"}, "", "experiments/trm_maze.py")
    # int(50000 epochs * 1000 mazes / 768); evaluation every 5000 epochs.
    c = maze_common.paper_config(total_steps=65104, eval_every=6510, augment="aug" in args)
    c.model = common.model_config(
        arch="trm", vocab_size=6, seq_len=900, num_puzzle_identifiers=1, puzzle_emb_ndim=512, puzzle_emb_len=16,
        hidden_size=512, num_heads=8, expansion=4, H_cycles=3, L_cycles=4, L_layers=2, pos_encodings="rope",
        mlp_t=False, halt_max_steps=16, halt_exploration_prob=0.1, no_ACT_continue=True, grad_mode="last_sweep",
        forward_dtype="bfloat16")
    if "cpu" in args:
        maze_common.cpu_overrides(c)
    return c
