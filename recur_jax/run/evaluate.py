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

from collections.abc import Iterable
from typing import Any, Callable, Protocol

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from recur_jax.core import act
from recur_jax.core.losses import IGNORE_LABEL_ID


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
               batch: act.Batch, num_steps: int) -> dict[str, jax.Array]:
    """Runs `num_steps` evaluation ACT steps on one batch (a `lax.scan`), pure and jittable.

    Args:
      graphdef, params, buffers: the model split by `nnx.split(model, nnx.Param, Buffer)`
        (pass the EMA parameters to evaluate the EMA model).
      puzzle_table: [num_ids, ndim] float32 or None.
      batch: inputs/labels [B, S] int32, puzzle_identifiers [B] int32.
      num_steps: the supervision-step budget N >= 1.
    Returns:
      dict with the last step's metric sums (SUM_KEYS, float32 scalars), `exact_by_step` [N] float32
      (rows exactly correct after each step, among rows with labels), `preds` [B, S] int32 (argmax
      after step N), `q_halt_logits` [N, B] float32 and `seq_correct` [B] bool.
    """
    if num_steps < 1:
        raise ValueError(f"eval halt_max_steps must be >= 1, got {num_steps}")
    model = nnx.merge(graphdef, params, buffers)
    H_init, L_init = model.H_init[...], model.L_init[...]
    mask = batch["labels"] != IGNORE_LABEL_ID
    has_labels = jnp.any(mask, axis=-1)
    carry0 = act.initial_carry(model, batch)
    rows = None if puzzle_table is None else jnp.take(puzzle_table, batch["puzzle_identifiers"], axis=0)

    def step(carry, _):
        carry = act.reset_carry(carry, batch, H_init, L_init)
        _, (carry, outputs, metrics) = act.act_forward(model, carry, rows, training=False, halt_max_steps=num_steps)
        preds = jnp.argmax(outputs["logits"], axis=-1).astype(jnp.int32)
        correct = jnp.all(jnp.where(mask, preds == batch["labels"], True), axis=-1)
        exact = jnp.sum(correct & has_labels).astype(jnp.float32)
        return carry, (metrics, exact, preds, outputs["q_halt_logits"], correct)

    _, (metrics, exact, preds, q_halt, correct) = jax.lax.scan(step, carry0, None, length=num_steps)
    out = {k: metrics[k][-1] for k in SUM_KEYS}
    out.update(exact_by_step=exact, preds=preds[-1], q_halt_logits=q_halt, seq_correct=correct[-1])
    return out


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
