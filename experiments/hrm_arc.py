"""HRM on ARC-AGI (HRM.md 5.2): H2/L2 cycles, 4+4 layers, D 512, no EMA. Args `v1`/`v2` and `cpu` as trm_arc.py."""

from experiments import arc_common, common

CHECK_ARGS = ['v1', 'v2,cpu']  # the args tests/test_faults.py checks the config of


def get_config(arg: str | None = None):
    args = common.parse_args(arg, {"v1", "v2", "cpu"}, "v1", "experiments/hrm_arc.py")
    version = arc_common.version(args, "experiments/hrm_arc.py")
    # ARC-1: the notebook's checkpoint step (HRM.md 4.3); ARC-2: 100000 x 1120 groups x 4.333 / 768.
    c = arc_common.paper_config(version, total_steps=631835 if version == "v2" else 414456)
    c.ema = False
    c.model = common.hrm_paper_model(vocab_size=12, seq_len=900, num_puzzle_identifiers=0)
    if "cpu" in args:
        arc_common.cpu_overrides(c)
    return c
