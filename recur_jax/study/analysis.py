"""Inside the recursion of a trained model: latent residuals per sweep, halting steps, test-time compute.

`latent_trajectory` re-runs evaluation (TRM.md 7.1: a fresh carry, no halting before the budget) one
recursion sweep at a time, so the latent residual ||z_{k+1} - z_k|| / ||z_k|| after every sweep k is
visible: the fixed-point behaviour behind HRM's deep-equilibrium argument (HRM paper section 2, "one-step
gradient approximation"). A sweep is one H update with its L_cycles L updates before it (TRM: n z-updates
then one y-update); a supervision step is H_cycles sweeps. It also records the supervision step at which
the model's own Q head would halt (q_halt > 0 for TRM's no_ACT_continue, q_halt > q_continue for HRM),
and the exact accuracy after every supervision step up to a budget that may exceed the training one.

The model is called with H_cycles = 1 per sweep; in the forward pass that is the same computation as one
call with H_cycles = T (the gradient modes only differ in the backward pass), so the numbers are those
of `evaluate.eval_batch` (tested).
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from recur_jax.core import act
from recur_jax.core.layers import Buffer
from recur_jax.core.losses import IGNORE_LABEL_ID
from recur_jax.core.models import ModelConfig, build_model
from recur_jax.io import paths

ANALYSIS_FILE = "analysis.json"


def sweeps_per_step(cfg: ModelConfig) -> int:
    """Recursion sweeps in one supervision step: H_cycles, or 1 for the non-recursive baseline."""
    return 1 if cfg.arch == "transformer" else int(cfg.H_cycles)


def sweep_graphdef(cfg: ModelConfig) -> nnx.GraphDef:
    """The graphdef of the same model with H_cycles = 1 (same parameters and buffers), built abstractly."""
    one = dataclasses.replace(cfg, H_cycles=1)
    abstract = nnx.eval_shape(lambda: build_model(one, rngs=nnx.Rngs(0)))
    return nnx.split(abstract, nnx.Param, Buffer)[0]


def latent_trajectory(graphdef_1: nnx.GraphDef, params: Any, buffers: Any, puzzle_table: jax.Array | None,
                      batch: act.Batch, num_steps: int, sweeps: int) -> dict[str, jax.Array]:
    """Evaluation of one batch, sweep by sweep (pure, jittable with num_steps and sweeps static).

    Args:
      graphdef_1: `sweep_graphdef(model_config)`; params, buffers: the trained model's (EMA) state.
      puzzle_table: [num_ids, ndim] float32 or None.
      batch: inputs/labels [B, S] int32, puzzle_identifiers [B] int32.
      num_steps: supervision steps N (may exceed the training halt_max_steps).
      sweeps: sweeps per supervision step T (`sweeps_per_step`).

    Returns:
      residual_H, residual_L: [N*T] float32, the mean over rows with labels of
        ||z_{k+1} - z_k||_F / ||z_k||_F for z_H and z_L after sweep k+1 (z_0 the initial latents).
      exact_by_step: [N] float32, rows with labels exactly correct after each supervision step.
      halt_step: [B] int32, first supervision step at which the Q head would halt (N if never).
      correct_at_halt: [B] bool, the row is exactly correct at its halt_step.
      has_labels: [B] bool.
    """
    model = nnx.merge(graphdef_1, params, buffers)
    cfg = model.config
    mask = batch["labels"] != IGNORE_LABEL_ID
    has_labels = jnp.any(mask, axis=-1)
    weight = has_labels.astype(jnp.float32)
    rows = None if puzzle_table is None else jnp.take(puzzle_table, batch["puzzle_identifiers"], axis=0)
    z_H, z_L = model.initial_latents(batch["inputs"].shape[0])
    # where the Q head would halt: the training rule without exploration, over the analysis budget
    q_policy = act.HaltingPolicy(halt_max_steps=num_steps, training=True, no_ACT_continue=cfg.no_ACT_continue)

    def rel(new, old):
        new, old = new.astype(jnp.float32), old.astype(jnp.float32)
        num = jnp.sqrt(jnp.sum(jnp.square(new - old), axis=(1, 2)))
        den = jnp.maximum(jnp.sqrt(jnp.sum(jnp.square(old), axis=(1, 2))), 1e-30)
        return jnp.sum(weight * num / den) / jnp.maximum(jnp.sum(weight), 1.0)

    def sweep(carry, _):
        z_H, z_L = carry
        out = model(z_H, z_L, batch["inputs"], rows)
        return (out.z_H, out.z_L), (rel(out.z_H, z_H), rel(out.z_L, z_L), out)

    def step(carry, step_index):
        carry, (r_H, r_L, outs) = jax.lax.scan(sweep, carry, None, length=sweeps)
        last = jax.tree_util.tree_map(lambda x: x[-1], outs)
        preds = jnp.argmax(last.logits, axis=-1)
        correct = jnp.all(jnp.where(mask, preds == batch["labels"], True), axis=-1) & has_labels
        steps = jnp.full(correct.shape, step_index + 1, jnp.int32)
        halted, _ = act.halting(steps, last.q_halt, last.q_continue, q_policy, rng=None)
        return carry, (r_H, r_L, correct, halted)

    _, (r_H, r_L, correct, halted) = jax.lax.scan(step, (z_H, z_L), jnp.arange(num_steps))
    # the first step that halts (the budget always halts the last one)
    halted = halted.at[-1].set(True)
    first = jnp.argmax(halted, axis=0)
    correct_at_halt = jnp.take_along_axis(correct, first[None], axis=0)[0]
    return {"residual_H": r_H.reshape(-1), "residual_L": r_L.reshape(-1),
            "exact_by_step": jnp.sum(correct, axis=1).astype(jnp.float32),
            "halt_step": (first + 1).astype(jnp.int32), "correct_at_halt": correct_at_halt, "has_labels": has_labels}


def analyze_run(workdir: str, max_examples: int = 256, halt_max_steps: int = 0, batch_size: int = 64,
                use_cache: bool = True) -> dict[str, Any]:
    """Loads the newest checkpoint of a run and analyses up to `max_examples` test examples.

    Args:
      workdir: a run directory (run.json, checkpoints/).
      max_examples: test examples analysed (the first ones of the test split).
      halt_max_steps: supervision-step budget; 0 takes twice the training halt_max_steps (test-time
        compute beyond training).
      batch_size: examples per jitted call.
      use_cache: reuse `workdir/analysis.json` when it was computed for the same checkpoint step and
        arguments.

    Returns:
      JSON-able dict: step (checkpoint), arch, H_cycles, L_cycles, train_halt_max_steps, halt_max_steps,
      sweeps_per_step, count, residual_H / residual_L (lists over N*T sweeps), exact_accuracy_by_step
      (list over N), halt_step_histogram (counts for steps 1..N), exact_accuracy_at_halt.

    Raises:
      FileNotFoundError: no run.json or checkpoint in `workdir` (from `checkpoint.load_for_inference`).
    """
    from recur_jax.run.checkpoint import load_for_inference
    from recur_jax.run.evaluate import resolve_settings
    from recur_jax.tasks.loader import eval_batches
    from recur_jax.tasks.registry import build_task

    if not paths.isdir(paths.join(workdir, "checkpoints")):
        raise FileNotFoundError(f"no checkpoints directory in {workdir}")
    run = load_for_inference(workdir)
    config, model_cfg, params, buffers, table, ckpt_step = (run.config, run.model_cfg, run.params, run.buffers,
                                                            run.puzzle_table, run.step)
    N = int(halt_max_steps) or 2 * resolve_settings(config, model_cfg).halt_max_steps
    key = {"step": int(ckpt_step), "max_examples": int(max_examples), "halt_max_steps": N}
    cache_path = paths.join(workdir, ANALYSIS_FILE)
    if use_cache and paths.isfile(cache_path):
        cached = json.loads(paths.read_bytes(cache_path))
        if all(cached.get(k) == v for k, v in key.items()):
            return cached
    T = sweeps_per_step(model_cfg)
    graphdef_1 = sweep_graphdef(model_cfg)
    fn = jax.jit(lambda p, b, t, batch: latent_trajectory(graphdef_1, p, b, t, batch, N, T))
    task = build_task(config.data, workdir)
    sums_H = np.zeros(N * T)
    sums_L = np.zeros(N * T)
    exact = np.zeros(N)
    hist = np.zeros(N, np.int64)
    count = 0
    correct_at_halt = 0
    for batch, _ in eval_batches(task.test, global_batch_size=batch_size, to_example=task.test_transform,
                                 max_examples=max_examples):
        out = jax.device_get(fn(params, buffers, table, batch))
        n = int(out["has_labels"].sum())
        if n == 0:
            continue
        count += n
        sums_H += np.asarray(out["residual_H"], np.float64) * n
        sums_L += np.asarray(out["residual_L"], np.float64) * n
        exact += np.asarray(out["exact_by_step"], np.float64)
        hs = np.asarray(out["halt_step"])[np.asarray(out["has_labels"])]
        hist += np.bincount(hs - 1, minlength=N)[:N]
        correct_at_halt += int(np.sum(np.asarray(out["correct_at_halt"])))
    c = max(count, 1)
    result = dict(key, arch=model_cfg.arch, H_cycles=int(model_cfg.H_cycles), L_cycles=int(model_cfg.L_cycles),
                  train_halt_max_steps=int(model_cfg.halt_max_steps), sweeps_per_step=T, count=count,
                  residual_H=(sums_H / c).tolist(), residual_L=(sums_L / c).tolist(),
                  exact_accuracy_by_step=(exact / c).tolist(), halt_step_histogram=hist.tolist(),
                  exact_accuracy_at_halt=correct_at_halt / c)
    paths.write_text_atomic(cache_path, json.dumps(result, indent=1))
    return result
