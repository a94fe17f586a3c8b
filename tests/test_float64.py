"""The float64 compute path of the rounding-floor runs (`forward_dtype="float64"` under JAX's x64 mode)."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from recur_jax.core import optim
from recur_jax.core.layers import accum_dtype
from recur_jax.core.models import ModelConfig, build_model

SMALL = dict(arch="trm", vocab_size=7, seq_len=6, num_puzzle_identifiers=2, puzzle_emb_ndim=8, puzzle_emb_len=1,
             hidden_size=8, num_heads=2, expansion=2, H_cycles=2, L_cycles=2, L_layers=1, halt_max_steps=2)


def test_float64_needs_x64_and_says_so():
    cfg = ModelConfig(**SMALL, forward_dtype="float64")
    with pytest.raises(ValueError, match="forward_dtype='float64'.*x64"):
        build_model(cfg, nnx.Rngs(0))


def test_accum_dtype():
    assert accum_dtype(jnp.bfloat16) == jnp.float32 and accum_dtype(jnp.float32) == jnp.float32
    assert accum_dtype(jnp.float64) == jnp.float64


@pytest.mark.parametrize("mlp_t", [False, True])
def test_a_float64_model_computes_in_float64_throughout(mlp_t):
    with jax.enable_x64(True):
        cfg = ModelConfig(**SMALL, forward_dtype="float64", mlp_t=mlp_t, pos_encodings="none" if mlp_t else "rope")
        model = build_model(cfg, nnx.Rngs(0))
        assert {x.dtype for x in jax.tree_util.tree_leaves(nnx.state(model))} == {jnp.dtype(jnp.float64)}
        B, L = 3, cfg.total_len
        z = jnp.broadcast_to(model.H_init[...], (B, L, cfg.hidden_size))
        out = model(z, z, jnp.ones((B, cfg.seq_len), jnp.int32), jnp.ones((B, cfg.puzzle_emb_ndim), jnp.float64))
        for x in (out.logits, out.q_halt, out.z_H, out.z_L):
            assert x.dtype == jnp.float64
        # The same weights in float32 agree to float32 rounding, not to float64's.
        cfg32 = cfg.replace(forward_dtype="float32")
        m32 = build_model(cfg32, nnx.Rngs(0))
        nnx.update(m32, jax.tree_util.tree_map(lambda x: x.astype(jnp.float32), nnx.state(model)))
        out32 = m32(z.astype(jnp.float32), z.astype(jnp.float32), jnp.ones((B, cfg.seq_len), jnp.int32),
                    jnp.ones((B, cfg.puzzle_emb_ndim), jnp.float32))
        err = float(jnp.max(jnp.abs(out32.logits - out.logits)) / jnp.max(jnp.abs(out.logits)))
        assert 1e-10 < err < 1e-5


def test_adam_atan2_and_schedule_in_float64_match_the_float64_formula():
    with jax.enable_x64(True):
        rng = np.random.default_rng(0)
        p = rng.normal(size=(5, 3))
        sched = optim.warmup_cosine_schedule(1e-3, 20, 100, 1.0)
        assert sched(1).dtype == jnp.float64 and float(sched(1)) == 1e-3 / 20  # exact in float64
        tx = optim.adam_atan2(sched, b1=0.9, b2=0.95, weight_decay=0.1)
        params = {"w": jnp.asarray(p)}
        state = tx.init(params)
        assert state.mu["w"].dtype == jnp.float64
        m = v = np.zeros_like(p)
        for t in (1, 2, 3):
            g = rng.normal(size=p.shape)
            upd, state = tx.update({"w": jnp.asarray(g)}, state, params)
            params = {"w": params["w"] + upd["w"]}
            lr = 1e-3 * t / 20
            p = p * (1 - lr * 0.1)
            m = m + 0.1 * (g - m)
            v = v + 0.05 * (g * g - v)
            p = p - lr / (1 - 0.9 ** t) * np.arctan2(m, np.sqrt(v) / math.sqrt(1 - 0.95 ** t))
        assert params["w"].dtype == jnp.float64
        np.testing.assert_allclose(np.asarray(params["w"]), p, rtol=1e-13, atol=1e-15)
