"""HRM on Maze-Hard (HRM.md 5.2): H2/L2 cycles, 4+4 layers, D 512, no EMA. Args: `aug` (8 dihedral
augmentations on the fly; off in the official build) and `cpu`."""

from experiments import common, maze_common


def get_config(arg: str | None = None):
    args = common.parse_args(arg, {"aug", "cpu"}, "", "experiments/hrm_maze.py")
    # 20000 epochs of 1000 mazes at batch 768; evaluation every 2000 epochs.
    c = maze_common.paper_config(total_steps=26041, eval_every=2604, augment="aug" in args)
    c.ema = False
    c.model = common.model_config(
        arch="hrm", vocab_size=6, seq_len=900, num_puzzle_identifiers=1, puzzle_emb_ndim=512, puzzle_emb_len=0,
        hidden_size=512, num_heads=8, expansion=4, H_cycles=2, L_cycles=2, H_layers=4, L_layers=4,
        pos_encodings="rope", mlp_t=False, halt_max_steps=16, halt_exploration_prob=0.1, no_ACT_continue=False,
        grad_mode="one_step", forward_dtype="bfloat16")
    if "cpu" in args:
        maze_common.cpu_overrides(c)
    return c
