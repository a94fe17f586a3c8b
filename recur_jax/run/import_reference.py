"""A released HRM/TRM checkpoint of the official PyTorch code -> a recur_jax workdir.

The official runs save `step_<N>` (a `torch.save`d state_dict; the EMA copy when `ema` was on, TRM.md 4.6)
beside `all_config.yaml` (`yaml.dump(PretrainConfig.model_dump())`: `arch` with the model fields and
`loss.loss_type`, `data_paths` (TRM) or `data_path` (HRM), and the training hyperparameters).
`import_checkpoint` turns the pair into a workdir that `launch.solve`, `launch.evaluate` and
`load_for_inference` use directly:

  * the task (sudoku / maze / arc, from the data path or `task=`) picks our experiment config
    (`experiments/{trm,hrm}_{task}.py`), whose data section is then the evaluation data;
  * the model fields come from `arch` (`ModelConfig.from_reference`), `vocab_size` and
    `num_puzzle_identifiers` from the weights' shapes, `seq_len` from the task (checked against a
    learned position table);
  * the optimizer fields that exist on both sides are copied (lr, betas, weight decay, puzzle-embedding
    lr/decay, warmup, lr_min_ratio, global batch, EMA, seed);
  * the weights are loaded with `core.convert.load_state_dict` (names with or without `_orig_mod.`),
    into both the raw and the EMA parameters, and saved as an Orbax checkpoint at step N with the usual
    record; `run.json` records where they came from (file, sha256, the reference config).

Nothing is ever unpickled: `.pt`/`.pth`/`step_*` files go through `torch.load(weights_only=True)`,
`.npz` state_dicts (name -> array, e.g. `core.convert.to_state_dict` written with `np.savez`) through
`safe_io.read_npz`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib
import re
import sys
from typing import Any

import jax
import ml_collections
import numpy as np
from flax import nnx

from recur_jax.core import convert
from recur_jax.core.layers import Buffer
from recur_jax.core.models import count_params
from recur_jax.core.models.config import ModelConfig
from recur_jax.io import paths
from recur_jax.io.safe_io import check_size, read_npz, write_json_atomic

MAX_CONFIG_BYTES = 1 << 20
TASK_SEQ_LEN = {"sudoku": 81, "maze": 900, "arc": 900}
# ours <- theirs (all_config.yaml top level)
OPTIM_FIELDS = {"lr": "lr", "lr_min_ratio": "lr_min_ratio", "lr_warmup_steps": "lr_warmup_steps", "beta1": "beta1",
                "beta2": "beta2", "weight_decay": "weight_decay", "puzzle_emb_lr": "puzzle_emb_lr",
                "puzzle_emb_weight_decay": "puzzle_emb_weight_decay"}


class ReferenceImportError(ValueError):
    """The checkpoint or its config cannot become a workdir (the message names the file and field)."""


def read_reference_config(path: str) -> dict[str, Any]:
    """The official run's `all_config.yaml` (or a JSON file of the same content) as a dict.

    Raises:
      ReferenceImportError: not YAML, not a mapping, or without an `arch` mapping that names the model.
      OSError: the file cannot be read.
    """
    import yaml

    check_size(path, MAX_CONFIG_BYTES, "reference config")
    try:
        with paths.open_file(path, "rb") as f:
            cfg = yaml.safe_load(f)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark is not None else path
        raise ReferenceImportError(f"{where}: not YAML ({getattr(e, 'problem', e)}); expected the official "
                                   f"run's all_config.yaml") from None
    if not isinstance(cfg, dict) or not isinstance(cfg.get("arch"), dict):
        raise ReferenceImportError(f"{path}: expected a mapping with an 'arch' mapping (the official run's "
                                   f"all_config.yaml)")
    if not isinstance(cfg["arch"].get("name"), str):
        raise ReferenceImportError(f"{path}: arch.name is missing; expected e.g. 'recursive_reasoning.trm@"
                                   f"TinyRecursiveReasoningModel_ACTV1' or 'hrm.hrm_act_v1@"
                                   f"HierarchicalReasoningModel_ACTV1'")
    return cfg


def reference_arch(cfg: dict[str, Any], source: str) -> str:
    """"trm" or "hrm" from `arch.name` (the TRM code base's HRM counts as hrm).

    Raises:
      ReferenceImportError: another model of the official code bases (trm_singlez, trm_hier6, the transformer
        baseline), which recur_jax does not implement.
    """
    name = cfg["arch"]["name"]
    module = name.split("@")[0].rsplit(".", 1)[-1]
    if module == "trm":
        return "trm"
    if module in ("hrm", "hrm_act_v1"):
        return "hrm"
    raise ReferenceImportError(f"{source}: arch.name={name!r}: expected the TRM (recursive_reasoning.trm) or HRM "
                               f"(hrm_act_v1 / recursive_reasoning.hrm) model; other variants are not implemented")


def reference_task(cfg: dict[str, Any], source: str) -> str:
    """"sudoku", "maze" or "arc" from the data path(s) of the reference config.

    Raises:
      ReferenceImportError: no data path, or one that names none of the three (pass `task=` then).
    """
    text = _data_paths(cfg).lower()
    for task in ("sudoku", "maze", "arc"):
        if task in text:
            return task
    raise ReferenceImportError(f"{source}: data_paths={cfg.get('data_paths') or cfg.get('data_path')!r} names no task; "
                               f"expected a path containing sudoku, maze or arc, or pass --task")


def _data_paths(cfg: dict[str, Any]) -> str:
    """The reference config's data path(s) as one string (`data_paths` list of TRM, `data_path` of HRM)."""
    data = cfg.get("data_paths") or cfg.get("data_path")
    return " ".join(map(str, data)) if isinstance(data, list) else str(data or "")


def read_state_dict(path: str) -> dict[str, np.ndarray]:
    """A state_dict file as name -> numpy array: `.npz` without pickle, anything else via torch weights_only."""
    if path.endswith(".npz"):
        return read_npz(path, "state_dict (.npz of name -> array)")
    return convert.load_torch_checkpoint(path)


def _experiment(task: str, arch: str, arch_cfg: dict[str, Any], data_paths: str) -> ml_collections.ConfigDict:
    module = importlib.import_module(f"experiments.{arch}_{task}")
    if task == "sudoku" and arch == "trm":
        arg = "mlp" if arch_cfg.get("mlp_t") else "att"
    elif task == "arc":
        arg = "v2" if re.search(r"arc[-_]?(agi[-_]?)?2", data_paths.lower()) else "v1"
    else:
        arg = None
    return module.get_config(arg)


def _step_from_name(path: str) -> int:
    m = re.search(r"step_(\d+)", paths.basename(path))
    return int(m.group(1)) if m else 0


def build_config(ref: dict[str, Any], state_dict: dict[str, np.ndarray], *, task: str, source: str
                 ) -> tuple[ml_collections.ConfigDict, ModelConfig]:
    """Our config for the reference run: the task's experiment config with the reference's model and
    optimizer fields, the vocabulary and puzzle-table sizes read from the weights.

    Raises:
      ReferenceImportError: the weights lack the token embedding, or a learned position table disagrees with the
        task's sequence length.
    """
    arch = reference_arch(ref, source)
    arch_cfg = dict(ref["arch"])
    loss = arch_cfg.pop("loss", None)
    if isinstance(loss, dict) and "loss_type" in loss:
        arch_cfg["loss_type"] = loss["loss_type"]
    config = _experiment(task, arch, arch_cfg, _data_paths(ref))
    names = {convert.strip_prefix(k): v for k, v in state_dict.items()}
    if "embed_tokens.embedding_weight" not in names:
        raise ReferenceImportError(f"{source}: no embed_tokens.embedding_weight; expected an HRM/TRM state_dict")
    model = dataclasses.asdict(ModelConfig.from_reference(arch_cfg, arch=arch))
    model["vocab_size"] = int(names["embed_tokens.embedding_weight"].shape[0])
    model["seq_len"] = TASK_SEQ_LEN[task]
    table = names.get(convert.PUZZLE_KEY)
    model["num_puzzle_identifiers"] = int(table.shape[0]) if table is not None else 1
    cfg = ModelConfig.from_dict(model)
    if cfg.pos_encodings == "learned" and "embed_pos.embedding_weight" in names:
        rows = int(names["embed_pos.embedding_weight"].shape[0])
        if rows != cfg.total_len:
            raise ReferenceImportError(f"{source}: embed_pos has {rows} rows; the {task} task needs seq_len "
                                       f"{cfg.seq_len} + {cfg.prefix_len} puzzle positions (is --task right?)")
    config.model = ml_collections.ConfigDict(dataclasses.asdict(cfg))
    for ours, theirs in OPTIM_FIELDS.items():
        if theirs in ref:
            config.optim[ours] = type(config.optim[ours])(ref[theirs])
    for key in ("global_batch_size", "seed"):
        if key in ref:
            config[key] = int(ref[key])
    if "ema" in ref:
        config.ema = bool(ref["ema"])
    if "ema_rate" in ref:
        config.ema_rate = float(ref["ema_rate"])
    return config, cfg


def import_checkpoint(checkpoint: str, reference_config: str, workdir: str, *, task: str | None = None,
                      step: int | None = None) -> dict[str, Any]:
    """Writes `workdir` (run.json + checkpoints/<step>) from an official checkpoint and its config.

    Args:
      checkpoint: the state_dict file (`step_<N>` / `.pt` via torch weights_only, or `.npz`).
      reference_config: the run's `all_config.yaml`.
      workdir: a new directory (or cloud URL) without a run in it.
      task: "sudoku" | "maze" | "arc" (None: from the config's data path).
      step: the checkpoint's step (None: N of a `step_<N>` file name, else 0).
    Returns:
      The `imported_from` record written into run.json (files, sha256, arch, task, step, parameters).
    Raises:
      FileExistsError: `workdir` already holds a run (run.json or checkpoints/): nothing is touched.
      ReferenceImportError / ValueError: a config or state_dict that does not fit (names the file and key).
      ImportError: torch is missing for a torch file.
    """
    from recur_jax.run import sharding
    from recur_jax.run.checkpoint import Checkpointer, checkpoint_record
    from recur_jax.run.config import validate
    from recur_jax.run.state import example_batch, init_train_state

    workdir = paths.absolute(workdir)
    for name in ("run.json", "checkpoints"):
        if paths.exists(paths.join(workdir, name)):
            raise FileExistsError(f"{paths.join(workdir, name)} exists: {workdir} already holds a run; import into "
                                  f"a new --workdir")
    ref = read_reference_config(reference_config)
    task = task or reference_task(ref, reference_config)
    if task not in TASK_SEQ_LEN:
        raise ReferenceImportError(f"task={task!r}: expected one of {sorted(TASK_SEQ_LEN)}")
    state_dict = read_state_dict(checkpoint)
    if task == "arc":
        print(f"warning: {checkpoint}: an ARC checkpoint's puzzle identifiers index the official builder's "
              f"augmentation table, which recur_jax's ARC data does not reproduce (HRM.md #2); its weights load, "
              f"but an evaluation on our ARC data is not meaningful", file=sys.stderr)
    config, model_cfg = build_config(ref, state_dict, task=task, source=checkpoint)
    step = _step_from_name(checkpoint) if step is None else int(step)
    config.total_steps = max(int(step), 1)
    validate(config, jax.device_count())

    graphdef, state = init_train_state(config, model_cfg, example_batch(config, model_cfg))

    model = nnx.merge(graphdef, state.params, state.buffers)
    table = convert.load_state_dict(model, state_dict, source=checkpoint)
    _, params, buffers = nnx.split(model, nnx.Param, Buffer)
    puzzle_table = state.puzzle_table
    if puzzle_table is not None:
        if table is None:
            raise ReferenceImportError(f"{checkpoint}: no {convert.PUZZLE_KEY}, but the model has "
                                       f"puzzle_emb_ndim={model_cfg.puzzle_emb_ndim}")
        rows = sharding.padded_puzzle_rows(model_cfg.num_puzzle_identifiers, config)
        padded = np.zeros((rows, table.shape[1]), np.asarray(puzzle_table).dtype)
        padded[:table.shape[0]] = table
        puzzle_table = jax.numpy.asarray(padded)
    state = dataclasses.replace(state, step=jax.numpy.asarray(step, jax.numpy.int32), params=params, buffers=buffers,
                                ema_params=jax.tree_util.tree_map(jax.numpy.copy, params) if config.ema else None,
                                puzzle_table=puzzle_table)

    with paths.open_file(checkpoint, "rb") as f:
        digest = hashlib.file_digest(f, "sha256").hexdigest()
    record = {"checkpoint": paths.absolute(checkpoint), "checkpoint_sha256": digest,
              "reference_config": paths.absolute(reference_config), "arch": ref["arch"]["name"], "task": task,
              "step": step, "num_params": count_params(model), "reference": ref}
    paths.makedirs(workdir)
    ckpt = Checkpointer(paths.join(workdir, "checkpoints"), keep=max(1, config.checkpoint.keep), async_save=False)
    try:
        ckpt.save(step, state, checkpoint_record(config, state, step), force=True)
        ckpt.wait()
    finally:
        ckpt.close()
    write_json_atomic(paths.join(workdir, "run.json"),
                      {"config": config.to_dict(), "imported_from": record, "num_params": record["num_params"],
                       "resumed_from_step": step}, indent=2, default=str)
    return record


__all__ = ["ReferenceImportError", "OPTIM_FIELDS", "TASK_SEQ_LEN", "build_config", "import_checkpoint",
           "read_reference_config", "read_state_dict", "reference_arch", "reference_task"]
