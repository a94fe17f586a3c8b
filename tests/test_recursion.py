"""The truncated-recursion primitive: scan equals an unrolled loop; gradients of each truncation mode."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from recur_jax.core.models import ModelConfig, build_model
from recur_jax.core.recursion import recurse, sweep

D = 8


def _steps():
    """Small nonlinear L/H steps with distinct parameters, like HRM's two modules."""

    def L_step(ctx, z_L, z_H):
        return jnp.tanh((z_L + z_H + ctx["x"]) @ ctx["wL"])

    def H_step(ctx, z_H, z_L):
        return jnp.tanh((z_H + z_L) @ ctx["wH"])

    return L_step, H_step


def _ctx(seed=0):
    k = jax.random.split(jax.random.key(seed), 5)
    ctx = {"wL": jax.random.normal(k[0], (D, D)) / np.sqrt(D), "wH": jax.random.normal(k[1], (D, D)) / np.sqrt(D),
           "x": jax.random.normal(k[2], (3, D))}
    return ctx, jax.random.normal(k[3], (3, D)), jax.random.normal(k[4], (3, D))


def _unrolled(L_step, H_step, ctx, z_H, z_L, H_cycles, L_cycles):
    for _ in range(H_cycles):
        for _ in range(L_cycles):
            z_L = L_step(ctx, z_L, z_H)
        z_H = H_step(ctx, z_H, z_L)
    return z_H, z_L


@pytest.mark.parametrize("mode", ["one_step", "last_sweep", "full"])
@pytest.mark.parametrize("H_cycles,L_cycles", [(1, 1), (1, 3), (3, 1), (3, 4)])
def test_scan_equals_unrolled_loop(mode, H_cycles, L_cycles):
    L_step, H_step = _steps()
    ctx, z_H, z_L = _ctx()
    got = recurse(L_step, H_step, ctx, z_H, z_L, H_cycles=H_cycles, L_cycles=L_cycles, grad_mode=mode)
    want = _unrolled(L_step, H_step, ctx, z_H, z_L, H_cycles, L_cycles)
    for g, w in zip(got, want):
        np.testing.assert_allclose(np.asarray(g), np.asarray(w), rtol=1e-6, atol=1e-6)


def _grad(fn, ctx):
    return jax.grad(lambda c: jnp.sum(fn(c)[0] ** 2))(ctx)


@pytest.mark.parametrize("H_cycles,L_cycles", [(1, 2), (3, 2), (4, 3)])
def test_last_sweep_gradient_is_single_sweep_from_detached_state(H_cycles, L_cycles):
    L_step, H_step = _steps()
    ctx, z_H, z_L = _ctx(1)
    got = _grad(lambda c: recurse(L_step, H_step, c, z_H, z_L, H_cycles=H_cycles, L_cycles=L_cycles,
                                  grad_mode="last_sweep"), ctx)
    zh0, zl0 = _unrolled(L_step, H_step, ctx, z_H, z_L, H_cycles - 1, L_cycles)  # constants
    want = _grad(lambda c: sweep(L_step, H_step, c, zh0, zl0, L_cycles), ctx)
    for k in ctx:
        np.testing.assert_allclose(np.asarray(got[k]), np.asarray(want[k]), rtol=1e-5, atol=1e-6)
    # Not a vacuous check: full backprop differs when there is more than one sweep.
    full = _grad(lambda c: recurse(L_step, H_step, c, z_H, z_L, H_cycles=H_cycles, L_cycles=L_cycles,
                                   grad_mode="full"), ctx)
    if H_cycles > 1:
        assert not np.allclose(np.asarray(full["wL"]), np.asarray(got["wL"]), rtol=1e-3)


@pytest.mark.parametrize("H_cycles,L_cycles", [(1, 1), (2, 2), (3, 4)])
def test_one_step_gradient_is_last_L_and_H_update_from_detached_state(H_cycles, L_cycles):
    L_step, H_step = _steps()
    ctx, z_H, z_L = _ctx(2)
    got = _grad(lambda c: recurse(L_step, H_step, c, z_H, z_L, H_cycles=H_cycles, L_cycles=L_cycles,
                                  grad_mode="one_step"), ctx)
    zh, zl = _unrolled(L_step, H_step, ctx, z_H, z_L, H_cycles - 1, L_cycles)
    for _ in range(L_cycles - 1):
        zl = L_step(ctx, zl, zh)

    def one(c):
        new_L = L_step(c, zl, zh)
        return H_step(c, zh, new_L), new_L

    want = _grad(one, ctx)
    for k in ctx:
        np.testing.assert_allclose(np.asarray(got[k]), np.asarray(want[k]), rtol=1e-5, atol=1e-6)


def test_full_gradient_equals_unrolled_autodiff():
    L_step, H_step = _steps()
    ctx, z_H, z_L = _ctx(3)
    got = _grad(lambda c: recurse(L_step, H_step, c, z_H, z_L, H_cycles=3, L_cycles=2, grad_mode="full"), ctx)
    want = _grad(lambda c: _unrolled(L_step, H_step, c, z_H, z_L, 3, 2), ctx)
    for k in ctx:
        np.testing.assert_allclose(np.asarray(got[k]), np.asarray(want[k]), rtol=1e-5, atol=1e-6)


def test_no_gradient_reaches_the_incoming_carry():
    L_step, H_step = _steps()
    ctx, z_H, z_L = _ctx(4)
    for mode in ("one_step", "last_sweep"):
        g = jax.grad(lambda zh: jnp.sum(recurse(L_step, H_step, ctx, zh, z_L, H_cycles=2, L_cycles=2,
                                                grad_mode=mode)[0]))(z_H)
        assert float(jnp.max(jnp.abs(g))) == 0.0


def test_invalid_arguments_raise():
    L_step, H_step = _steps()
    ctx, z_H, z_L = _ctx()
    with pytest.raises(ValueError, match="grad_mode"):
        recurse(L_step, H_step, ctx, z_H, z_L, H_cycles=2, L_cycles=2, grad_mode="bptt")
    with pytest.raises(ValueError, match="H_cycles"):
        recurse(L_step, H_step, ctx, z_H, z_L, H_cycles=0, L_cycles=2, grad_mode="full")


def test_model_carry_leaves_through_stop_gradient():
    cfg = ModelConfig(vocab_size=6, seq_len=8, hidden_size=16, num_heads=2, puzzle_emb_ndim=16, puzzle_emb_len=2,
                      H_cycles=2, L_cycles=2, forward_dtype="float32")
    model = build_model(cfg, nnx.Rngs(0))
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    z = jnp.broadcast_to(model.H_init[...], (2, cfg.total_len, cfg.hidden_size))
    inputs = jnp.ones((2, cfg.seq_len), jnp.int32)
    rows = jnp.ones((2, 16))

    def carry_sum(p):
        out = nnx.merge(graphdef, p, rest)(z, z, inputs, rows)
        return jnp.sum(out.z_H) + jnp.sum(out.z_L)

    grads = jax.grad(carry_sum)(params)
    assert all(float(jnp.max(jnp.abs(g))) == 0.0 for g in jax.tree_util.tree_leaves(grads))


@pytest.mark.parametrize("arch,kw", [
    ("trm", {}),
    ("hrm", dict(H_layers=1, L_layers=1, grad_mode="one_step", no_ACT_continue=False)),
    ("transformer", dict(H_layers=2)),
])
def test_remat_gives_the_same_gradients(arch, kw):
    grads = []
    for remat in (False, True):
        cfg = ModelConfig(arch=arch, vocab_size=6, seq_len=8, hidden_size=16, num_heads=2, puzzle_emb_ndim=16,
                          puzzle_emb_len=2, H_cycles=2, L_cycles=2, forward_dtype="float32", remat=remat, **kw)
        model = build_model(cfg, nnx.Rngs(0))
        graphdef, params, rest = nnx.split(model, nnx.Param, ...)
        z = jnp.broadcast_to(model.H_init[...], (2, cfg.total_len, cfg.hidden_size))
        inputs = jnp.arange(16, dtype=jnp.int32).reshape(2, 8) % 6
        rows = jnp.ones((2, 16))
        grads.append(jax.grad(lambda p: jnp.sum(nnx.merge(graphdef, p, rest)(z, z, inputs, rows).logits ** 2))(params))
    for a, b in zip(jax.tree_util.tree_leaves(grads[0]), jax.tree_util.tree_leaves(grads[1])):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-6, atol=1e-7)
