"""Layer tests: initialiser, SwiGLU sizing, RoPE, RMSNorm, attention, MLP-t block, parameter counts, config.

References are independent NumPy (float64) re-statements of TRM.md section 2.
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from recur_jax.core import layers
from recur_jax.core.layers import (
    TRUNC_NORMAL_STD,
    Attention,
    Block,
    Buffer,
    apply_rope,
    rms_norm,
    rope_tables,
    swiglu_intermediate_size,
    trunc_normal_init,
)
from recur_jax.core.models import ModelConfig, build_model, count_params


# --------------------------------------------------------------------------------------------------
# NumPy re-statements
# --------------------------------------------------------------------------------------------------


def np_rms_norm(x, eps=1e-5, axis=-1):
    x = np.asarray(x, np.float64)
    return x / np.sqrt(np.mean(x * x, axis=axis, keepdims=True) + eps)


def np_rope_tables(length, d, theta):
    pos = np.arange(length, dtype=np.float64)[:, None]
    i = np.arange(d)[None, :] % (d // 2)
    ang = pos * theta ** (-2.0 * i / d)
    return np.cos(ang), np.sin(ang)


def np_apply_rope(x, cos, sin):
    """x [B, L, H, d]; rotate-half: x*cos + concat(-x2, x1)*sin."""
    x = np.asarray(x, np.float64)
    h = x.shape[-1] // 2
    rot = np.concatenate([-x[..., h:], x[..., :h]], axis=-1)
    return x * cos[None, :, None, :] + rot * sin[None, :, None, :]


def np_silu(x):
    return x / (1.0 + np.exp(-x))


def np_swiglu(x, gate_up, down):
    gu = x @ gate_up
    inter = gate_up.shape[1] // 2
    return (np_silu(gu[..., :inter]) * gu[..., inter:]) @ down


def np_attention(h, w_qkv, w_o, num_heads, rope):
    """h [B, L, D]; w_qkv [D, 3*H*d] with output layout [q heads | k heads | v heads]."""
    B, L, D = h.shape
    d = w_qkv.shape[1] // (3 * num_heads)
    qkv = (h @ w_qkv).reshape(B, L, 3 * num_heads, d)
    q, k, v = qkv[:, :, :num_heads], qkv[:, :, num_heads:2 * num_heads], qkv[:, :, 2 * num_heads:]
    if rope is not None:
        q = np_apply_rope(q, *rope)
        k = np_apply_rope(k, *rope)
    s = np.einsum("bqhd,bkhd->bhqk", q, k) / math.sqrt(d)
    s = s - s.max(-1, keepdims=True)
    p = np.exp(s)
    p = p / p.sum(-1, keepdims=True)
    out = np.einsum("bhqk,bkhd->bqhd", p, v).reshape(B, L, num_heads * d)
    return out @ w_o


def f64(x):
    return np.asarray(jnp.asarray(x, jnp.float32), np.float64)


def randn(seed, shape, scale=1.0, shift=0.0):
    """float32 N(shift, scale^2) test input from NumPy (no per-shape JAX compilation)."""
    x = np.random.default_rng(seed).standard_normal(shape) * scale + shift
    return jnp.asarray(x.astype(np.float32))


def jit_call(module, *args):
    """module(*args) under one jax.jit (much faster on CPU than op-by-op dispatch)."""
    graphdef, state = nnx.split(module)
    return jax.jit(lambda st, *a: nnx.merge(graphdef, st)(*a))(state, *args)


# --------------------------------------------------------------------------------------------------
# swiglu_intermediate_size
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "hidden,expansion,expected",
    [(512, 4, 1536), (97, 4, 512), (916, 4, 2560), (64, 4, 256), (48, 2, 256)],
)
def test_swiglu_intermediate_size_reference_values(hidden, expansion, expected):
    assert swiglu_intermediate_size(hidden, expansion) == expected


def test_swiglu_intermediate_size_uses_bankers_rounding():
    # 0.75 * 513 * 2 / 3 == 256.5 exactly; banker's round -> 256 -> 256; half-up would give 257 -> 512.
    assert 0.75 * 513 * 2 / 3 == 256.5
    assert swiglu_intermediate_size(513, 0.75) == 256
    # 2.25 * 171 * 2 / 3 == 256.5 as well (another expansion).
    assert 2.25 * 171 * 2 / 3 == 256.5
    assert swiglu_intermediate_size(171, 2.25) == 256
    # 512.5 -> 512 (even) -> 512; half-up would give 513 -> 768.
    assert 0.75 * 1025 * 2 / 3 == 512.5
    assert swiglu_intermediate_size(1025, 0.75) == 512
    # 768.5 -> 768 (even) -> 768; half-up would give 769 -> 1024.
    assert 0.75 * 1537 * 2 / 3 == 768.5
    assert swiglu_intermediate_size(1537, 0.75) == 768
    # 1024.5 -> 1024 (even) -> 1024; half-up would give 1025 -> 1280.
    assert 0.75 * 2049 * 2 / 3 == 1024.5
    assert swiglu_intermediate_size(2049, 0.75) == 1024
    # Control: an x.5 that rounds *up* to the even neighbour (255.5 -> 256), and a non-tie.
    assert swiglu_intermediate_size(511, 0.75) == 256
    assert swiglu_intermediate_size(515, 0.75) == 512  # 257.5 -> 258 -> 512


# --------------------------------------------------------------------------------------------------
# trunc_normal_init
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("std", [1.0, 1.0 / math.sqrt(512), 0.02])
def test_trunc_normal_init_std_and_bounds(std):
    w = trunc_normal_init(std)(jax.random.key(0), (1000, 1000), jnp.float32)
    assert w.shape == (1000, 1000) and w.dtype == jnp.float32
    w = np.asarray(w, np.float64)
    assert abs(w.std() / std - 1.0) < 0.01
    assert abs(w.mean()) < 0.01 * std
    bound = 2.0 * std / 0.87962566
    assert np.abs(w).max() <= bound * (1 + 1e-6)
    # The truncation is actually reached (values close to the bound exist): it is not a plain normal
    # clipped elsewhere nor a truncated normal with a smaller range.
    assert np.abs(w).max() > 0.99 * bound


def test_trunc_normal_constant_matches_truncated_normal_std():
    # std of N(0,1) truncated to [-2, 2]: sqrt(1 - 4 phi(2) / (2 Phi(2) - 1)).
    phi2 = math.exp(-2.0) / math.sqrt(2 * math.pi)
    Z = math.erf(2 / math.sqrt(2))
    assert TRUNC_NORMAL_STD == pytest.approx(math.sqrt(1 - 4 * phi2 / Z), rel=1e-12)


def test_trunc_normal_init_zero_std_gives_zeros():
    w = trunc_normal_init(0.0)(jax.random.key(1), (7, 5), jnp.float32)
    assert w.shape == (7, 5)
    np.testing.assert_array_equal(np.asarray(w), np.zeros((7, 5), np.float32))


def test_trunc_normal_init_dtype():
    w = trunc_normal_init(1.0)(jax.random.key(2), (16,), jnp.bfloat16)
    assert w.dtype == jnp.bfloat16


# --------------------------------------------------------------------------------------------------
# RoPE
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("length,d,theta", [(97, 64, 10000.0), (10, 8, 500.0), (33, 16, 10000.0)])
def test_rope_tables_match_numpy(length, d, theta):
    cos, sin = rope_tables(length, d, theta)
    assert cos.shape == (length, d) and sin.shape == (length, d)
    assert cos.dtype == jnp.float32 and sin.dtype == jnp.float32
    ref_cos, ref_sin = np_rope_tables(length, d, theta)
    # Position 0 is the first puzzle-prefix slot: all cos 1, sin 0; angles grow with position.
    np.testing.assert_allclose(np.asarray(cos), ref_cos, rtol=0, atol=1e-5)
    np.testing.assert_allclose(np.asarray(sin), ref_sin, rtol=0, atol=1e-5)


def test_rope_tables_long_sequence_within_float32_angle_rounding():
    # P + S = 916 (Maze/ARC). Like the reference, the angles t * inv_freq are formed in float32, so
    # at t ~ 900 they carry an absolute error of up to ~1e-4 rad (two float32 roundings, 2 * 2^-24
    # relative, plus the pow); a flat 1e-5 against float64 is not attainable there. The bound below
    # is the a-priori float32 bound 3 * 2^-24 * |angle| plus 1e-6 for the cos/sin evaluation.
    length, d = 916, 64
    cos, sin = rope_tables(length, d, 10000.0)
    ref_cos, ref_sin = np_rope_tables(length, d, 10000.0)
    pos = np.arange(length, dtype=np.float64)[:, None]
    angle = pos * 10000.0 ** (-2.0 * (np.arange(d)[None, :] % (d // 2)) / d)
    bound = 3 * 2.0 ** -24 * angle + 1e-6
    assert np.all(np.abs(np.asarray(cos) - ref_cos) <= bound)
    assert np.all(np.abs(np.asarray(sin) - ref_sin) <= bound)
    # The Sudoku-sized prefix of the long table is within the flat 1e-5.
    np.testing.assert_allclose(np.asarray(cos)[:97], ref_cos[:97], rtol=0, atol=1e-5)


def test_rope_tables_are_constants_not_recomputed_in_the_compiled_gradient():
    # Built with jnp inside the step, cos/sin were fused into each RoPE application of the
    # differentiated pass and evaluated per element of [B, L, H, d] (WORKSPACE.md "Performance").
    att = layers.Attention(32, 4, impl="einsum", rngs=nnx.Rngs(0))
    graphdef, params = nnx.split(att)
    h = randn(4, (2, 9, 32))

    def loss(params, h):
        return jnp.sum(nnx.merge(graphdef, params)(h, rope_tables(9, 8, 10000.0)) ** 2)

    hlo = jax.jit(jax.grad(loss)).lower(params, h).compile().as_text()
    assert " sine(" not in hlo and " cosine(" not in hlo


def test_rope_positions_include_prefix():
    # The grid token k of a model with a 16-slot prefix sits at position 16 + k: row 16 of the
    # table for total length 97 equals cos(16 * inv_freq).
    cos, sin = rope_tables(97, 64, 10000.0)
    inv = 10000.0 ** (-np.arange(0, 64, 2) / 64.0)
    np.testing.assert_allclose(np.asarray(cos)[16, :32], np.cos(16 * inv), atol=1e-5)
    np.testing.assert_allclose(np.asarray(sin)[16, 32:], np.sin(16 * inv), atol=1e-5)


def test_apply_rope_matches_numpy_and_preserves_pair_norms():
    B, L, H, d = 2, 13, 3, 16
    x = randn(3, (B, L, H, d), scale=2.0)
    cos, sin = rope_tables(L, d, 10000.0)
    y = apply_rope(x, cos, sin)
    assert y.dtype == jnp.float32 and y.shape == x.shape
    ref = np_apply_rope(f64(x), f64(cos), f64(sin))
    np.testing.assert_allclose(np.asarray(y), ref, rtol=1e-5, atol=1e-5)
    # Each (i, i + d/2) pair is rotated by an angle: its norm is preserved.
    xn, yn = f64(x), f64(y)
    h = d // 2
    pair_x = np.hypot(xn[..., :h], xn[..., h:])
    pair_y = np.hypot(yn[..., :h], yn[..., h:])
    np.testing.assert_allclose(pair_y, pair_x, rtol=1e-5, atol=1e-6)
    # Position 0 is the identity.
    np.testing.assert_allclose(yn[:, 0], xn[:, 0], rtol=0, atol=1e-7)


def test_apply_rope_bfloat16_roundtrip_dtype():
    x = randn(4, (1, 5, 2, 8)).astype(jnp.bfloat16)
    cos, sin = rope_tables(5, 8, 10000.0)
    y = apply_rope(x, cos, sin)
    assert y.dtype == jnp.bfloat16
    ref = np_apply_rope(f64(x), f64(cos), f64(sin))
    np.testing.assert_allclose(f64(y), ref, rtol=1e-2, atol=1e-2)  # one bf16 rounding of the result


# --------------------------------------------------------------------------------------------------
# RMSNorm
# --------------------------------------------------------------------------------------------------


def test_rms_norm_last_axis_matches_numpy():
    x = randn(5, (3, 7, 32), scale=3.0, shift=0.5)
    y = rms_norm(x, 1e-5)
    assert y.dtype == jnp.float32
    np.testing.assert_allclose(np.asarray(y), np_rms_norm(f64(x), 1e-5, -1), rtol=1e-5, atol=1e-6)


def test_rms_norm_other_axis_matches_numpy():
    x = randn(6, (3, 7, 32), scale=3.0, shift=0.5)
    y = rms_norm(x, 1e-5, axis=1)
    ref = np_rms_norm(f64(x), 1e-5, 1)
    np.testing.assert_allclose(np.asarray(y), ref, rtol=1e-5, atol=1e-6)
    # ... and it is really a different normalisation from the last axis.
    assert np.abs(ref - np_rms_norm(f64(x), 1e-5, -1)).max() > 0.1


def test_rms_norm_eps_matters_for_small_inputs():
    x = jnp.full((1, 4), 1e-3, jnp.float32)
    y = rms_norm(x, 1e-5)
    np.testing.assert_allclose(np.asarray(y), np_rms_norm(f64(x), 1e-5), rtol=1e-5)
    assert float(y[0, 0]) < 0.5  # 1e-3 / sqrt(1e-6 + 1e-5) ~ 0.30, not 1


def test_rms_norm_bfloat16_keeps_dtype():
    x = (randn(7, (4, 64), scale=5.0)).astype(jnp.bfloat16)
    y = rms_norm(x, 1e-5)
    assert y.dtype == jnp.bfloat16
    ref = np_rms_norm(f64(x), 1e-5)
    # Computed in float32 from the bf16 values, rounded once to bf16 (relative error <= 2^-8).
    np.testing.assert_allclose(f64(y), ref, rtol=2.0 ** -8, atol=1e-6)


# --------------------------------------------------------------------------------------------------
# Attention and blocks
# --------------------------------------------------------------------------------------------------


def _randomise(module, seed, scale=1.0):
    """Replaces every Param with N(0, scale^2 / fan_in)-ish random values (float32)."""
    state = nnx.state(module, nnx.Param)
    leaves, treedef = jax.tree_util.tree_flatten(state)
    rng = np.random.default_rng(seed)
    new = [jnp.asarray((rng.standard_normal(v.shape) * (scale / math.sqrt(v.shape[0]))).astype(np.float32))
           for v in leaves]
    nnx.update(module, jax.tree_util.tree_unflatten(treedef, new))


@pytest.mark.parametrize("use_rope", [True, False])
def test_attention_matches_numpy(use_rope):
    B, L, D, H = 2, 11, 32, 4
    attn = Attention(D, H, rngs=nnx.Rngs(0))
    _randomise(attn, 10, scale=1.5)  # larger than init, so the softmax is not nearly uniform
    h = randn(11, (B, L, D))
    rope = rope_tables(L, D // H, 10000.0) if use_rope else None
    y = jit_call(attn, h, rope)
    assert y.shape == (B, L, D) and y.dtype == jnp.float32
    ref_rope = (f64(rope[0]), f64(rope[1])) if use_rope else None
    ref = np_attention(f64(h), f64(attn.qkv_proj.kernel[...]), f64(attn.o_proj.kernel[...]), H, ref_rope)
    np.testing.assert_allclose(np.asarray(y), ref, rtol=1e-5, atol=1e-5)


def test_attention_head_layout_is_q_k_v_blocks():
    # Swap the q and k column blocks of the fused projection: the score matrix transposes, so the
    # output changes unless the layout is [q heads | k heads | v heads] as the NumPy reference assumes.
    B, L, D, H = 1, 6, 16, 2
    attn = Attention(D, H, rngs=nnx.Rngs(1))
    _randomise(attn, 12, scale=2.0)
    h = randn(13, (B, L, D))
    w = f64(attn.qkv_proj.kernel[...])
    # Interleaved layout (q0 k0 v0 q1 k1 v1 ...) re-statement gives a different answer.
    d = D // H
    perm = np.concatenate([np.arange(j * 3 * d + c * d, j * 3 * d + (c + 1) * d)
                           for c in range(3) for j in range(H)])
    wrong = np_attention(f64(h), w[:, perm], f64(attn.o_proj.kernel[...]), H, None)
    right = np_attention(f64(h), w, f64(attn.o_proj.kernel[...]), H, None)
    y = np.asarray(jit_call(attn, h, None))
    np.testing.assert_allclose(y, right, rtol=1e-5, atol=1e-5)
    assert np.abs(y - wrong).max() > 1e-2


def test_swiglu_module_matches_numpy():
    sw = layers.SwiGLU(24, 4.0, rngs=nnx.Rngs(2))
    inter = swiglu_intermediate_size(24, 4.0)
    assert sw.gate_up_proj.kernel.shape == (24, 2 * inter)
    assert sw.down_proj.kernel.shape == (inter, 24)
    _randomise(sw, 14)
    x = randn(15, (3, 5, 24))
    ref = np_swiglu(f64(x), f64(sw.gate_up_proj.kernel[...]), f64(sw.down_proj.kernel[...]))
    np.testing.assert_allclose(np.asarray(jit_call(sw, x)), ref, rtol=1e-5, atol=1e-5)


def test_casted_linear_kernel_gradient_writes_no_transposed_copy_of_the_output_gradient():
    # [B, L, in] inputs are flattened to [B*L, in] (CastedLinear.__call__): XLA:CPU then computes the
    # kernel gradient x^T g straight from g, instead of first writing g transposed as [out, B*L]
    # (about 10% of a one-core TRM-Att step, WORKSPACE.md "Performance").
    lin = layers.CastedLinear(16, 64, rngs=nnx.Rngs(0))
    graphdef, params = nnx.split(lin)
    x = jnp.ones((4, 7, 16), jnp.float32)
    c = jnp.asarray(np.random.RandomState(0).randn(4, 7, 64).astype(np.float32))

    def loss(params, x):
        return jnp.sum(nnx.merge(graphdef, params)(x) * c)

    g_params, g_x = jax.grad(loss, argnums=(0, 1))(params, x)
    np.testing.assert_allclose(np.asarray(g_params["kernel"][...]),
                               np.einsum("blk,blm->km", np.asarray(x), np.asarray(c)), rtol=1e-5, atol=1e-5)
    assert g_x.shape == x.shape
    hlo = jax.jit(jax.grad(loss)).lower(params, x).compile().as_text()
    transposed_g = [line for line in hlo.splitlines() if "f32[64,28]" in line]
    assert not transposed_g, "\n".join(transposed_g)


@pytest.mark.parametrize("n_in,n_out", [(48, 12), (12, 48)])
def test_linear_product_gradients_match_float64_and_a_narrowing_kernel_gradient_is_computed_wide(n_in, n_out):
    # On CPU: for in > out the kernel gradient is computed as (g^T x)^T: the product writes [out, in]
    # and only the small result is transposed (x^T g with a narrow [in, out] output runs at half the
    # rate on XLA:CPU, WORKSPACE.md "Performance"); for in <= out x^T g is kept. dx reads a copy of
    # w^T. Values as float64.
    x = randn(20, (30, n_in))
    w = randn(21, (n_in, n_out))
    g = randn(22, (30, n_out))
    y, vjp = jax.vjp(layers.linear_product, jnp.asarray(x), jnp.asarray(w))
    dx, dw = vjp(jnp.asarray(g))
    np.testing.assert_allclose(np.asarray(y), f64(x) @ f64(w), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(np.asarray(dx), f64(g) @ f64(w).T, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(np.asarray(dw), f64(x).T @ f64(g), rtol=1e-5, atol=1e-5)

    def loss(x, w):
        return jnp.sum(layers.linear_product(x, w) * jnp.asarray(g))

    hlo = jax.jit(jax.grad(loss, argnums=1)).lower(jnp.asarray(x), jnp.asarray(w)).compile().as_text()
    products = [line for line in hlo.splitlines() if " dot(" in line]
    assert products, hlo
    wide = f"f32[{min(n_in, n_out)},{max(n_in, n_out)}]"
    assert all(f"= {wide}" in line for line in products), "\n".join(products)
    # dx = g w^T reads a written-out copy of w^T ([out, in], row-major), not w transposed in place
    hlo = jax.jit(jax.grad(loss, argnums=0)).lower(jnp.asarray(x), jnp.asarray(w)).compile().as_text()
    copies = [line for line in hlo.splitlines() if f"= f32[{n_out},{n_in}]{{1,0}}" in line]
    assert copies, hlo


def test_linear_product_rejects_operands_its_backward_cannot_handle():
    with pytest.raises(ValueError, match=r"x \[N, in\] and w \[in, out\] of one dtype.*float32\[4, 3, 2\]"):
        layers.linear_product(jnp.ones((4, 3, 2)), jnp.ones((2, 5)))
    with pytest.raises(ValueError, match="bfloat16"):
        layers.linear_product(jnp.ones((4, 2)), jnp.ones((2, 5), jnp.bfloat16))
    with pytest.raises(ValueError, match=r"float32\[4, 3\] and w float32\[2, 5\]"):
        layers.linear_product(jnp.ones((4, 3)), jnp.ones((2, 5)))


def test_swiglu_gate_gradient_matches_float64_derivative():
    """The hand-written VJP of silu(gate) * up against the analytic derivative in float64."""
    a = randn(16, (4, 7, 2 * 24)) * 3.0
    g = randn(17, (4, 7, 24))
    y, vjp = jax.vjp(layers.swiglu_gate, jnp.asarray(a))
    (d,) = vjp(jnp.asarray(g))
    gate, up = f64(a)[..., :24], f64(a)[..., 24:]
    sig = 1.0 / (1.0 + np.exp(-gate))
    np.testing.assert_allclose(np.asarray(y), gate * sig * up, rtol=1e-5, atol=1e-5)
    d_gate = f64(g) * up * (sig + gate * sig * (1.0 - sig))
    d_up = f64(g) * gate * sig
    np.testing.assert_allclose(np.asarray(d), np.concatenate([d_gate, d_up], axis=-1), rtol=1e-5, atol=1e-5)
    # and the same as automatic differentiation of the plain formula
    (d_auto,) = jax.vjp(lambda t: jax.nn.silu(t[..., :24]) * t[..., 24:], jnp.asarray(a))[1](jnp.asarray(g))
    np.testing.assert_allclose(np.asarray(d), np.asarray(d_auto), rtol=1e-5, atol=1e-5)


def test_swiglu_gate_bfloat16_gradient_dtype_and_accuracy():
    a = jnp.asarray(randn(18, (3, 5, 32))).astype(jnp.bfloat16)
    g = jnp.asarray(randn(19, (3, 5, 16))).astype(jnp.bfloat16)
    (d,) = jax.vjp(layers.swiglu_gate, a)[1](g)
    assert d.dtype == jnp.bfloat16
    (d32,) = jax.vjp(layers.swiglu_gate, a.astype(jnp.float32))[1](g.astype(jnp.float32))
    # float32 math inside, one bfloat16 rounding at the end (relative 2^-8)
    np.testing.assert_allclose(np.asarray(d, np.float32), np.asarray(d32), rtol=2 ** -8, atol=1e-6)


def _np_block_mlp_t(h, blk, eps, token_axis_norm=True):
    u = np.swapaxes(h, 1, 2)  # [B, D, L]
    u = u + np_swiglu(u, f64(blk.mlp_t.gate_up_proj.kernel[...]), f64(blk.mlp_t.down_proj.kernel[...]))
    if token_axis_norm:
        u = np_rms_norm(u, eps, axis=-1)  # over the sequence axis L
        h = np.swapaxes(u, 1, 2)
    else:
        h = np_rms_norm(np.swapaxes(u, 1, 2), eps, axis=-1)  # the wrong port: over D
    h = h + np_swiglu(h, f64(blk.mlp.gate_up_proj.kernel[...]), f64(blk.mlp.down_proj.kernel[...]))
    return np_rms_norm(h, eps, axis=-1)


def test_block_mlp_t_normalises_over_sequence_axis():
    B, L, D = 2, 9, 16
    eps = 1e-5
    blk = Block(hidden=D, num_heads=4, expansion=4.0, mlp_t=True, total_len=L, eps=eps, rngs=nnx.Rngs(3))
    assert not hasattr(blk, "self_attn") or blk.self_attn is None
    assert blk.mlp_t.gate_up_proj.kernel.shape == (L, 2 * swiglu_intermediate_size(L, 4.0))
    _randomise(blk, 16)
    h = randn(17, (B, L, D), scale=2.0, shift=0.3)
    y = np.asarray(jit_call(blk, h, None))
    ref = _np_block_mlp_t(f64(h), blk, eps, token_axis_norm=True)
    np.testing.assert_allclose(y, ref, rtol=1e-5, atol=1e-5)
    wrong = _np_block_mlp_t(f64(h), blk, eps, token_axis_norm=False)
    assert np.abs(y - wrong).max() > 1e-2


def test_block_mlp_t_token_norm_directly():
    # Isolate the token-mixing half: with the channel MLP zeroed, the output is
    # RMSNorm_D(t + 0) where t = transpose(RMSNorm_L(u + mlp_t(u))). Check the intermediate t has
    # unit RMS over the sequence axis for each channel.
    B, L, D = 1, 7, 8
    blk = Block(hidden=D, num_heads=2, expansion=2.0, mlp_t=True, total_len=L, eps=1e-5, rngs=nnx.Rngs(4))
    _randomise(blk, 18)
    h = randn(19, (B, L, D), scale=4.0)
    u = jnp.swapaxes(h, 1, 2)
    t = jnp.swapaxes(rms_norm(u + jit_call(blk.mlp_t, u), 1e-5), 1, 2)  # the layer's own primitives
    rms_over_L = np.sqrt(np.mean(f64(t) ** 2, axis=1))
    np.testing.assert_allclose(rms_over_L, np.ones_like(rms_over_L), rtol=1e-4)
    ref_t = np.swapaxes(np_rms_norm(np.swapaxes(f64(h), 1, 2)
                                    + np_swiglu(np.swapaxes(f64(h), 1, 2),
                                                f64(blk.mlp_t.gate_up_proj.kernel[...]),
                                                f64(blk.mlp_t.down_proj.kernel[...])), 1e-5, -1), 1, 2)
    np.testing.assert_allclose(np.asarray(t), ref_t, rtol=1e-5, atol=1e-5)


def test_block_attention_variant_matches_numpy():
    B, L, D, H = 2, 10, 32, 4
    eps = 1e-5
    blk = Block(hidden=D, num_heads=H, expansion=4.0, mlp_t=False, total_len=L, eps=eps, rngs=nnx.Rngs(5))
    _randomise(blk, 20)
    h = randn(21, (B, L, D))
    rope = rope_tables(L, D // H, 10000.0)
    y = np.asarray(jit_call(blk, h, rope))
    hn = f64(h)
    a = np_attention(hn, f64(blk.self_attn.qkv_proj.kernel[...]), f64(blk.self_attn.o_proj.kernel[...]), H,
                     (f64(rope[0]), f64(rope[1])))
    hn = np_rms_norm(hn + a, eps)  # post-norm
    hn = np_rms_norm(hn + np_swiglu(hn, f64(blk.mlp.gate_up_proj.kernel[...]), f64(blk.mlp.down_proj.kernel[...])),
                     eps)
    np.testing.assert_allclose(y, hn, rtol=1e-5, atol=1e-5)


# --------------------------------------------------------------------------------------------------
# Parameter counts and model-level initialisation
# --------------------------------------------------------------------------------------------------

TRM_SUDOKU_MLP = dict(mlp_t=True, pos_encodings="none", vocab_size=11, seq_len=81, puzzle_emb_len=16)
TRM_SUDOKU_ATT = dict(vocab_size=11, seq_len=81)
TRM_ARC_ATT = dict(vocab_size=12, seq_len=900, L_cycles=4)
TRM_MAZE_ATT = dict(vocab_size=6, seq_len=900)
HRM_SUDOKU = dict(arch="hrm", H_layers=4, L_layers=4, H_cycles=2, L_cycles=2, puzzle_emb_len=0,
                  no_ACT_continue=False, grad_mode="one_step", vocab_size=11, seq_len=81)
BASELINE_8 = dict(arch="transformer", H_layers=8, puzzle_emb_len=0, vocab_size=11, seq_len=81)


@pytest.mark.parametrize(
    "kwargs,expected",
    [(TRM_SUDOKU_MLP, 5_028_866), (TRM_SUDOKU_ATT, 6_828_034), (TRM_ARC_ATT, 6_829_058),
     (TRM_MAZE_ATT, 6_822_914)],
    ids=["trm_mlp_sudoku", "trm_att_sudoku", "trm_att_arc", "trm_att_maze"],
)
def test_trm_param_counts(kwargs, expected):
    assert _abstract_count(ModelConfig(**kwargs)) == expected


def _abstract_count(cfg):
    # count_params(build_model(cfg, nnx.Rngs(0))) with the construction traced abstractly: the same
    # code path and shapes, without materialising millions of random values eagerly on CPU.
    return count_params(nnx.eval_shape(lambda: build_model(cfg, nnx.Rngs(0))))


@pytest.fixture(scope="module", params=["bfloat16", "float32"])
def sudoku_mlp_model(request):
    """A concrete TRM-MLP Sudoku model in each compute dtype (the second build reuses compiled init ops)."""
    cfg = ModelConfig(**TRM_SUDOKU_MLP, forward_dtype=request.param)
    return cfg, build_model(cfg, nnx.Rngs(0))


def test_concrete_count_equals_reference(sudoku_mlp_model):
    # Concrete builds, checking the abstract count above is the count of a real model.
    cfg, model = sudoku_mlp_model
    assert count_params(model) == _abstract_count(cfg) == 5_028_866


def test_hrm_and_baseline_param_counts():
    hrm = _abstract_count(ModelConfig(**HRM_SUDOKU))
    assert hrm == 27_275_266
    assert _abstract_count(ModelConfig(**BASELINE_8)) == hrm


def test_trm_mlp_maze_param_count():
    # TRM.md 2.8: MLP-t Maze (L = 916) 18,795,522.
    cfg = ModelConfig(mlp_t=True, pos_encodings="none", vocab_size=6, seq_len=900, puzzle_emb_len=16)
    assert _abstract_count(cfg) == 18_795_522


def test_heads_and_latent_init_buffers(sudoku_mlp_model):
    cfg, model = sudoku_mlp_model
    dtype = cfg.forward_dtype
    D = cfg.hidden_size
    np.testing.assert_array_equal(np.asarray(model.q_head.kernel[...]), np.zeros((D, 2), np.float32))
    np.testing.assert_array_equal(np.asarray(model.q_head.bias[...]), np.full((2,), -5.0, np.float32))
    assert model.q_head.kernel[...].dtype == jnp.float32
    for name in ("H_init", "L_init"):
        var = getattr(model, name)
        assert isinstance(var, Buffer)
        assert not isinstance(var, nnx.Param)
        assert var[...].shape == (D,)
        assert var[...].dtype == jnp.dtype(dtype)
        # Truncated normal with std 1 (TRM.md 2.2): bounded by 2 / 0.8796 and not constant.
        v = f64(var[...])
        assert np.abs(v).max() <= 2.0 / 0.87962566 + 1e-2 and v.std() > 0.5
    assert not np.array_equal(f64(model.H_init[...]), f64(model.L_init[...]))
    # Buffers are not parameters: excluded from the Param state and the count.
    params = nnx.state(model, nnx.Param)
    n_buffers = sum(int(x.size) for x in jax.tree_util.tree_leaves(nnx.state(model, Buffer)))
    assert n_buffers == 2 * D
    assert count_params(model) == sum(int(x.size) for x in jax.tree_util.tree_leaves(params))
    # Every parameter is a float32 master weight.
    assert all(x.dtype == jnp.float32 for x in jax.tree_util.tree_leaves(params))


# --------------------------------------------------------------------------------------------------
# ModelConfig validation
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "field,value",
    [("arch", "rnn"), ("pos_encodings", "sinusoidal"), ("grad_mode", "half"), ("loss_type", "mse"),
     ("forward_dtype", "float8"), ("hidden_size", 0), ("halt_exploration_prob", 1.5), ("H_cycles", 0)],
)
def test_model_config_bad_value_names_field(field, value):
    with pytest.raises(ValueError, match=field):
        ModelConfig(**{field: value})


def test_model_config_mlp_t_with_rope_rejected():
    with pytest.raises(ValueError, match="pos_encodings"):
        ModelConfig(mlp_t=True, pos_encodings="rope")


def test_model_config_from_dict_misspelt_key_lists_valid_keys():
    with pytest.raises(ValueError) as info:
        ModelConfig.from_dict({"hiden_size": 256, "vocab_size": 11})
    msg = str(info.value)
    assert "hiden_size" in msg
    for valid in ("hidden_size", "vocab_size", "H_cycles", "L_cycles", "mlp_t"):
        assert valid in msg


def test_model_config_from_dict_valid():
    cfg = ModelConfig.from_dict({"hidden_size": 256, "num_heads": 4, "vocab_size": 6})
    assert cfg.hidden_size == 256 and cfg.head_dim == 64 and cfg.vocab_size == 6
    assert cfg.total_len == 16 + 81
