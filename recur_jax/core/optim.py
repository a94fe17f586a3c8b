"""Optimisers of HRM/TRM: AdamATan2, the warmup/cosine LR schedule, sparse SignSGD and parameter EMA.

Everything here follows the official PyTorch code as described in the specs:

- `adam_atan2`: PyPI `adam-atan2` (imoneoi, HEAD 42a1aeb), TRM.md 4.1 / HRM.md 4.1. Applied to all
  model parameters, one group, decoupled decay on every leaf, no epsilon.
- `warmup_cosine_schedule`: `cosine_schedule_with_warmup_lr_lambda` of `pretrain.py`, TRM.md 4.4 /
  HRM.md 4.3, evaluated at the 1-based step t (the reference increments its step before use).
- `sparse_signsgd_update` / `sparse_signsgd`: `CastedSparseEmbeddingSignSGD_Distributed` of
  `models/sparse_embedding.py`, TRM.md 4.2 / HRM.md 4.2. The puzzle-embedding table is a buffer
  outside the optax parameter tree; only the rows in the (global) batch are updated and decayed.
- `ema_update`: `models/ema.py`, TRM.md 4.6. No bias correction, no warmup; the puzzle table (and the
  H_init/L_init buffers) are excluded: the caller passes only the model's trainable parameters.

All maths runs in float32 (the reference's CUDA opmath type), or in float64 for float64 parameters under
JAX's x64 mode (the rounding-floor runs of `launch.parity --x64`; `layers.accum_dtype`), where the
schedules are evaluated in float64 too. Both step counters (`AdamATan2State.count`,
`SignSGDState.count`) are int32 and hold the 1-based index t of the last update applied (0 after init);
a schedule is evaluated at that t, so `scheduled_lr(schedule, state.count)` is the LR the last update used.
"""

from __future__ import annotations

import math
from typing import Any, Callable, NamedTuple, Union

import jax
import jax.numpy as jnp
import numpy as np
import optax

from recur_jax.core.layers import accum_dtype

ScalarOrSchedule = Union[float, jax.Array, optax.Schedule]

__all__ = [
    "AdamATan2State",
    "adam_atan2",
    "scheduled_lr",
    "warmup_cosine_schedule",
    "sparse_signsgd_update",
    "SignSGDState",
    "SparseSignSGD",
    "sparse_signsgd",
    "ema_update",
    "schedule_dtype",
]


def scheduled_lr(learning_rate: ScalarOrSchedule, count: jax.Array | int) -> jax.Array:
    """The learning rate at step `count`, for a constant or a schedule (for the update and for logging).

    Args:
      learning_rate: a float (constant LR) or an `optax.Schedule` mapping a step to an LR.
      count: the 1-based step t (int32 scalar, e.g. `AdamATan2State.count` after an update, which is the
        step that update used).

    Returns:
      float32 scalar array (float64 under JAX's x64 mode, `schedule_dtype`): `learning_rate(count)` for a
      schedule, else `learning_rate`.
    """
    if callable(learning_rate):
        return jnp.asarray(learning_rate(count), dtype=schedule_dtype())
    return jnp.asarray(learning_rate, dtype=schedule_dtype())


def schedule_dtype() -> jnp.dtype:
    """float32, or float64 under JAX's x64 mode (the rounding-floor runs): the dtype of LRs and step scalars."""
    return jax.dtypes.canonicalize_dtype(jnp.float64)


# --------------------------------------------------------------------------------------------------
# AdamATan2
# --------------------------------------------------------------------------------------------------


class AdamATan2State(NamedTuple):
    """State of `adam_atan2`.

    Attributes:
      count: int32 scalar, the number of updates applied so far, i.e. the 1-based step t of the last one
        (the reference keeps one fp32 step per tensor; all tensors step together, so one count suffices).
      mu: pytree like params, float32: first moment m (the reference's `exp_avg`).
      nu: pytree like params, float32: second moment v (the reference's `exp_avg_sq`).
    """

    count: jax.Array
    mu: Any
    nu: Any


def _atan2_nonneg_x_polynomial(y: jax.Array, x: jax.Array) -> jax.Array:
    # Cephes' atanf (range reduction by tan(pi/8) and tan(3pi/8), degree-9 odd polynomial; about
    # 2 ulp) on t = |y| / x, with the sign of y restored. Only elementwise arithmetic, so XLA:CPU
    # vectorises it; its own atan2 calls scalar libm per element.
    t = jnp.abs(y) / jnp.abs(x)  # t in [0, inf] (x = -0 as +0); NaN for 0/0 or inf/inf (handled below)
    big = t > jnp.float32(2.414213562373095)  # tan(3 pi / 8)
    mid = t > jnp.float32(0.4142135623730950)  # tan(pi / 8)
    r = jnp.where(big, -1.0 / t, jnp.where(mid, (t - 1.0) / (t + 1.0), t))
    base = jnp.where(big, jnp.float32(np.pi / 2), jnp.where(mid, jnp.float32(np.pi / 4), jnp.float32(0.0)))
    z = r * r
    poly = (((jnp.float32(8.05374449538e-2) * z - jnp.float32(1.38776856032e-1)) * z
             + jnp.float32(1.99777106478e-1)) * z - jnp.float32(3.33329491539e-1)) * z * r + r
    out = jnp.where(y == 0, jnp.float32(0.0), base + poly)
    out = jnp.where(jnp.isinf(y) & jnp.isinf(x), jnp.float32(np.pi / 4), out)
    out = jnp.where(jnp.isnan(x) | jnp.isnan(y), jnp.float32(np.nan), out)
    return jnp.where(y < 0, -out, out)


def atan2_nonneg_x(y: jax.Array, x: jax.Array) -> jax.Array:
    """atan2(y, x) for float32 y and x >= 0 (AdamATan2's sqrt(v) / sqrt(1 - β2^t)), in [-pi/2, pi/2].

    On CPU a vectorisable polynomial (Cephes' atanf: at most 3 ulp from float64 atan2 for normal
    float32 inputs, `tests/test_optim.py`; XLA:CPU flushes subnormal inputs and results to zero, as its
    own atan2 does); XLA:CPU's `atan2` calls scalar libm for every element, about 11 ns each, which the
    two per-core devices each spend on every parameter (3% of an HRM benchmark step, WORKSPACE.md
    "Performance"). Elsewhere `jnp.arctan2`. As `jnp.arctan2`: atan2(0, 0) = 0, atan2(+-inf, inf) =
    +-pi/4, NaN in either input gives NaN. x < 0 (including -0) is not supported and is taken as |x|
    (so atan2(y, |x|)); the optimizer's sqrt(v) is never negative or -0. The CPU form returns float32
    for any float input.

    Args:
      y, x: float32 arrays of one shape, x >= 0.
    Returns:
      float32, the shape of y.
    """
    if jax.default_backend() == "cpu" and y.dtype == jnp.float32:  # decided at trace time, as `layers.linear_product`
        return _atan2_nonneg_x_polynomial(y, x)
    return jnp.arctan2(y, x)


def adam_atan2(
    learning_rate: ScalarOrSchedule,
    b1: float = 0.9,
    b2: float = 0.95,
    weight_decay: float = 0.1,
) -> optax.GradientTransformation:
    """AdamATan2 exactly as imoneoi/adam-atan2 (TRM.md 4.1, HRM.md 4.1), as an optax transformation.

    Per leaf, with the step t incremented before use (t = 1 on the first update) and lr = η(t):

        p <- p * (1 - η λ)                                   # decoupled decay first, on EVERY leaf
        m <- m + (1 - β1) (g - m)
        v <- v + (1 - β2) (g² - v)
        p <- p - η / (1 - β1^t) * atan2(m, sqrt(v) / sqrt(1 - β2^t))

    There is no epsilon and no a/b scale constants; the β1 bias correction is outside atan2. All maths is
    float32. atan2(0, 0) = 0, so a leaf whose gradient is always zero gets weight decay only. Not the
    lucidrains `adam-atan2-pytorch` variant (different constants and decay scaling).

    Args:
      learning_rate: float, or an `optax.Schedule` evaluated at the 1-based step t (int32 scalar).
      b1: β1, in [0, 1). Default 0.9.
      b2: β2, in [0, 1). Default 0.95.
      weight_decay: λ >= 0, decoupled (multiplied by the LR, not by LR/LR_init). Default 0.1.

    Returns:
      `optax.GradientTransformation` with
        init(params) -> AdamATan2State(count=int32 0, mu=zeros f32, nu=zeros f32), and
        update(grads, state, params) -> (updates, new_state), where grads/params are matching pytrees of
        float arrays (float32 expected; any float dtype is computed in float32) and the updates, in each
        param's dtype, satisfy `optax.apply_updates(params, updates) == new params` (up to float32 rounding
        of new - old, exact whenever new and old are within a factor 2).

    Raises:
      ValueError: at construction, if b1 or b2 is outside [0, 1) or weight_decay < 0; at update time, if
        `params` is None (the decay and the update need the current parameters).
    """
    if not 0.0 <= b1 < 1.0:
        raise ValueError(f"adam_atan2: b1 must be in [0, 1), got {b1}")
    if not 0.0 <= b2 < 1.0:
        raise ValueError(f"adam_atan2: b2 must be in [0, 1), got {b2}")
    if not weight_decay >= 0.0:
        raise ValueError(f"adam_atan2: weight_decay must be >= 0, got {weight_decay}")

    def init_fn(params):
        zeros = lambda p: jnp.zeros(jnp.shape(p), dtype=accum_dtype(jnp.result_type(p)))
        return AdamATan2State(
            count=jnp.zeros([], jnp.int32),
            mu=jax.tree.map(zeros, params),
            nu=jax.tree.map(zeros, params),
        )

    def update_fn(updates, state, params=None):
        if params is None:
            raise ValueError(
                "adam_atan2 needs the current params: call update(grads, state, params) "
                "(decoupled weight decay and the atan2 step act on the params themselves)."
            )
        count = optax.safe_int32_increment(state.count)  # t, incremented before use
        lr = scheduled_lr(learning_rate, count)
        scalars = {}  # per maths dtype (float32; float64 for float64 parameters), computed once

        def step_scalars(acc):
            if acc not in scalars:
                t = count.astype(acc)
                lr_acc = lr.astype(acc)
                scalars[acc] = (lr_acc / (1.0 - jnp.power(jnp.asarray(b1, acc), t)),  # step size
                                jnp.sqrt(1.0 - jnp.power(jnp.asarray(b2, acc), t)),  # bias correction 2, sqrt
                                1.0 - lr_acc * jnp.asarray(weight_decay, acc),  # decoupled decay factor
                                jnp.asarray(1.0 - b1, acc), jnp.asarray(1.0 - b2, acc))
            return scalars[acc]

        def leaf(g, p, m, v):
            acc = accum_dtype(p.dtype)
            step_size, bias_correction2_sqrt, wd_alpha, one_minus_b1, one_minus_b2 = step_scalars(acc)
            g32 = g.astype(acc)
            p32 = p.astype(acc)
            m_new = m + one_minus_b1 * (g32 - m)
            v_new = v + one_minus_b2 * (g32 * g32 - v)
            p_new = p32 * wd_alpha
            p_new = p_new - step_size * atan2_nonneg_x(m_new, jnp.sqrt(v_new) / bias_correction2_sqrt)
            return (p_new - p32).astype(p.dtype), m_new, v_new

        treedef = jax.tree.structure(updates)
        g_leaves = treedef.flatten_up_to(updates)
        p_leaves = treedef.flatten_up_to(params)
        m_leaves = treedef.flatten_up_to(state.mu)
        v_leaves = treedef.flatten_up_to(state.nu)
        out = [leaf(g, p, m, v) for g, p, m, v in zip(g_leaves, p_leaves, m_leaves, v_leaves)]
        new_updates = treedef.unflatten([o[0] for o in out])
        mu = treedef.unflatten([o[1] for o in out])
        nu = treedef.unflatten([o[2] for o in out])
        return new_updates, AdamATan2State(count=count, mu=mu, nu=nu)

    return optax.GradientTransformation(init_fn, update_fn)


# --------------------------------------------------------------------------------------------------
# LR schedule
# --------------------------------------------------------------------------------------------------


def warmup_cosine_schedule(
    base_lr: float, warmup_steps: int, total_steps: int, lr_min_ratio: float
) -> optax.Schedule:
    """The reference's `cosine_schedule_with_warmup_lr_lambda` (TRM.md 4.4, HRM.md 4.3), from optax parts.

    With W = warmup_steps, T = total_steps, r = lr_min_ratio, evaluated at the 1-based step t:

        t <  W:  lr = base * t / W
        t >= W:  lr = base * (r + (1 - r) * 0.5 * (1 + cos(pi * progress))),  progress = (t - W) / (T - W)

    Built as `optax.join_schedules([warmup, optax.cosine_decay_schedule(base, max(1, T - W), alpha=r)], [W])`
    with warmup(t) = base * t / W in float32 (exact form; `optax.linear_schedule` computes
    base - base * (1 - t/W), 5e-5 relative error at t = 1 for W = 2000). Edge cases:

    - W = 0: no warmup, the cosine starts at t = 0 (the reference's `t < 0` branch never fires).
    - T <= W: the cosine length is max(1, T - W) = 1, as the reference's denominator `max(1, T - W)`; so
      lr = base at t = W and base * r after, which equals the reference at every step it trains
      (t <= T <= W, and t = W + 1 when T = W + 1).
    - t > T: held at base * r (optax clamps progress at 1; the reference's cosine would rise again, but
      the reference never trains past T).
    - t = 0 (never used for an update): 0 when W > 0.

    The default r = 1.0 gives linear warmup then a constant LR.

    Args:
      base_lr: peak LR (float >= 0).
      warmup_steps: W, int >= 0.
      total_steps: T, int >= 0.
      lr_min_ratio: r in [0, 1], the final LR as a fraction of base_lr.

    Returns:
      `optax.Schedule`: step (int or int32 scalar, possibly traced) -> float32 scalar LR.

    Raises:
      ValueError: if warmup_steps or total_steps is negative, base_lr is negative, or lr_min_ratio is
        outside [0, 1] (the reference clamps the cosine term at 0, which only matters for r > 1).
    """
    if warmup_steps < 0 or total_steps < 0:
        raise ValueError(
            f"warmup_cosine_schedule: steps must be >= 0, got warmup_steps={warmup_steps}, total_steps={total_steps}"
        )
    if base_lr < 0:
        raise ValueError(f"warmup_cosine_schedule: base_lr must be >= 0, got {base_lr}")
    if not 0.0 <= lr_min_ratio <= 1.0:
        raise ValueError(f"warmup_cosine_schedule: lr_min_ratio must be in [0, 1], got {lr_min_ratio}")
    # Linear warmup written out as base * t / W: optax.linear_schedule evaluates it as
    # base - base * (1 - t / W), which loses ~5e-5 relative precision at t = 1, W = 2000 in float32.
    def warmup(count):
        return base_lr * jnp.asarray(count, schedule_dtype()) / max(1, warmup_steps)

    cosine = optax.cosine_decay_schedule(
        init_value=base_lr, decay_steps=max(1, total_steps - warmup_steps), alpha=lr_min_ratio
    )
    joined = optax.join_schedules([warmup, cosine], [warmup_steps])

    def schedule(count):
        return jnp.asarray(joined(count), dtype=schedule_dtype())

    return schedule


# --------------------------------------------------------------------------------------------------
# Sparse SignSGD for the puzzle-embedding table
# --------------------------------------------------------------------------------------------------


def sparse_signsgd_update(
    table: jax.Array,
    ids: jax.Array,
    grads: jax.Array,
    lr: jax.Array | float,
    weight_decay: float,
) -> jax.Array:
    """One sparse SignSGD step on the puzzle-embedding table (`_sparse_emb_signsgd_dist`, TRM.md 4.2).

    The gradients of the (global) batch are summed per unique id; for the touched rows only:

        w <- w * (1 - lr * wd) - lr * sign(sum of grads for that id)

    Rows not in `ids` are returned bit-identical (no update, no decay). sign(0) = 0, so a touched row
    whose summed gradient is exactly 0 gets the decay only. Memory is O(K d) (no dense [N, d] gradient):
    `jnp.unique(size=K)` + `segment_sum` over K segments + a dropped-out-of-range scatter. jit-compatible:
    K is the static length of `ids`. Pass the ids/grads of the whole global batch (the reference
    all-gathers them across ranks first).

    Args:
      table: [N, d] float32, the embedding table (a buffer, not an optax param).
      ids: int [K] (or any shape S, flattened), puzzle identifiers in [0, N); duplicates allowed. Values
        outside [0, N) are not checked (negative ones would wrap, as in NumPy indexing).
      grads: [K, d] (or S + (d,)) float, the gradients w.r.t. the gathered rows `table[ids]`; computed in
        float32.
      lr: scalar (float or 0-d array, may be traced), the SignSGD LR for this step.
      weight_decay: scalar, decoupled decay (multiplied by lr).

    Returns:
      [N, d] array of table's dtype: the updated table.

    Raises:
      ValueError: if `table` is not 2-D or `grads.shape != ids.shape + (d,)`.
    """
    if table.ndim != 2:
        raise ValueError(f"sparse_signsgd_update: table must be [N, d], got shape {table.shape}")
    n, d = table.shape
    if tuple(grads.shape) != tuple(ids.shape) + (d,):
        raise ValueError(
            f"sparse_signsgd_update: grads must have shape ids.shape + (d,) = {tuple(ids.shape) + (d,)}, "
            f"got {tuple(grads.shape)}"
        )
    ids = ids.reshape(-1)
    acc = accum_dtype(table.dtype)
    grads = grads.reshape(-1, d).astype(acc)
    k = ids.shape[0]
    # Unique ids padded to K with N (out of range: dropped on the scatter, filled with 0 on the gather).
    uniq, inverse = jnp.unique(ids, size=k, fill_value=n, return_inverse=True)
    summed = jax.ops.segment_sum(grads, inverse.reshape(-1), num_segments=k)
    rows = table.at[uniq].get(mode="fill", fill_value=0).astype(acc)
    lr = jnp.asarray(lr, dtype=acc)
    decay = 1.0 - lr * jnp.asarray(weight_decay, dtype=acc)
    new_rows = rows * decay - lr * jnp.sign(summed)
    return table.at[uniq].set(new_rows.astype(table.dtype), mode="drop")


class SignSGDState(NamedTuple):
    """State of `sparse_signsgd`.

    Attributes:
      count: int32 scalar, the number of updates applied, i.e. the 1-based step t of the last one.
    """

    count: jax.Array


class SparseSignSGD(NamedTuple):
    """The (init, update) pair returned by `sparse_signsgd`.

    Attributes:
      init: `init(table=None) -> SignSGDState` (count 0; the table is not needed and ignored).
      update: `update(table, ids, grads, state) -> (new_table, new_state)`; see `sparse_signsgd`.
    """

    init: Callable[..., SignSGDState]
    update: Callable[..., tuple[jax.Array, SignSGDState]]


def sparse_signsgd(learning_rate: ScalarOrSchedule, weight_decay: float = 0.1) -> SparseSignSGD:
    """Stateful wrapper of `sparse_signsgd_update` with a 1-based step count (TRM.md 4.2, HRM.md 4.2).

    Like `adam_atan2`, the count is incremented before use and the LR is `learning_rate(t)` (the same
    warmup/cosine schedule as the main optimiser, with base `puzzle_emb_lr`, in the reference).

    Args:
      learning_rate: float, or an `optax.Schedule` evaluated at the 1-based step t.
      weight_decay: float >= 0, decoupled decay of the touched rows (`puzzle_emb_weight_decay`).

    Returns:
      `SparseSignSGD(init, update)`: `init(table=None) -> SignSGDState(count=int32 0)`;
      `update(table [N, d] f32, ids [K] int, grads [K, d] f32, state) -> (new_table [N, d], new_state)`.
      Unlike an optax transformation, update returns the new table itself (the table is a buffer).

    Raises:
      ValueError: if weight_decay < 0; `update` raises as `sparse_signsgd_update` does.
    """
    if not weight_decay >= 0.0:
        raise ValueError(f"sparse_signsgd: weight_decay must be >= 0, got {weight_decay}")

    def init(table=None) -> SignSGDState:
        del table
        return SignSGDState(count=jnp.zeros([], jnp.int32))

    def update(table, ids, grads, state: SignSGDState):
        count = optax.safe_int32_increment(state.count)
        lr = scheduled_lr(learning_rate, count)
        return sparse_signsgd_update(table, ids, grads, lr, weight_decay), SignSGDState(count=count)

    return SparseSignSGD(init, update)


# --------------------------------------------------------------------------------------------------
# EMA of parameters
# --------------------------------------------------------------------------------------------------


def ema_update(ema_params: Any, params: Any, decay: float = 0.999) -> Any:
    """One EMA step of the parameters (`models/ema.py`, TRM.md 4.6): ema <- decay * ema + (1 - decay) * params.

    No bias correction and no warmup; the reference runs it after every train batch and starts the shadow
    as a copy of the parameters (so initialise `ema_params` with the params). Pass only the trainable model
    parameters: the puzzle-embedding table and the H_init/L_init buffers are excluded (the reference's EMA
    tracks `requires_grad` params only; evaluation uses the live table). Computed with
    `optax.incremental_update(params, ema_params, step_size=1 - decay)`.

    Args:
      ema_params: pytree of float arrays, the shadow parameters.
      params: pytree with the same structure and shapes, the current parameters.
      decay: float in [0, 1], the EMA rate (`ema_rate`, default 0.999).

    Returns:
      pytree like `ema_params` (Python-float weights keep each leaf's dtype): the updated shadow.

    Raises:
      ValueError: if decay is outside [0, 1] (checked when it is a Python number).
    """
    if isinstance(decay, (int, float)) and not (0.0 <= decay <= 1.0 and math.isfinite(decay)):
        raise ValueError(f"ema_update: decay must be in [0, 1], got {decay}")
    return optax.incremental_update(params, ema_params, step_size=1.0 - decay)
