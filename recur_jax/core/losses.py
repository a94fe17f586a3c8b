"""Losses and metrics of the ACT training step (the reference's `models/losses.py`, TRM.md 3.3).

Per row b of the batch, with labels in which IGNORE_LABEL_ID (-100) marks unsupervised positions:

    lm_loss         = sum_b  (sum_t CE(logits[b, t], label[b, t])) / max(n_b, 1)
    q_halt_loss     = sum_b  BCE(q_halt_b, seq_correct_b)
    q_continue_loss = sum_b  BCE(q_continue_b, target_q_continue_b)      (HRM only)
    loss            = lm_loss + 0.5 * (q_halt_loss + q_continue_loss)

The loss is summed over the batch; the training step divides it by the *global* batch size.
Metrics are sums over the rows that halted at this step and have at least one label, exactly the
reference's (`count`, `accuracy`, `exact_accuracy`, `q_halt_accuracy`, `steps`), plus the loss terms;
divide by `count` to report them.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

from recur_jax.core.layers import accum_dtype

IGNORE_LABEL_ID = -100


def _stablemax_log_s(x: jax.Array) -> jax.Array:
    """log s(x), s(x) = x + 1 for x >= 0 and 1 / (1 - x) for x < 0, finite with finite gradients.

    Each branch only ever sees arguments from its own half-line, so neither the forward value nor the
    gradient of the branch `where` does not select can overflow (TRM.md 3.4: the naive float32 form
    1 / (1 - x + 1e-30) evaluated at x = 1 gives 1e30 whose square overflows in the backward pass).
    """
    nonneg = x >= 0
    x_pos = jnp.where(nonneg, x, 0.0)
    x_neg = jnp.where(nonneg, 0.0, x)
    return jnp.where(nonneg, jnp.log1p(x_pos), -jnp.log1p(-x_neg))


def stablemax_cross_entropy(logits: jax.Array, labels: jax.Array, valid_mask: jax.Array | None = None) -> jax.Array:
    """Stablemax cross-entropy (Prieto et al. 2025; reference `stablemax_cross_entropy`), float32.

    p_i = s(x_i) / sum_j s(x_j); CE = -log p_label. The reference computes this in float64; this
    log-space float32 form agrees to ~1e-7 relative and stays finite for any finite logits.

    Args:
      logits: [..., V] any float dtype (cast to float32; float64 stays float64, `layers.accum_dtype`).
      labels: [...] int32; positions where `valid_mask` is False (or label == -100) may hold anything.
      valid_mask: [...] bool, defaults to labels != IGNORE_LABEL_ID.
    Returns:
      [...] float32 per-position loss, 0 where not valid.
    """
    if valid_mask is None:
        valid_mask = labels != IGNORE_LABEL_ID
    log_s = _stablemax_log_s(logits.astype(accum_dtype(logits.dtype)))
    safe_labels = jnp.where(valid_mask, labels, 0)
    log_s_label = jnp.take_along_axis(log_s, safe_labels[..., None], axis=-1)[..., 0]
    log_norm = jax.nn.logsumexp(log_s, axis=-1)
    return jnp.where(valid_mask, log_norm - log_s_label, 0.0)


def softmax_cross_entropy(logits: jax.Array, labels: jax.Array, valid_mask: jax.Array | None = None) -> jax.Array:
    """Softmax cross-entropy in float32 (optax), 0 where not valid. Shapes as `stablemax_cross_entropy`."""
    if valid_mask is None:
        valid_mask = labels != IGNORE_LABEL_ID
    safe_labels = jnp.where(valid_mask, labels, 0)
    ce = optax.softmax_cross_entropy_with_integer_labels(logits.astype(accum_dtype(logits.dtype)), safe_labels)
    return jnp.where(valid_mask, ce, 0.0)


LOSS_FNS = {"stablemax_cross_entropy": stablemax_cross_entropy, "softmax_cross_entropy": softmax_cross_entropy}


def _correctness(logits: jax.Array, labels: jax.Array):
    """(mask [B, S] bool, counts [B] int, divisor [B] float32 = max(counts, 1), is_correct [B, S] bool,
    seq_correct [B] bool) of the argmax predictions against labels with -100 = ignore."""
    mask = labels != IGNORE_LABEL_ID
    counts = jnp.sum(mask, axis=-1)
    divisor = jnp.maximum(counts, 1).astype(jnp.float32)
    is_correct = mask & (jnp.argmax(logits, axis=-1) == labels)
    seq_correct = jnp.sum(is_correct, axis=-1) == counts
    return mask, counts, divisor, is_correct, seq_correct


def act_loss(
    logits: jax.Array,
    labels: jax.Array,
    q_halt: jax.Array,
    q_continue: jax.Array,
    halted: jax.Array,
    steps: jax.Array,
    target_q_continue: jax.Array | None = None,
    loss_type: str = "stablemax_cross_entropy",
    row_weight: jax.Array | None = None,
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """The ACT loss and metrics of one step (reference `ACTLossHead.forward`).

    Args:
      logits: [B, S, V] compute dtype.
      labels: [B, S] int32 with -100 = ignore.
      q_halt, q_continue: [B] float32 Q-head logits.
      halted: [B] bool, the *new* carry's halted flags (rows halting at this step).
      steps: [B] int32, the new carry's step counters.
      target_q_continue: [B] float32 in [0, 1], HRM's bootstrapped target, or None (TRM: no loss).
      loss_type: "stablemax_cross_entropy" or "softmax_cross_entropy".
      row_weight: [B] float32 weights of each row's loss terms (None = 1); rows of weight 0 are also
        left out of the metrics (episode mode: rows that halted earlier in the episode).
    Returns:
      (loss, metrics): loss a float32 scalar summed over the batch (not divided by the batch size);
      metrics a dict of float32 scalar sums: count, accuracy, exact_accuracy, q_halt_accuracy, steps,
      lm_loss, q_halt_loss and, with a target, q_continue_loss.
    Raises:
      ValueError: for an unknown loss_type.
    """
    if loss_type not in LOSS_FNS:
        raise ValueError(f"loss_type={loss_type!r}: expected one of {sorted(LOSS_FNS)}")
    mask, counts, divisor, is_correct, seq_correct = _correctness(logits, labels)
    valid = halted & (counts > 0)
    weight = jnp.ones(counts.shape, jnp.float32) if row_weight is None else row_weight.astype(jnp.float32)
    if row_weight is not None:
        valid = valid & (weight > 0)
    f32 = jnp.float32
    metrics = {
        "count": jnp.sum(valid).astype(f32),
        "accuracy": jnp.sum(jnp.where(valid, jnp.sum(is_correct, axis=-1) / divisor, 0.0)).astype(f32),
        "exact_accuracy": jnp.sum(valid & seq_correct).astype(f32),
        "q_halt_accuracy": jnp.sum(valid & ((q_halt >= 0) == seq_correct)).astype(f32),
        "steps": jnp.sum(jnp.where(valid, steps, 0)).astype(f32),
    }

    terms = loss_terms(logits, labels, q_halt, q_continue, target_q_continue, loss_type, row_weight)
    for k, v in terms.items():
        metrics[k] = jax.lax.stop_gradient(v)
    q_terms = terms["q_halt_loss"] + terms.get("q_continue_loss", 0.0)
    return terms["lm_loss"] + 0.5 * q_terms, metrics


def loss_terms(
    logits: jax.Array,
    labels: jax.Array,
    q_halt: jax.Array,
    q_continue: jax.Array,
    target_q_continue: jax.Array | None = None,
    loss_type: str = "stablemax_cross_entropy",
    row_weight: jax.Array | None = None,
) -> dict[str, jax.Array]:
    """The differentiable terms of the ACT loss (module docstring), each summed over the batch.

    Args:
      as `act_loss` (halting does not enter the loss terms, only the metrics).
    Returns:
      {"lm_loss", "q_halt_loss"[, "q_continue_loss" when a target is given]}: float32 scalars (float64
      for float64 logits). The halting target `seq_correct` comes from the argmax (no gradient).
    Raises:
      KeyError: for an unknown loss_type (`act_loss` checks it first and names the choices).
    """
    mask, counts, divisor, _, seq_correct = _correctness(logits, labels)
    weight = jnp.ones(counts.shape, jnp.float32) if row_weight is None else row_weight.astype(jnp.float32)
    ce = LOSS_FNS[loss_type](logits, labels, mask)
    terms = {"lm_loss": jnp.sum(weight * jnp.sum(ce, axis=-1) / divisor),
             "q_halt_loss": jnp.sum(weight * optax.sigmoid_binary_cross_entropy(q_halt, seq_correct.astype(jnp.float32)))}
    if target_q_continue is not None:
        terms["q_continue_loss"] = jnp.sum(weight * optax.sigmoid_binary_cross_entropy(q_continue, target_q_continue))
    return terms
