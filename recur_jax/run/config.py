"""The one home of training-config validation: the fields and their types, then per-concern checks.

`validate(config, num_devices)` runs `CHECKS` in order, before anything is built or written; each names
the first invalid field (`config.<name>=<value>: expected ...`):

- `check_schema`: a key that is not a field (a misspelling in an experiment file would otherwise be
  silently ignored) and a value of the wrong type (a string where a number is expected, a float step
  count, ...). `data` is checked by its task (its fields differ per task); only `data.name` here.
  `model` fields come from `ModelConfig` itself.
- `check_finite`: NaN or infinity anywhere a number is expected (a `< 0` check is false for NaN).
- `check_training`, `check_optim`, `check_eval`, `check_checkpoint`, `check_nonfinite`: ranges and
  combinations of each group; `check_mesh`: the mesh and batch sizes (`sharding.validate`);
  `check_data_sizes`; `check_model` (`ModelConfig`'s own validation).

`resolve(config, task)` then fills what depends on the data (`model.num_puzzle_identifiers = 0`: the
data's) and checks the model against it. The evaluation budget is resolved in one place,
`recur_jax.run.evaluate.resolve_settings`.

A new config field must be added to `TRAIN_FIELDS` (tests/test_faults.py checks that every
experiment's config passes); a new rule becomes a check function appended to `CHECKS`.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping
from typing import Any

import jax
import ml_collections

from recur_jax.core.models.config import ModelConfig
from recur_jax.run import sharding
from recur_jax.run.step import nonfinite_policy

TRAIN_FIELDS: dict[str, Any] = {
    "seed": int, "total_steps": int, "eval_every": int, "checkpoint_every": int, "log_every": int,
    "global_batch_size": int, "microbatches": int, "act_mode": str, "ema": bool, "ema_rate": float,
    "optim": {"lr": float, "lr_min_ratio": float, "lr_warmup_steps": int, "beta1": float, "beta2": float,
              "weight_decay": float, "puzzle_emb_lr": float, "puzzle_emb_weight_decay": float},
    "eval": {"halt_max_steps": int, "global_batch_size": int, "max_examples": int, "halt": str, "samples": int,
             "noise_scale": float, "noise_seed": int, "select": str, "halt_threshold": float,
             "H_cycles": int},
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
# older configs (run records) may lack these groups and fields
OPTIONAL = ("nonfinite", "mesh", "sharding", "xla_flags", "host_hugepages", "halt", "samples", "noise_scale",
            "noise_seed", "select", "halt_threshold", "H_cycles")


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


def _bad(name: str, value: Any, expected: str):
    raise ValueError(f"config.{name}={value!r}: expected {expected}")


@dataclasses.dataclass(frozen=True)
class Context:
    """What the checks need besides the config: the devices and processes of this job."""

    num_devices: int
    process_count: int


def check_schema(config: ml_collections.ConfigDict, ctx: Context) -> None:
    """Unknown fields, missing groups and wrong types (`check`)."""
    check(config)


def _numbers(tree: Any, prefix: str = ""):
    for key in tree.keys():
        value = tree[key]
        if hasattr(value, "keys"):
            yield from _numbers(value, f"{prefix}{key}.")
        elif isinstance(value, (list, tuple)):
            for i, v in enumerate(value):
                if isinstance(v, float):
                    yield f"{prefix}{key}[{i}]", v
        elif isinstance(value, float):
            yield f"{prefix}{key}", value


def check_finite(config: ml_collections.ConfigDict, ctx: Context) -> None:
    """Every float of the config (data and model included) is finite."""
    for name, value in _numbers(config):
        if not math.isfinite(value):
            _bad(name, value, "a finite number")


def check_training(config: ml_collections.ConfigDict, ctx: Context) -> None:
    """Step counts, cadences, the ACT mode, microbatches, EMA rate, and one whole episode."""
    for name in ("total_steps", "global_batch_size", "log_every", "microbatches"):
        if int(config[name]) < 1:
            _bad(name, config[name], "an integer >= 1")
    for name in ("eval_every", "checkpoint_every"):
        if int(config[name]) < 0:
            _bad(name, config[name], "an integer >= 0 (0: only at the end)")
    if config.act_mode not in ("streaming", "episode"):
        _bad("act_mode", config.act_mode, "'streaming' or 'episode'")
    if config.global_batch_size % config.microbatches:
        _bad("microbatches", config.microbatches, f"a divisor of global_batch_size={config.global_batch_size}")
    if not 0.0 <= float(config.ema_rate) <= 1.0:
        _bad("ema_rate", config.ema_rate, "a number in [0, 1]")
    if config.act_mode == "episode" and config.total_steps < config.model.halt_max_steps:
        _bad("total_steps", config.total_steps, f"at least one episode of model.halt_max_steps="
             f"{config.model.halt_max_steps} optimizer steps (act_mode='episode')")


def check_optim(config: ml_collections.ConfigDict, ctx: Context) -> None:
    """Learning rates, decays and warmup >= 0, lr_min_ratio in [0, 1], betas in [0, 1)."""
    o = config.optim
    for name in ("lr", "puzzle_emb_lr", "weight_decay", "puzzle_emb_weight_decay", "lr_warmup_steps"):
        if float(o[name]) < 0:
            _bad(f"optim.{name}", o[name], "a number >= 0")
    if not 0.0 <= float(o.lr_min_ratio) <= 1.0:
        _bad("optim.lr_min_ratio", o.lr_min_ratio, "a number in [0, 1]")
    for name in ("beta1", "beta2"):
        if not 0.0 <= float(o[name]) < 1.0:
            _bad(f"optim.{name}", o[name], "a number in [0, 1)")


def check_eval(config: ml_collections.ConfigDict, ctx: Context) -> None:
    """Evaluation sizes and budget >= 0 (0: the default, `evaluate.resolve_settings`); the halting rule."""
    for name in ("halt_max_steps", "global_batch_size", "max_examples"):
        if int(config.eval[name]) < 0:
            _bad(f"eval.{name}", config.eval[name], "an integer >= 0 (0: the default)")
    if config.eval.get("halt", "budget") not in ("budget", "q_halt"):
        _bad("eval.halt", config.eval.halt, "'budget' (every row runs the budget) or 'q_halt' (early halting)")
    if config.eval.get("select", "q_halt") not in ("q_halt", "vote", "q_halt_vote"):
        _bad("eval.select", config.eval.select, "'q_halt', 'vote' or 'q_halt_vote'")
    if config.eval.get("samples", 1) != 1 or config.eval.get("noise_scale", 0.0) != 0:
        _bad("eval.samples", config.eval.get("samples"), "1 and eval.noise_scale=0 for training's evaluations "
             "(sampled trajectories are for launch.evaluate and launch.solve, which take them as overrides)")
    if config.eval.get("H_cycles", 0) != 0:
        _bad("eval.H_cycles", config.eval.H_cycles, "0 for training's evaluations (test-time H_cycles are for "
             "launch.evaluate, which takes them as an override)")


def check_mesh(config: ml_collections.ConfigDict, ctx: Context) -> None:
    """The mesh, the sharding rules and the batch sizes against data x fsdp (`sharding.validate`)."""
    sharding.validate(config, ctx.num_devices, ctx.process_count)


def check_checkpoint(config: ml_collections.ConfigDict, ctx: Context) -> None:
    """At least one checkpoint kept."""
    if int(config.checkpoint.keep) < 1:
        _bad("checkpoint.keep", config.checkpoint.keep, "an integer >= 1")


def check_nonfinite(config: ml_collections.ConfigDict, ctx: Context) -> None:
    """The non-finite policy ('stop' or 'skip') and its skip limit."""
    policy, max_skips = nonfinite_policy(config)
    if policy not in ("stop", "skip"):
        _bad("nonfinite.policy", policy, "'stop' or 'skip'")
    if max_skips < 1:
        _bad("nonfinite.max_consecutive_skips", max_skips, "an integer >= 1")


def check_data_sizes(config: ml_collections.ConfigDict, ctx: Context) -> None:
    """num_train >= 1 and num_test >= 0 where the task has them (the task checks the rest)."""
    for name in ("num_train", "num_test"):
        if name in config.data and int(config.data[name]) < (1 if name == "num_train" else 0):
            _bad(f"data.{name}", config.data[name], "a positive integer" if name == "num_train" else ">= 0")


def check_model(config: ml_collections.ConfigDict, ctx: Context) -> None:
    """`ModelConfig`'s own validation (num_puzzle_identifiers 0: sized from the data by `resolve`)."""
    model = config.model.to_dict()
    ModelConfig.from_dict(dict(model, num_puzzle_identifiers=max(1, int(model["num_puzzle_identifiers"]))))


CHECKS: list[Callable[[ml_collections.ConfigDict, Context], None]] = [
    check_schema, check_finite, check_training, check_optim, check_eval, check_mesh, check_checkpoint,
    check_nonfinite, check_data_sizes, check_model]


def validate(config: ml_collections.ConfigDict, num_devices: int, process_count: int | None = None) -> None:
    """Runs every check of `CHECKS` (module docstring) before anything is built or written.

    Args:
      config: a training config; num_devices: devices of the job; process_count: its processes
        (default: `jax.process_count()`).
    Raises:
      ValueError: naming the first invalid field: an unknown field, a value of the wrong type, a
        non-finite number, a value out of range, or an impossible combination (batch not divisible by
        the devices or microbatches, mlp_t with RoPE, a puzzle prefix too short for puzzle_emb_ndim,
        fewer steps than one episode, ...).
    """
    ctx = Context(num_devices=num_devices,
                  process_count=jax.process_count() if process_count is None else int(process_count))
    for c in CHECKS:
        c(config, ctx)


def resolve(config: ml_collections.ConfigDict, task: Any) -> tuple[ml_collections.ConfigDict, ModelConfig]:
    """Fills the fields that depend on the data and checks the model against it.

    Args:
      config: a validated config; task: its built data (`recur_jax.tasks.base.Task`).
    Returns:
      (a copy of the config with `model.num_puzzle_identifiers` 0 replaced by the data's, its ModelConfig).
    Raises:
      ValueError: `model.vocab_size`, `seq_len` or `num_puzzle_identifiers` differs from the data's.
    """
    config = ml_collections.ConfigDict(config.to_dict())
    if config.model.num_puzzle_identifiers == 0:  # 0: the size of the data's identifier map
        config.model.num_puzzle_identifiers = task.num_puzzle_identifiers
    for name, expected in (("vocab_size", task.vocab_size), ("seq_len", task.seq_len),
                           ("num_puzzle_identifiers", task.num_puzzle_identifiers)):
        if config.model[name] != expected:
            raise ValueError(f"config.model.{name}={config.model[name]} but the {task.name} data has {expected}")
    return config, ModelConfig.from_dict(config.model.to_dict())


__all__ = ["CHECKS", "TRAIN_FIELDS", "check", "resolve", "validate"]
