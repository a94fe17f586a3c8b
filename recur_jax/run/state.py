"""What a training run's state is: `TrainState`, its initialisation, its optimizers and its fingerprint.

A TrainState is everything one optimizer step reads and writes, and exactly what a checkpoint holds
(`recur_jax.run.checkpoint`): parameters, AdamATan2 state, EMA, the puzzle-embedding table with its
sparse SignSGD state, the frozen H_init/L_init buffers, the ACT carry and the step. The random streams
are stateless (every draw derives from `config.seed` and the step), so the state plus the config
determine the rest of the run.
"""

from __future__ import annotations

import hashlib
from typing import Any

import flax.struct
import jax
import jax.numpy as jnp
import ml_collections
from flax import nnx

from recur_jax.core import act, optim
from recur_jax.core.layers import Buffer, accum_dtype
from recur_jax.core.models import ModelConfig, build_model
from recur_jax.run import sharding

PURPOSE_HALT = 1  # fold_in ids of the RNG streams derived from the root key
PURPOSE_INIT = 2


@flax.struct.dataclass
class TrainState:
    """Everything a step reads and writes; also exactly what a checkpoint holds.

    Attributes:
      step: int32 scalar, optimizer steps taken.
      params: nnx.State of the model's float32 parameters.
      buffers: nnx.State of the frozen H_init/L_init [D] (compute dtype).
      opt_state: AdamATan2 state.
      ema_params: EMA of params (same structure), or None when EMA is off.
      puzzle_table: [num_puzzle_identifiers (padded, sharding.padded_puzzle_rows), puzzle_emb_ndim]
        float32, or None.
      puzzle_opt_state: sparse SignSGD state (its step count), or None.
      carry: the ACT carry, [global_batch, ...].
    """

    step: jax.Array
    params: Any
    buffers: Any
    opt_state: Any
    ema_params: Any
    puzzle_table: jax.Array | None
    puzzle_opt_state: Any
    carry: act.ACTCarry


def make_optimizers(config: ml_collections.ConfigDict):
    """(AdamATan2 for the parameters, sparse SignSGD for the puzzle table, the parameters' LR schedule),
    from `config.optim` and `config.total_steps` (TRM.md 4.1-4.4)."""
    o = config.optim
    lr = optim.warmup_cosine_schedule(o.lr, o.lr_warmup_steps, config.total_steps, o.lr_min_ratio)
    pe_lr = optim.warmup_cosine_schedule(o.puzzle_emb_lr, o.lr_warmup_steps, config.total_steps, o.lr_min_ratio)
    tx = optim.adam_atan2(lr, b1=o.beta1, b2=o.beta2, weight_decay=o.weight_decay)
    pe_opt = optim.sparse_signsgd(pe_lr, weight_decay=o.puzzle_emb_weight_decay)
    return tx, pe_opt, lr


def example_batch(config: ml_collections.ConfigDict, model_cfg: ModelConfig) -> act.Batch:
    """A global batch of zeros (`inputs`/`labels` [B, seq_len] int32, `puzzle_identifiers` [B] int32) for
    `init_train_state` when no data is loaded (only its shapes are used: the ACT carry's)."""
    import numpy as np

    b, s = int(config.global_batch_size), int(model_cfg.seq_len)
    return {"inputs": np.zeros((b, s), np.int32), "labels": np.zeros((b, s), np.int32),
            "puzzle_identifiers": np.zeros((b,), np.int32)}


def init_train_state(config: ml_collections.ConfigDict, model_cfg: ModelConfig, example_batch: act.Batch
                     ) -> tuple[nnx.GraphDef, TrainState]:
    """Builds the model (seeded by config.seed), the optimizer states, EMA, puzzle table and carry.

    Args:
      config: the training config (seed, optim, ema, total_steps, sharding).
      model_cfg: the model.
      example_batch: a global batch (only shapes are used) for the carry.
    Returns:
      (graphdef, state) with the puzzle table zero-initialised as in the reference.
    """
    key = jax.random.fold_in(jax.random.key(config.seed), PURPOSE_INIT)
    model = build_model(model_cfg, nnx.Rngs(params=key))
    graphdef, params, buffers = nnx.split(model, nnx.Param, Buffer)
    tx, pe_opt, _ = make_optimizers(config)
    table = None
    if model_cfg.puzzle_emb_ndim > 0:  # rows padded for sharding (sharding.padded_puzzle_rows)
        rows = sharding.padded_puzzle_rows(model_cfg.num_puzzle_identifiers, config)
        table = jnp.zeros((rows, model_cfg.puzzle_emb_ndim), accum_dtype(model_cfg.dtype))
    state = TrainState(
        step=jnp.zeros((), jnp.int32), params=params, buffers=buffers, opt_state=tx.init(params),
        ema_params=jax.tree_util.tree_map(jnp.copy, params) if config.ema else None,
        puzzle_table=table, puzzle_opt_state=pe_opt.init(table) if table is not None else None,
        carry=act.initial_carry(model, example_batch))
    return graphdef, state


def _hash_leaves(h, tree) -> None:
    """Feeds dtype, shape and bytes of every leaf of `tree` (gathered over processes) into hasher `h`."""
    import numpy as np

    for leaf in jax.tree_util.tree_leaves(tree):
        if jax.dtypes.issubdtype(leaf.dtype, jax.dtypes.prng_key):
            leaf = jax.random.key_data(leaf)
        arr = sharding.to_host(leaf)  # gathers arrays sharded over several processes
        h.update(f"{arr.dtype}{arr.shape}".encode())
        h.update(np.ascontiguousarray(arr).tobytes())


def _digest(tree) -> str:
    h = hashlib.sha256()
    _hash_leaves(h, tree)
    return h.hexdigest()


def fingerprint_parts(state: TrainState) -> dict[str, str]:
    """sha256 (hex) of each part of the state: params, opt_state (AdamATan2), ema, puzzle_table (with
    its SignSGD state), carry (the ACT carry), step. Equal digests mean bitwise-equal parts."""
    return {"params": _digest(state.params), "opt_state": _digest(state.opt_state),
            "ema": _digest(state.ema_params), "puzzle_table": _digest((state.puzzle_table, state.puzzle_opt_state)),
            "carry": _digest(state.carry), "step": _digest(state.step)}


def fingerprint(state: TrainState) -> str:
    """sha256 over the bytes (and shapes/dtypes) of params, optimizer state, EMA, puzzle table (and its
    optimizer state), ACT carry and step: equal fingerprints mean the same run state bit for bit."""
    h = hashlib.sha256()
    _hash_leaves(h, (state.params, state.opt_state, state.ema_params, state.puzzle_table, state.puzzle_opt_state))
    h.update(_digest(state.carry).encode())
    h.update(_digest(state.step).encode())
    return h.hexdigest()


def maybe_fingerprint(state: TrainState) -> str | None:
    """fingerprint(state) when every array is readable from this process (else None: not checked)."""
    if all(getattr(x, "is_fully_addressable", True) for x in jax.tree_util.tree_leaves(state)):
        return fingerprint(state)
    return None


__all__ = ["PURPOSE_HALT", "PURPOSE_INIT", "TrainState", "fingerprint", "fingerprint_parts", "init_train_state",
           "make_optimizers", "maybe_fingerprint"]
