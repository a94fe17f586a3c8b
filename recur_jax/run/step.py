"""The pure training step: `make_train_step(...) -> step(state, batch) -> (state, metrics)`, jitted by the caller.

One optimizer step = one ACT step on the persistent carry (the official streaming semantics, TRM.md
3.2), or, with `config.act_mode = "episode"`, all `halt_max_steps` supervision steps of one batch
inside one jitted `lax.scan` (the paper's pseudocode: a fresh carry per batch, one optimizer update per
supervision step, rows stop contributing once they halt).

Per step: gradients of loss / global_batch_size (`act.act_train_grads`), optionally accumulated over
`microbatches` row chunks; AdamATan2 on the model parameters; sparse SignSGD on the puzzle-table rows
of the global batch; EMA of the parameters; the non-finite guard.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, Callable

import jax
import jax.numpy as jnp
import ml_collections
import optax
from flax import nnx

from recur_jax.core import act, optim, recursion
from recur_jax.core.models import ModelConfig
from recur_jax.run.state import PURPOSE_HALT, TrainState, make_optimizers


@dataclasses.dataclass(frozen=True)
class StepSpec:
    """Everything fixed about the training step, resolved once from the config.

    Attributes:
      graphdef: the model's graph (`nnx.split`).
      halting: the ACT halting policy of training (`act.HaltingPolicy.for_training`).
      tx, pe_opt, lr_schedule: AdamATan2, sparse SignSGD and the parameters' LR schedule.
      root: the root PRNG key (config.seed); step t's exploration key is fold_in(fold_in(root, t), PURPOSE_HALT).
      loss_scale: 1 / global batch size.
      ema_rate: the EMA rate, or None without EMA.
      microbatches: k row chunks whose gradients are summed (1: the whole batch at once).
      skip_nonfinite: `nonfinite.policy == "skip"`.
      compute_shardings: parameter shardings for the forward/backward (FSDP all-gather), or None.
      episode_length: halt_max_steps in episode mode, else None (streaming).
    """

    graphdef: nnx.GraphDef
    halting: act.HaltingPolicy
    tx: optax.GradientTransformation
    pe_opt: optim.SparseSignSGD
    lr_schedule: Any
    root: jax.Array
    loss_scale: float
    ema_rate: float | None
    microbatches: int
    skip_nonfinite: bool
    compute_shardings: Any
    episode_length: int | None


def nonfinite_policy(config: ml_collections.ConfigDict) -> tuple[str, int]:
    """(policy, max_consecutive_skips) of `config.nonfinite` ("stop", 10 for configs that predate it)."""
    nf = config.get("nonfinite") or {}
    return str(nf.get("policy", "stop")), int(nf.get("max_consecutive_skips", 10))


def make_train_step(graphdef: nnx.GraphDef, config: ml_collections.ConfigDict, model_cfg: ModelConfig,
                    compute_shardings: Any = None) -> Callable[[TrainState, act.Batch], tuple[TrainState, dict]]:
    """The pure training step `(state, batch) -> (state, metrics)` (not jitted).

    Metrics are device scalars: the reference's sums (count, accuracy, exact_accuracy,
    q_halt_accuracy, steps), the loss terms summed over the batch, `loss`, `lr`, and the non-finite
    guard's `nonfinite_loss` (1.0 when the loss is NaN/Inf), `nonfinite_grads` / `nonfinite_puzzle_grads`
    (NaN/Inf elements in the gradients of the parameters / of the gathered puzzle-table rows) and
    `skipped` (1.0 when the step was skipped).

    With `config.nonfinite.policy == "skip"`, a step whose loss or gradients are not finite leaves
    params, optimizer state, EMA, puzzle table and ACT carry exactly as they were; only `step` advances
    (so the data position moves past the batch; the optimizers' own step counts, and so their
    schedules, do not); its loss and accuracy sums are zeroed. With "stop" (default) the step is applied
    as computed and the host raises `TrainingDiverged` (`recur_jax.run.train`).

    Args:
      graphdef: the model's graph; config: the training config; model_cfg: the model.
      compute_shardings: (`sharding.compute_shardings`) the parameters are constrained to these for
        the forward/backward (FSDP all-gather); None leaves placement to the compiler.
    Raises:
      ValueError: microbatches not dividing the global batch, or an unknown act_mode.
    """
    k = int(config.microbatches)
    if k < 1 or config.global_batch_size % k:
        raise ValueError(f"config.microbatches={k}: expected a divisor of global_batch_size="
                         f"{config.global_batch_size}")
    if config.act_mode not in ("streaming", "episode"):
        raise ValueError(f"act_mode={config.act_mode!r}: expected 'streaming' or 'episode'")
    tx, pe_opt, lr_schedule = make_optimizers(config)
    spec = StepSpec(graphdef=graphdef, halting=act.HaltingPolicy.for_training(model_cfg), tx=tx, pe_opt=pe_opt,
                    lr_schedule=lr_schedule, root=jax.random.key(config.seed),
                    loss_scale=1.0 / config.global_batch_size,
                    ema_rate=float(config.ema_rate) if config.ema else None, microbatches=k,
                    skip_nonfinite=nonfinite_policy(config)[0] == "skip", compute_shardings=compute_shardings,
                    episode_length=model_cfg.halt_max_steps if config.act_mode == "episode" else None)
    return functools.partial(episode_step if spec.episode_length else streaming_step, spec)


def _count_nonfinite(tree) -> jax.Array:
    """float32 scalar: number of NaN/Inf elements in a pytree of arrays (0 for None)."""
    leaves = [x for x in jax.tree_util.tree_leaves(tree) if jnp.issubdtype(x.dtype, jnp.inexact)]
    return sum((jnp.sum(~jnp.isfinite(x)).astype(jnp.float32) for x in leaves), jnp.zeros((), jnp.float32))


def apply_updates(spec: StepSpec, state: TrainState, grads: Any, puzzle_grads: Any, carry: act.ACTCarry
                  ) -> TrainState:
    """AdamATan2 on the parameters, sparse SignSGD on the puzzle rows, EMA; the new carry; step + 1."""
    updates, opt_state = spec.tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    table, pe_state = state.puzzle_table, state.puzzle_opt_state
    if puzzle_grads is not None:
        table, pe_state = spec.pe_opt.update(table, puzzle_grads[0], puzzle_grads[1], pe_state)
    ema = optim.ema_update(state.ema_params, params, spec.ema_rate) if spec.ema_rate is not None else None
    return state.replace(step=state.step + 1, params=params, opt_state=opt_state, ema_params=ema,
                         puzzle_table=table, puzzle_opt_state=pe_state, carry=carry)


def gradients(spec: StepSpec, state: TrainState, carry: act.ACTCarry, batch: act.Batch, rng: jax.Array,
              row_weight: jax.Array | None):
    """((loss, metrics, grads), (new carry, puzzle grads)) of one ACT step on `batch` rows."""
    params = state.params
    if spec.compute_shardings is not None:
        params = jax.lax.with_sharding_constraint(params, spec.compute_shardings)
    loss, carry, _, metrics, grads, pz = act.act_train_grads(
        spec.graphdef, params, state.buffers, state.puzzle_table, carry, batch, rng, spec.halting,
        loss_scale=spec.loss_scale, row_weight=row_weight)
    if spec.compute_shardings is not None:  # gradients summed over the rows where they are computed
        grads = jax.lax.with_sharding_constraint(grads, spec.compute_shardings)
    return (loss, metrics, grads), (carry, pz)


def _split(x: jax.Array, k: int) -> jax.Array:
    """[B, ...] -> [k, B/k, ...]; microbatch i holds rows i, i+k, ... (no resharding)."""
    return x.reshape((x.shape[0] // k, k) + x.shape[1:]).swapaxes(0, 1)


def _merge(x: jax.Array) -> jax.Array:
    """The inverse of `_split`."""
    return x.swapaxes(0, 1).reshape((-1,) + x.shape[2:])


def accumulated_gradients(spec: StepSpec, state: TrainState, batch: act.Batch, rng: jax.Array,
                          row_weight: jax.Array | None):
    """`gradients` summed over `spec.microbatches` row chunks computed one after another (less memory,
    the same sums up to float32 order); chunk i's exploration key is fold_in(rng, i)."""
    k = spec.microbatches
    if k == 1:
        return gradients(spec, state, state.carry, batch, rng, row_weight)
    weight = jnp.ones(batch["inputs"].shape[:1], jnp.float32) if row_weight is None else row_weight
    xs = jax.tree_util.tree_map(lambda x: _split(x, k), (state.carry, batch, weight))

    def body(acc, args):
        i, (carry_i, batch_i, w_i) = args
        out, rest = gradients(spec, state, carry_i, batch_i, jax.random.fold_in(rng, i), w_i)
        return jax.tree_util.tree_map(jnp.add, acc, out), rest

    carry0, batch0, w0 = jax.tree_util.tree_map(lambda x: x[0], xs)
    first = jax.eval_shape(lambda: gradients(spec, state, carry0, batch0, rng, w0)[0])
    zeros = jax.tree_util.tree_map(lambda a: jnp.zeros(a.shape, a.dtype), first)
    acc, rest = jax.lax.scan(body, zeros, (jnp.arange(k), xs), unroll=recursion.is_unrolled())
    return acc, jax.tree_util.tree_map(_merge, rest)


def streaming_step(spec: StepSpec, state: TrainState, batch: act.Batch, row_weight: jax.Array | None = None
                   ) -> tuple[TrainState, dict[str, jax.Array]]:
    """One optimizer step = one ACT step on the persistent carry; see `make_train_step` for the metrics."""
    rng = jax.random.fold_in(jax.random.fold_in(spec.root, state.step), PURPOSE_HALT)
    (loss, metrics, grads), (carry, pz) = accumulated_gradients(spec, state, batch, rng, row_weight)
    bad_grads = _count_nonfinite(grads)
    bad_pz = _count_nonfinite(pz[1]) if pz is not None else jnp.zeros((), jnp.float32)
    metrics = dict(metrics, loss=loss, lr=optim.scheduled_lr(spec.lr_schedule, state.step + 1),
                   nonfinite_loss=(~jnp.isfinite(loss)).astype(jnp.float32), nonfinite_grads=bad_grads,
                   nonfinite_puzzle_grads=bad_pz)
    new = apply_updates(spec, state, grads, pz, carry)
    if not spec.skip_nonfinite:
        return new, dict(metrics, skipped=jnp.zeros((), jnp.float32))
    ok = jnp.isfinite(loss) & (bad_grads == 0) & (bad_pz == 0)
    new = jax.tree_util.tree_map(lambda n, o: jnp.where(ok, n, o), new, state).replace(step=new.step)
    kept = ("lr", "nonfinite_loss", "nonfinite_grads", "nonfinite_puzzle_grads")
    metrics = {k: v if k in kept else jnp.where(ok, v, jnp.zeros_like(v)) for k, v in metrics.items()}
    return new, dict(metrics, skipped=1.0 - ok.astype(jnp.float32))


def episode_step(spec: StepSpec, state: TrainState, batch: act.Batch) -> tuple[TrainState, dict[str, jax.Array]]:
    """halt_max_steps optimizer steps on one batch from a fresh carry (episode mode); metrics summed
    over the supervision steps (lr: the last one's)."""
    fresh = state.carry.replace(halted=jnp.ones_like(state.carry.halted))
    state = state.replace(carry=fresh)

    def body(carry_state, _):
        st, done = carry_state
        st = st.replace(carry=st.carry.replace(halted=jnp.zeros_like(done)))  # rows are never replaced
        st, metrics = streaming_step(spec, st, batch, row_weight=(~done).astype(jnp.float32))
        return (st, done | st.carry.halted), metrics

    # First supervision step resets every row from the batch; later ones continue the same rows.
    state, m0 = streaming_step(spec, state, batch)
    (state, _), ms = jax.lax.scan(body, (state, state.carry.halted), None, length=spec.episode_length - 1)
    metrics = {k: (m0[k] + jnp.sum(ms[k])) if k not in ("lr",) else ms[k][-1] for k in m0}
    return state, metrics


__all__ = ["StepSpec", "accumulated_gradients", "apply_updates", "episode_step", "gradients", "make_train_step",
           "nonfinite_policy", "streaming_step"]
