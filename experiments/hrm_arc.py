"""HRM on ARC-AGI (HRM.md 5.2): H2/L2 cycles, 4+4 layers, D 512, no EMA. Args `v1`/`v2` and `cpu` as trm_arc.py."""

from experiments import arc_common, common


def get_config(arg: str | None = None):
    args = common.parse_args(arg, {"v1", "v2", "cpu"}, "v1", "experiments/hrm_arc.py")
    if {"v1", "v2"} <= args:
        raise ValueError("experiments/hrm_arc.py: choose one of v1 and v2")
    version = "v2" if "v2" in args else "v1"
    # ARC-1: the notebook's checkpoint step (HRM.md 4.3); ARC-2: 100000 x 1120 groups x 4.333 / 768.
    c = arc_common.paper_config(version, total_steps=631835 if version == "v2" else 414456)
    c.ema = False
    c.model = common.model_config(
        arch="hrm", vocab_size=12, seq_len=900, num_puzzle_identifiers=0, puzzle_emb_ndim=512, puzzle_emb_len=0,
        hidden_size=512, num_heads=8, expansion=4, H_cycles=2, L_cycles=2, H_layers=4, L_layers=4,
        pos_encodings="rope", mlp_t=False, halt_max_steps=16, halt_exploration_prob=0.1, no_ACT_continue=False,
        grad_mode="one_step", forward_dtype="bfloat16")
    if "cpu" in args:
        arc_common.cpu_overrides(c)
    return c
