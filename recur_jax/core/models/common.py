"""What TRM, HRM and the baseline share: input embedding with the puzzle prefix, heads, latent inits.

A model is used functionally: `nnx.split(model, nnx.Param, Buffer)` gives (graphdef, params,
buffers); jitted functions `nnx.merge` them and call `model(z_H, z_L, inputs, puzzle_emb_rows)`.
The puzzle-embedding table is not part of the model: it is trained by sparse SignSGD, excluded from
EMA and the parameter count, and sharded by rows, so callers gather its rows and pass them in.
"""

from __future__ import annotations

import math

import flax.struct
import jax
import jax.numpy as jnp
from flax import nnx

from recur_jax.core.layers import (Buffer, CastedEmbedding, CastedLinear, ReasoningModule, accum_dtype, rope_tables,
                              trunc_normal_init)
from recur_jax.core.models.config import ModelConfig


@flax.struct.dataclass
class ModelOutput:
    """Outputs of one ACT step of the inner model.

    Attributes:
      logits: [B, S, V] compute dtype; the prefix positions are dropped.
      q_halt: [B] float32, halting logit (Q head output 0, read at z_H[:, 0]).
      q_continue: [B] float32, continue logit (Q head output 1).
      z_H, z_L: [B, P+S, D] compute dtype, the new latents, detached (they enter the ACT carry).
    """

    logits: jax.Array
    q_halt: jax.Array
    q_continue: jax.Array
    z_H: jax.Array
    z_L: jax.Array


def _constant_init(value: float):
    def init(key, shape, dtype=jnp.float32):
        del key
        return jnp.full(shape, value, dtype)

    return init


class RecursiveReasoner(nnx.Module):
    """Base of the reasoning models: embeddings, heads and the frozen latent inits.

    Parameters (float32): `embed_tokens` [V, D] (std 1/sqrt(D)), optional `embed_pos` [P+S, D]
    (pos_encodings="learned"), `lm_head` [D, V] (no bias), `q_head` [D, 2] with bias (weight 0,
    bias -5, TRM.md 1.6). Buffers (compute dtype): `H_init`, `L_init` [D], truncated normal std 1.
    Subclasses define their stacks and `recur`.
    """

    def __init__(self, config: ModelConfig, *, rngs: nnx.Rngs):
        if config.dtype == jnp.float64 and not jax.config.jax_enable_x64:
            raise ValueError("model.forward_dtype='float64' needs JAX's x64 mode (`with jax.enable_x64(True):` "
                             "or JAX_ENABLE_X64=1); it exists for the rounding-floor runs (launch.parity --x64)")
        self.config = config
        D, V = config.hidden_size, config.vocab_size
        self.embed_tokens = CastedEmbedding(V, D, init_std=1.0 / math.sqrt(D), rngs=rngs)
        if config.pos_encodings == "learned":
            self.embed_pos = CastedEmbedding(config.total_len, D, init_std=1.0 / math.sqrt(D), rngs=rngs)
        self.lm_head = CastedLinear(D, V, rngs=rngs)
        self.q_head = CastedLinear(D, 2, use_bias=True, kernel_init=_constant_init(0.0),
                                   bias_init=_constant_init(-5.0), rngs=rngs)
        self.H_init = Buffer(trunc_normal_init(1.0)(rngs.params(), (D,), jnp.float32).astype(config.dtype))
        self.L_init = Buffer(trunc_normal_init(1.0)(rngs.params(), (D,), jnp.float32).astype(config.dtype))

    def _stack(self, num_layers: int, rngs: nnx.Rngs) -> ReasoningModule:
        c = self.config
        return ReasoningModule(num_layers, hidden=c.hidden_size, num_heads=c.num_heads, expansion=c.expansion,
                               mlp_t=c.mlp_t, total_len=c.total_len, eps=c.rms_norm_eps,
                               attention_impl=c.attention_impl, conv_kernel=c.conv_kernel,
                               conv_grid_width=c.conv_grid_width, conv_padding=c.conv_padding, rngs=rngs)

    def _pure(self, module: ReasoningModule):
        """(state, fn): `fn(state, z, injection)` applies `module` functionally (for lax.scan bodies),
        under `jax.checkpoint` when config.remat is set."""
        graphdef, state = nnx.split(module)
        rope = self.rope()

        def fn(module_state, z, injection):
            return nnx.merge(graphdef, module_state)(z, injection, rope)

        return state, (jax.checkpoint(fn) if self.config.remat else fn)

    def rope(self) -> tuple[jax.Array, jax.Array] | None:
        """RoPE (cos, sin) tables [P+S, head_dim] float32 over prefix and grid, or None."""
        c = self.config
        if c.pos_encodings != "rope":
            return None
        return rope_tables(c.total_len, c.head_dim, c.rope_theta, accum_dtype(c.dtype))

    def input_embeddings(self, inputs: jax.Array, puzzle_emb_rows: jax.Array | None) -> jax.Array:
        """x = sqrt(D) * [pad(puzzle_emb) ; E_tok[inputs]] (+ learned positions), TRM.md 1.2.

        Args:
          inputs: [B, S] int32 token ids.
          puzzle_emb_rows: [B, puzzle_emb_ndim] float32, rows of the puzzle table for this batch
            (None only when puzzle_emb_ndim == 0). Zero-padded to P*D and reshaped to P slots.
        Returns:
          x: [B, P+S, D] compute dtype.
        """
        c = self.config
        dtype = c.dtype
        emb = self.embed_tokens(inputs, dtype)
        if c.puzzle_emb_ndim > 0:
            if puzzle_emb_rows is None:
                raise ValueError("puzzle_emb_rows is required when model.puzzle_emb_ndim > 0")
            B = inputs.shape[0]
            pe = puzzle_emb_rows.astype(dtype)
            pad = c.prefix_len * c.hidden_size - pe.shape[-1]
            if pad > 0:
                pe = jnp.pad(pe, ((0, 0), (0, pad)))
            emb = jnp.concatenate([pe.reshape(B, c.prefix_len, c.hidden_size), emb], axis=1)
        if c.pos_encodings == "learned":
            emb = 0.707106781 * (emb + self.embed_pos.embedding[...].astype(dtype))
        return math.sqrt(c.hidden_size) * emb

    def heads(self, z_H: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
        """z_H [B, P+S, D] -> (logits [B, S, V] compute dtype, q_halt [B] f32, q_continue [B] f32).

        The Q head reads z_H[:, 0] (the reference) or, with `q_head_input="mean"`, the mean over all
        positions (a halting input that does not depend on where the answer is, for inputs of any size).
        """
        P = self.config.prefix_len
        logits = self.lm_head(z_H[:, P:])
        if self.config.q_head_input == "first":
            pooled = z_H[:, 0]
        else:
            pooled = jnp.mean(z_H, axis=1, dtype=accum_dtype(z_H.dtype)).astype(z_H.dtype)
        q = self.q_head(pooled).astype(accum_dtype(z_H.dtype))
        return logits, q[:, 0], q[:, 1]

    def recur(self, z_H: jax.Array, z_L: jax.Array, x: jax.Array, grad_mode: str) -> tuple[jax.Array, jax.Array]:
        """The model's recursion over one ACT step; see `recur_jax.core.recursion.recurse`."""
        raise NotImplementedError

    def __call__(self, z_H: jax.Array, z_L: jax.Array, inputs: jax.Array, puzzle_emb_rows: jax.Array | None,
                 grad_mode: str | None = None) -> ModelOutput:
        """One ACT step of the inner model (TRM.md 1.4, HRM.md 1.4).

        Args:
          z_H, z_L: [B, P+S, D] compute dtype, the (reset) carry latents.
          inputs: [B, S] int32; puzzle_emb_rows: [B, puzzle_emb_ndim] float32.
          grad_mode: overrides `config.grad_mode` ("one_step", "last_sweep", "full").
        Returns:
          ModelOutput with logits, q logits and the detached new latents.
        """
        x = self.input_embeddings(inputs, puzzle_emb_rows)
        z_H, z_L = self.recur(z_H, z_L, x, grad_mode or self.config.grad_mode)
        logits, q_halt, q_continue = self.heads(z_H)
        return ModelOutput(logits, q_halt, q_continue, jax.lax.stop_gradient(z_H), jax.lax.stop_gradient(z_L))

    def initial_latents(self, batch_size: int) -> tuple[jax.Array, jax.Array]:
        """H_init/L_init broadcast to [batch_size, P+S, D] (compute dtype)."""
        shape = (batch_size, self.config.total_len, self.config.hidden_size)
        return (jnp.broadcast_to(self.H_init[...], shape), jnp.broadcast_to(self.L_init[...], shape))


def count_params(model: nnx.Module) -> int:
    """Number of trainable parameters (nnx.Param), excluding buffers and the puzzle table."""
    return sum(int(x.size) for x in jax.tree_util.tree_leaves(nnx.state(model, nnx.Param)))
