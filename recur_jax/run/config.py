"""The fields of a training config and their types, checked before anything is built.

`check(config)` refuses a key that is not a field (a misspelling in an experiment file would
otherwise be silently ignored) and a value of the wrong type (a string where a number is expected, a
float step count, ...), naming the field. `data` is checked by its task (its fields differ per task);
only `data.name` is checked here. `model` fields come from `ModelConfig` itself.

A new config field must be added to `TRAIN_FIELDS` (tests/test_faults.py checks that every
experiment's config passes).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from recur_jax.core.models.config import ModelConfig

TRAIN_FIELDS: dict[str, Any] = {
    "seed": int, "total_steps": int, "eval_every": int, "checkpoint_every": int, "log_every": int,
    "global_batch_size": int, "microbatches": int, "act_mode": str, "ema": bool, "ema_rate": float,
    "optim": {"lr": float, "lr_min_ratio": float, "lr_warmup_steps": int, "beta1": float, "beta2": float,
              "weight_decay": float, "puzzle_emb_lr": float, "puzzle_emb_weight_decay": float},
    "eval": {"halt_max_steps": int, "global_batch_size": int, "max_examples": int},
    "checkpoint": {"keep": int, "async_save": bool},
    "nonfinite": {"policy": str, "max_consecutive_skips": int},
    "xla_flags": str,
    "host_hugepages": bool,
    "mesh": {"data": int, "fsdp": int, "model": int},
    "sharding": {"logical_axis_rules": None, "param_rules": None,  # rule lists: checked by sharding.validate
                 "fsdp_fallback": bool, "puzzle_rows_multiple": int},
    "data": None,  # checked by the task
    "model": {f.name: type(f.default) for f in dataclasses.fields(ModelConfig)},
}
OPTIONAL = ("nonfinite", "mesh", "sharding", "xla_flags", "host_hugepages")  # older configs (run records) may lack these groups


def _type_ok(value: Any, expected: type) -> bool:
    if expected is bool:
        return isinstance(value, bool)
    if expected is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if expected is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    return isinstance(value, expected)


def _names(t: type) -> str:
    return {int: "an integer", float: "a number", bool: "True or False", str: "a string"}.get(t, t.__name__)


def check(config: Mapping[str, Any], schema: Mapping[str, Any] = TRAIN_FIELDS, prefix: str = "") -> None:
    """Checks keys and value types of `config` (a ConfigDict or dict) against `schema`.

    Raises:
      ValueError: `config.<name>: unknown field; valid fields: [...]`,
        `config.<name>=<value>: expected <type>` or `config.<group>: missing`.
    """
    keys = list(config.keys())
    for key in keys:
        name = f"{prefix}{key}"
        if key not in schema:
            raise ValueError(f"config.{name}: unknown field; valid fields here: {sorted(schema)}")
        expected, value = schema[key], config[key]
        if expected is None:
            continue
        if isinstance(expected, Mapping):
            if not isinstance(value, Mapping) and not hasattr(value, "keys"):
                raise ValueError(f"config.{name}={value!r}: expected a group of fields {sorted(expected)}")
            check(value, expected, f"{name}.")
        elif not _type_ok(value, expected):
            raise ValueError(f"config.{name}={value!r} ({type(value).__name__}): expected {_names(expected)}")
    for key in schema:
        if key not in keys and key not in OPTIONAL and prefix != "model.":  # model fields have defaults
            raise ValueError(f"config.{prefix}{key}: missing; expected a value for every field")
    if prefix == "" and "data" in keys and "name" in config["data"] and not isinstance(config["data"]["name"], str):
        raise ValueError(f"config.data.name={config['data']['name']!r}: expected a string")


__all__ = ["TRAIN_FIELDS", "check"]
