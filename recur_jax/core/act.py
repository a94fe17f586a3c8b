"""Adaptive computation time with deep supervision: the streaming ACT carry of the official code.

One call = one ACT (supervision) step = one optimizer step (TRM.md 3.2, HRM.md 3.2):

  1. rows whose `halted` flag is set are reset to H_init/L_init, their step counter to 0, and take
     the new batch's row; rows still running keep their latents and their old data (the new batch's
     example at that row index is dropped, as in the reference); with `model.warmup_max_steps` = R > 0
     (ours, progressive loss), the reset rows then take r ~ U{0..R} detached steps without loss (`warm_up`);
  2. the inner model runs one step (recursion + heads);
  3. without gradient: steps += 1; halting. Training: halt at halt_max_steps, or when q_halt > 0
     (TRM, `no_ACT_continue=True`) / q_halt > q_continue (HRM); exploration: with probability p a
     row draws a minimum of U{2..halt_max_steps} steps, redrawn at every step, which can only delay
     a halt. Evaluation halts only at halt_max_steps (which may exceed the training value).
     HRM's Q target: a second pass of the inner model from the new carry on the same data without
     gradient, target_q_continue = sigmoid(is_last ? q_halt' : max(q_halt', q_continue')).

The carry lives across optimizer steps for the whole run; evaluation starts a fresh one per batch.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import flax.struct
import jax
import jax.numpy as jnp
from flax import nnx

from recur_jax.core.losses import act_loss
from recur_jax.core.models.common import RecursiveReasoner
from recur_jax.core.models.config import ModelConfig

Batch = dict[str, jax.Array]  # inputs [B, S] int32, labels [B, S] int32, puzzle_identifiers [B] int32
BATCH_KEYS = ("inputs", "labels", "puzzle_identifiers")


@flax.struct.dataclass
class ACTCarry:
    """The persistent ACT state.

    Attributes:
      z_H, z_L: [B, P+S, D] compute dtype, detached latents (z_H = the paper's y, z_L = z in TRM).
      steps: [B] int32, supervision steps taken by each row's current example.
      halted: [B] bool, rows that halted at the last step (replaced at the next call).
      current_data: the examples the rows work on: inputs [B, S], labels [B, S], puzzle_identifiers [B], int32.
    """

    z_H: jax.Array
    z_L: jax.Array
    steps: jax.Array
    halted: jax.Array
    current_data: Batch


def initial_carry(model: RecursiveReasoner, batch: Batch) -> ACTCarry:
    """A carry whose rows are all halted, so the first call resets every row (reference `initial_carry`).

    Args:
      model: supplies the latent shape [B, P+S, D] and compute dtype.
      batch: a batch with the keys of BATCH_KEYS (only shapes and dtypes are used).
    """
    c = model.config
    B = batch["inputs"].shape[0]
    shape = (B, c.total_len, c.hidden_size)
    return ACTCarry(z_H=jnp.zeros(shape, c.dtype), z_L=jnp.zeros(shape, c.dtype), steps=jnp.zeros((B,), jnp.int32), halted=jnp.ones((B,), bool),
                    current_data={k: jnp.zeros_like(batch[k]) for k in BATCH_KEYS})


def _rows(mask: jax.Array, x: jax.Array) -> jax.Array:
    return mask.reshape(mask.shape + (1,) * (x.ndim - 1))


def reset_carry(carry: ACTCarry, batch: Batch, H_init: jax.Array, L_init: jax.Array) -> ACTCarry:
    """Step 1 of the ACT step: halted rows restart from H_init/L_init with the new batch's row.

    Args:
      carry: the carry after the previous step.
      batch: the batch offered at this step (same shapes as carry.current_data).
      H_init, L_init: [D] compute dtype buffers.
    Returns:
      The carry the inner model runs on (`halted` unchanged; steps 0 on reset rows).
    Raises:
      KeyError: naming a missing batch key.
    """
    h = carry.halted
    missing = [k for k in BATCH_KEYS if k not in batch]
    if missing:
        raise KeyError(f"batch is missing key(s) {missing}; expected {list(BATCH_KEYS)}")
    return ACTCarry(
        z_H=jnp.where(_rows(h, carry.z_H), H_init.astype(carry.z_H.dtype), carry.z_H),
        z_L=jnp.where(_rows(h, carry.z_L), L_init.astype(carry.z_L.dtype), carry.z_L),
        steps=jnp.where(h, 0, carry.steps),
        halted=h,
        current_data={k: jnp.where(_rows(h, carry.current_data[k]), batch[k], carry.current_data[k])
                      for k in BATCH_KEYS},
    )


@dataclasses.dataclass(frozen=True)
class HaltingPolicy:
    """How the rows of an ACT step halt: resolved once, passed explicitly to `act_forward`.

    Attributes:
      halt_max_steps: N, the supervision-step budget (evaluation may use more than training).
      training: training halting (TRM.md 3.2, HRM.md 3.2): the Q head may halt a row early, exploration
        may delay it, HRM trains q_continue on its bootstrapped target. False: the reference's
        evaluation, every row runs exactly N steps.
      no_ACT_continue: True: halt when q_halt > 0 (TRM); False: when q_halt > q_continue (HRM).
      exploration_prob: probability of drawing a minimum halting step U{2..N} (per row, every step).
      early_halt: whether training halting may stop a row before N (False: `model.halt_in_training`
        off, every row runs N steps; the Q head is trained all the same).
      warmup_max_steps: R, training only: rows that start a new example first take r ~ U{0..R} ACT steps
        without gradient or loss (progressive loss, `model.warmup_max_steps`; `warm_up`). 0: off.
    """

    halt_max_steps: int
    training: bool
    no_ACT_continue: bool
    exploration_prob: float = 0.0
    early_halt: bool = True
    warmup_max_steps: int = 0

    def __post_init__(self):
        if int(self.halt_max_steps) < 1:
            raise ValueError(f"halt_max_steps={self.halt_max_steps}: expected an integer >= 1")
        if int(self.warmup_max_steps) < 0 or (self.warmup_max_steps and not self.training):
            raise ValueError(f"warmup_max_steps={self.warmup_max_steps}: expected an integer >= 0, and 0 "
                             "outside training")

    @classmethod
    def for_training(cls, model_cfg: ModelConfig) -> "HaltingPolicy":
        """The model's training policy: its halt_max_steps, halting rule and exploration."""
        return cls(halt_max_steps=model_cfg.halt_max_steps, training=True, no_ACT_continue=model_cfg.no_ACT_continue,
                   exploration_prob=model_cfg.halt_exploration_prob, early_halt=model_cfg.halt_in_training,
                   warmup_max_steps=model_cfg.warmup_max_steps)

    @classmethod
    def for_evaluation(cls, model_cfg: ModelConfig, halt_max_steps: int) -> "HaltingPolicy":
        """The reference's evaluation: every row runs `halt_max_steps` steps (which may exceed training's)."""
        return cls(halt_max_steps=int(halt_max_steps), training=False, no_ACT_continue=model_cfg.no_ACT_continue)


def halting(steps: jax.Array, q_halt: jax.Array, q_continue: jax.Array, policy: HaltingPolicy,
            rng: jax.Array | None) -> tuple[jax.Array, jax.Array]:
    """Step 3: the halting decision for rows that have just taken step `steps` (already incremented).

    Args:
      steps: [B] int32 new step counts; q_halt, q_continue: [B] float32.
      policy: the halting policy (budget, rule, exploration, training or evaluation).
      rng: key for exploration (needed when training and exploration_prob > 0).
    Returns:
      (halted [B] bool, is_last [B] bool).
    Raises:
      ValueError: exploration without an rng key.
    """
    N = policy.halt_max_steps
    is_last = steps >= N
    halted = is_last
    if policy.training and N > 1 and policy.early_halt:
        halted = halted | ((q_halt > 0) if policy.no_ACT_continue else (q_halt > q_continue))
        if policy.exploration_prob > 0:
            if rng is None:
                raise ValueError("halting: an rng key is required when training with exploration_prob > 0")
            k_explore, k_min = jax.random.split(rng)
            explore = jax.random.uniform(k_explore, steps.shape) < policy.exploration_prob
            min_halt = jnp.where(explore, jax.random.randint(k_min, steps.shape, 2, N + 1), 0)
            halted = halted & (steps >= min_halt)
    return halted, is_last


def act_forward(model: RecursiveReasoner, carry: ACTCarry, puzzle_emb_rows: jax.Array | None,
                policy: HaltingPolicy, *, rng: jax.Array | None = None,
                row_weight: jax.Array | None = None) -> tuple[jax.Array, tuple[ACTCarry, dict[str, jax.Array], dict[str, jax.Array]]]:
    """Steps 2-3 plus the loss, on a carry already passed through `reset_carry`; differentiable.

    Args:
      model: the merged model (its parameters are what gradients are taken against).
      carry: the reset carry (output of `reset_carry`).
      puzzle_emb_rows: [B, puzzle_emb_ndim] float32 rows of the puzzle table for
        carry.current_data["puzzle_identifiers"] (differentiable; None without a puzzle embedding).
      policy: how rows halt (`HaltingPolicy.for_training` / `for_evaluation`).
      rng: exploration key.
      row_weight: [B] float32 loss weight per row (episode mode), None = 1.
    Returns:
      (loss, (new_carry, outputs, metrics)): loss float32 scalar summed over the batch; outputs has
      logits [B, S, V], q_halt_logits [B], q_continue_logits [B] (+ target_q_continue [B] for HRM in
      training); metrics as `losses.act_loss`.
    """
    c = model.config
    data = carry.current_data
    out = model(carry.z_H, carry.z_L, data["inputs"], puzzle_emb_rows)
    steps = carry.steps + 1
    halted, is_last = halting(steps, out.q_halt, out.q_continue, policy, rng)
    outputs = {"logits": out.logits, "q_halt_logits": out.q_halt, "q_continue_logits": out.q_continue}
    target = None
    if policy.training and not policy.no_ACT_continue and policy.halt_max_steps > 1:
        graphdef, state = nnx.split(model)
        frozen = nnx.merge(graphdef, jax.lax.stop_gradient(state))
        rows = None if puzzle_emb_rows is None else jax.lax.stop_gradient(puzzle_emb_rows)
        nxt = frozen(out.z_H, out.z_L, data["inputs"], rows)
        target = jax.nn.sigmoid(jnp.where(is_last, nxt.q_halt, jnp.maximum(nxt.q_halt, nxt.q_continue)))
        outputs["target_q_continue"] = target
    loss, metrics = act_loss(out.logits, data["labels"], out.q_halt, out.q_continue, halted, steps,
                             target, c.loss_type, row_weight)
    new_carry = ACTCarry(z_H=out.z_H, z_L=out.z_L, steps=steps, halted=halted, current_data=data)
    return loss, (new_carry, outputs, metrics)


PURPOSE_WARMUP = 7  # fold_in id of the warm-up draw within a step's key (the exploration draw uses the key itself)


def warmup_draw(rng: jax.Array, warmup_max_steps: int) -> jax.Array:
    """r ~ U{0..warmup_max_steps}: int32 scalar, the warm-up steps of the rows reset at this step (one
    draw per batch or microbatch, from fold_in(rng, PURPOSE_WARMUP), so exploration's draws are unchanged)."""
    return jax.random.randint(jax.random.fold_in(rng, PURPOSE_WARMUP), (), 0, int(warmup_max_steps) + 1)


def warm_up(graphdef: nnx.GraphDef, params: Any, buffers: Any, carry: ACTCarry, puzzle_emb_rows: jax.Array | None,
            num_steps: jax.Array) -> ACTCarry:
    """Progressive loss's detached warm-up (Bansal et al. 2022, arXiv 2202.05826 sec. 3.2; ours for TRM/HRM):
    the rows reset at this step (`carry.halted`) take `num_steps` inner-model steps (each a full ACT step's
    recursion, H_cycles sweeps) with no gradient and no loss; other rows are unchanged.

    A `lax.while_loop` that runs no step when no row was reset (streaming training with
    `halt_in_training=False` resets all rows together, every halt_max_steps steps).

    Args:
      graphdef, params, buffers: the model split by `nnx.split(model, nnx.Param, Buffer)`.
      carry: the carry after `reset_carry` (z_H, z_L [B, P+S, D] compute dtype; `halted` [B] bool marks
        the reset rows).
      puzzle_emb_rows: [B, puzzle_emb_ndim] float32 puzzle-table rows, or None.
      num_steps: int32 scalar r >= 0 (`warmup_draw`).
    Returns:
      The carry with the reset rows' z_H/z_L advanced r steps (detached); `steps` stays 0 on them, so the
      supervised steps that follow are still halt_max_steps.
    """
    params, buffers, rows = jax.lax.stop_gradient((params, buffers, puzzle_emb_rows))
    reset = carry.halted
    go = jnp.any(reset)
    inputs = carry.current_data["inputs"]

    def body(state):
        i, z_H, z_L = state
        out = nnx.merge(graphdef, params, buffers)(z_H, z_L, inputs, rows)
        return (i + 1, jnp.where(_rows(reset, z_H), out.z_H.astype(z_H.dtype), z_H),
                jnp.where(_rows(reset, z_L), out.z_L.astype(z_L.dtype), z_L))

    _, z_H, z_L = jax.lax.while_loop(lambda s: go & (s[0] < num_steps), body,
                                     (jnp.zeros((), jnp.int32), carry.z_H, carry.z_L))
    return carry.replace(z_H=jax.lax.stop_gradient(z_H), z_L=jax.lax.stop_gradient(z_L))


def act_train_grads(graphdef: nnx.GraphDef, params: Any, buffers: Any, puzzle_table: jax.Array | None,
                    carry: ACTCarry, batch: Batch, rng: jax.Array | None, policy: HaltingPolicy,
                    loss_scale: float = 1.0, row_weight: jax.Array | None = None) -> tuple[jax.Array, ACTCarry, dict, dict, Any, tuple[jax.Array, jax.Array] | None]:
    """One training ACT step up to the gradients (the optimizers are applied by the caller).

    Args:
      graphdef, params, buffers: the model split by `nnx.split(model, nnx.Param, Buffer)`.
      puzzle_table: [num_puzzle_identifiers, puzzle_emb_ndim] float32, or None.
      carry: the carry from the previous step; batch: the new batch.
      rng: exploration key.
      policy: the training halting policy (`HaltingPolicy.for_training(model_cfg)`).
      loss_scale: the loss is multiplied by this before differentiation (1 / global batch size in
        training; 1.0 reproduces the reference's returned loss, as the fixtures store).
      row_weight: [B] float32 per-row loss weight (episode mode), None = 1.
    Returns:
      (loss, new_carry, outputs, metrics, grads, puzzle_grads): loss is the unscaled batch sum;
      grads has the structure of `params`; puzzle_grads is (ids [B] int32, grads [B, ndim] float32)
      of the gathered rows (sum duplicates before a dense update), or None.
    Raises:
      ValueError: a warm-up (`policy.warmup_max_steps > 0`) without an rng key.
    """
    model0 = nnx.merge(graphdef, params, buffers)
    carry = reset_carry(carry, batch, model0.H_init[...], model0.L_init[...])
    ids = carry.current_data["puzzle_identifiers"]
    rows = None if puzzle_table is None else jnp.take(puzzle_table, ids, axis=0)
    if policy.training and policy.warmup_max_steps > 0:
        if rng is None:
            raise ValueError("act_train_grads: an rng key is required with warmup_max_steps > 0")
        carry = warm_up(graphdef, params, buffers, carry, rows, warmup_draw(rng, policy.warmup_max_steps))

    def loss_fn(p, r):
        loss, aux = act_forward(nnx.merge(graphdef, p, buffers), carry, r, policy, rng=rng, row_weight=row_weight)
        return loss * loss_scale, (loss, aux)

    (_, (loss, (new_carry, outputs, metrics))), (grads, row_grads) = jax.value_and_grad(
        loss_fn, argnums=(0, 1), has_aux=True)(params, rows)
    puzzle_grads = None if rows is None else (ids, row_grads)
    return loss, new_carry, outputs, metrics, grads, puzzle_grads
