"""Evaluation: every test batch runs `halt_max_steps` supervision steps from a fresh carry.

As in the reference (TRM.md 7.1, HRM.md 3.4): halting is by the step budget only, so every row runs
exactly N steps and predictions are read after step N; metrics are those of the last step, over rows
that have at least one label. The budget may exceed the training one (test-time compute scaling).
We also report the exact accuracy after each supervision step 1..N (`exact_accuracy_by_step`).

A task may add its own metrics through an evaluator (`Task.make_evaluator`): an object with
`begin()`, `update(batch, preds, q_halt_logits)` (host numpy arrays of the whole global batch) and
`result() -> dict`, e.g. ARC voting and pass@K (`recur_jax.tasks.arc.evaluator`) or the maze path validity
(`recur_jax.tasks.maze.evaluator`); its keys join the result.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from typing import Any, Callable, Protocol

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from flax import nnx

from recur_jax.core import act
from recur_jax.core.losses import IGNORE_LABEL_ID


@dataclasses.dataclass(frozen=True)
class EvalSettings:
    """How a run is evaluated, resolved once (`resolve_settings`) and passed to every evaluator.

    Attributes:
      halt_max_steps: N, supervision steps per test batch (the budget; may exceed training's).
      global_batch_size: rows per evaluation batch.
      max_examples: evaluate at most this many test examples (None: all).
    """

    halt_max_steps: int
    global_batch_size: int
    max_examples: int | None

    def halting(self, model_cfg) -> act.HaltingPolicy:
        """The halting policy of this evaluation (`act.HaltingPolicy.for_evaluation`)."""
        return act.HaltingPolicy.for_evaluation(model_cfg, self.halt_max_steps)


def resolve_settings(config: ml_collections.ConfigDict, model_cfg, **overrides: Any) -> EvalSettings:
    """The one rule for the evaluation settings: `config.eval.X`, where 0 means the default.

    halt_max_steps 0: the model's `halt_max_steps` (training's budget); global_batch_size 0: the training
    `global_batch_size`; max_examples 0: the whole test set.

    Args:
      config: a training config (or a run's recorded one); model_cfg: its ModelConfig.
      overrides: values that replace the config's before the rule (e.g. `halt_max_steps=32`).
    Raises:
      ValueError: a negative value, or an override that names no evaluation setting.
    """
    values = {k: int(config.eval[k]) for k in ("halt_max_steps", "global_batch_size", "max_examples")}
    for k, v in overrides.items():
        if k not in values:
            raise ValueError(f"evaluation setting {k!r}: expected one of {sorted(values)}")
        values[k] = int(v)
    for k, v in values.items():
        if v < 0:
            raise ValueError(f"eval.{k}={v}: expected an integer >= 0 (0: the default)")
    return EvalSettings(halt_max_steps=values["halt_max_steps"] or int(model_cfg.halt_max_steps),
                        global_batch_size=values["global_batch_size"] or int(config.global_batch_size),
                        max_examples=values["max_examples"] or None)


class Evaluator(Protocol):
    """A task's extra evaluation (see the module docstring)."""

    def begin(self) -> None: ...

    def update(self, batch: dict[str, np.ndarray], preds: np.ndarray, q_halt_logits: np.ndarray) -> None: ...

    def result(self) -> dict[str, Any]: ...


def to_host(x: jax.Array) -> np.ndarray:
    """The whole (global) array on the host: directly when this process addresses all of it, else
    gathered from every process (`multihost_utils.process_allgather`, tiled)."""
    if getattr(x, "is_fully_addressable", True):
        return np.asarray(x)
    from jax.experimental import multihost_utils

    return np.asarray(multihost_utils.process_allgather(x, tiled=True))


SUM_KEYS = ("count", "accuracy", "exact_accuracy", "q_halt_accuracy", "steps", "lm_loss", "q_halt_loss")


def eval_batch(graphdef: nnx.GraphDef, params: Any, buffers: Any, puzzle_table: jax.Array | None,
               batch: act.Batch, policy: act.HaltingPolicy) -> dict[str, jax.Array]:
    """Runs `num_steps` evaluation ACT steps on one batch (a `lax.scan`), pure and jittable.

    Args:
      graphdef, params, buffers: the model split by `nnx.split(model, nnx.Param, Buffer)`
        (pass the EMA parameters to evaluate the EMA model).
      puzzle_table: [num_ids, ndim] float32 or None.
      batch: inputs/labels [B, S] int32, puzzle_identifiers [B] int32.
      policy: the evaluation halting policy (`EvalSettings.halting`): N = policy.halt_max_steps steps.
    Returns:
      dict with the last step's metric sums (SUM_KEYS, float32 scalars), `exact_by_step` [N] float32
      (rows exactly correct after each step, among rows with labels), `preds` [B, S] int32 (argmax
      after step N), `q_halt_logits` [N, B] float32 and `seq_correct` [B] bool.
    """
    num_steps = policy.halt_max_steps
    model = nnx.merge(graphdef, params, buffers)
    H_init, L_init = model.H_init[...], model.L_init[...]
    mask = batch["labels"] != IGNORE_LABEL_ID
    has_labels = jnp.any(mask, axis=-1)
    carry0 = act.initial_carry(model, batch)
    rows = None if puzzle_table is None else jnp.take(puzzle_table, batch["puzzle_identifiers"], axis=0)

    def step(carry, _):
        carry = act.reset_carry(carry, batch, H_init, L_init)
        _, (carry, outputs, metrics) = act.act_forward(model, carry, rows, policy)
        preds = jnp.argmax(outputs["logits"], axis=-1).astype(jnp.int32)
        correct = jnp.all(jnp.where(mask, preds == batch["labels"], True), axis=-1)
        exact = jnp.sum(correct & has_labels).astype(jnp.float32)
        return carry, (metrics, exact, preds, outputs["q_halt_logits"], correct)

    _, (metrics, exact, preds, q_halt, correct) = jax.lax.scan(step, carry0, None, length=num_steps)
    out = {k: metrics[k][-1] for k in SUM_KEYS}
    out.update(exact_by_step=exact, preds=preds[-1], q_halt_logits=q_halt, seq_correct=correct[-1])
    return out


def jit_eval_step(graphdef: nnx.GraphDef, model_cfg, settings: EvalSettings, compute_shardings: Any = None,
                  in_shardings: Any = None, out_shardings: Any = None) -> Callable[..., dict[str, jax.Array]]:
    """`eval_batch` jitted with the graph and policy bound: (params, buffers, puzzle_table, batch) -> dict.

    Args:
      compute_shardings: the parameters are constrained to these inside (FSDP all-gather), or None.
      in_shardings, out_shardings: as `jax.jit` (None: placement by the inputs).
    """
    policy = settings.halting(model_cfg)

    def step(params, buffers, table, batch):
        if compute_shardings is not None:
            params = jax.lax.with_sharding_constraint(params, compute_shardings)
        return eval_batch(graphdef, params, buffers, table, batch, policy)

    kw = {} if in_shardings is None else {"in_shardings": in_shardings, "out_shardings": out_shardings}
    return jax.jit(step, **kw)


def evaluate(eval_fn: Callable[..., dict[str, jax.Array]], params: Any, buffers: Any,
             puzzle_table: jax.Array | None, batches: Iterable[tuple[dict, int]],
             put_batch: Callable[[dict], act.Batch] = lambda b: b,
             evaluator: Evaluator | None = None) -> dict[str, Any]:
    """Runs `eval_fn` (a jitted `eval_batch` with graphdef and num_steps bound) over all batches.

    Args:
      eval_fn: (params, buffers, puzzle_table, batch) -> the dict of `eval_batch`.
      batches: yields (local batch of numpy arrays, real rows in the global batch).
      put_batch: places a local numpy batch on the devices (sharding).
      evaluator: a task evaluator; it sees every global batch (inputs, labels, puzzle_identifiers),
        the last step's predictions [B, S] and q_halt logits [B], and its `result()` keys are added.
    Returns:
      {"count": examples with labels, "exact_accuracy", "accuracy", "q_halt_accuracy", "steps" (mean),
       "lm_loss" (mean per example), "exact_accuracy_by_step": [N] list}, floats, plus the evaluator's keys.
    """
    sums: dict[str, float] = {k: 0.0 for k in SUM_KEYS}
    by_step = None
    if evaluator is not None:
        evaluator.begin()
    for batch, _ in batches:
        device_batch = put_batch(batch)
        out = eval_fn(params, buffers, puzzle_table, device_batch)
        if evaluator is not None:
            evaluator.update({k: to_host(v) for k, v in device_batch.items()}, to_host(out["preds"]),
                             to_host(out["q_halt_logits"][-1]))
        for k in SUM_KEYS:
            sums[k] += float(out[k])
        e = np.asarray(out["exact_by_step"], np.float64)
        by_step = e if by_step is None else by_step + e
    n = max(sums["count"], 1.0)
    result = {"count": int(sums["count"])}
    for k in ("exact_accuracy", "accuracy", "q_halt_accuracy", "steps", "lm_loss", "q_halt_loss"):
        result[k] = sums[k] / n
    result["exact_accuracy_by_step"] = [] if by_step is None else [float(x) / n for x in by_step]
    if evaluator is not None:
        result.update(evaluator.result())
    return result
