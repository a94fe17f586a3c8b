"""Layers of HRM/TRM: casted linear and embedding, weightless RMSNorm, SwiGLU, RoPE, attention, blocks.

Dtype policy (TRM.md 2.1, HRM.md 2.8): parameters are float32 "master" weights; every layer casts its
weights to the dtype of its input (the model's `forward_dtype`: bfloat16 on accelerators, float32 on
CPU and for parity) and computes in that dtype. RMSNorm and the RoPE rotation run in float32 and
round back. Blocks are post-norm: `h = RMSNorm(h + sublayer(h))`.

A float64 compute dtype (`forward_dtype="float64"`, only under JAX's x64 mode) exists for the rounding
floor of the parity checks (`launch.parity --x64`): then every place that computes in float32 above
computes in float64 instead (`accum_dtype`), so nothing is rounded to float32 on the way.
"""

from __future__ import annotations

import math
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

# Std of a standard normal truncated to [-2, 2]; dividing by it makes the truncated normal's actual
# std equal the target (TRM.md 2.2, the reference's `trunc_normal_init_`, JAX's variance_scaling).
TRUNC_NORMAL_STD = 0.87962566103423978

Initializer = Callable[[jax.Array, tuple[int, ...], jnp.dtype], jax.Array]


class Buffer(nnx.Variable):
    """A persistent, non-trainable tensor (H_init, L_init): saved and loaded, never differentiated or decayed."""


def trunc_normal_init(std: float) -> Initializer:
    """Truncated-normal initialiser with actual standard deviation `std` (the reference's convention).

    Samples N(0, 1) truncated to [-2, 2], scaled by std / 0.87962566, so values lie within
    +-2.2737 * std and the empirical std is `std`. `std == 0` gives zeros (the puzzle table).
    This differs from `jax.nn.initializers.truncated_normal(std)`, whose actual std is 0.88 * std.

    Returns:
      init(key, shape, dtype) -> array of `shape` and `dtype` (float32 by default).
    """

    def init(key: jax.Array, shape: tuple[int, ...], dtype: jnp.dtype = jnp.float32) -> jax.Array:
        if std == 0:
            return jnp.zeros(shape, dtype)
        x = jax.random.truncated_normal(key, -2.0, 2.0, shape, jnp.float32)
        return (x * (std / TRUNC_NORMAL_STD)).astype(dtype)

    return init


def accum_dtype(dtype: jnp.dtype) -> jnp.dtype:
    """The dtype of the float32 islands (norms, RoPE, softmax, losses, optimizer maths) for a compute dtype.

    Args:
      dtype: the compute dtype (bfloat16, float16, float32 or float64).
    Returns:
      float64 when `dtype` is float64 (the rounding-floor runs), else float32.
    """
    return jnp.dtype(jnp.float64) if jnp.dtype(dtype) == jnp.float64 else jnp.dtype(jnp.float32)


def swiglu_intermediate_size(hidden: int, expansion: float) -> int:
    """Intermediate width of the reference SwiGLU: ceil_256(round(expansion * hidden * 2 / 3)).

    `round` is Python's banker's rounding, as in the reference (`_find_multiple(round(...), 256)`).
    Examples: (512, 4) -> 1536; (97, 4) -> 512; (916, 4) -> 2560.
    """
    inter = round(expansion * hidden * 2 / 3)
    return -(inter // -256) * 256


def rms_norm(x: jax.Array, eps: float, axis: int = -1) -> jax.Array:
    """RMSNorm without gain (TRM.md 2.3): x * rsqrt(mean(x^2) + eps), computed in float32 (`accum_dtype`).

    Args:
      x: [..., N] any float dtype.
      eps: variance epsilon (1e-5 in both papers).
      axis: the normalised axis (the sequence axis for the MLP-t token mixer).
    Returns:
      Same shape and dtype as `x`.
    """
    x32 = x.astype(accum_dtype(x.dtype))
    var = jnp.mean(jnp.square(x32), axis=axis, keepdims=True)
    return (x32 * jax.lax.rsqrt(var + eps)).astype(x.dtype)


@jax.custom_vjp
def linear_product(x: jax.Array, w: jax.Array) -> jax.Array:
    """x @ w for x [N, in], w [in, out] (same dtype) -> [N, out], with CPU-friendly gradient products.

    The forward and both gradients are the usual ones (dx = g w^T, dw = x^T g); on CPU only how they
    are computed differs (elsewhere the plain products are used). The choice is made at trace time from
    `jax.default_backend()`: `lax.platform_dependent` would add a conditional that, under remat, changes
    how XLA:CPU fuses the products and so their float32 rounding. Measured on one core of XLA:CPU
    (WORKSPACE.md, "Performance"):
    - dx: with w^T written out first (a copy of the small weight), g w^T is a plain product and runs
      at 95-110 GFLOP/s; left to XLA, the product reads w transposed and runs at 60-90 when
      out > in (the gate/up and QKV projections).
    - dw when in > out (the SwiGLU down projections, [512, 128] and TRM-MLP's [512, 97]): x^T g
      with a narrow [in, out] output runs at 44-56 GFLOP/s, the same product computed as (g^T x)^T,
      [out, in] then transposed, at 100-106. When in <= out, x^T g is already the faster form.
    XLA's algebraic simplifier folds such transposes back into the products, so optimisation barriers
    keep them apart.

    Reverse mode only (a custom VJP): `jax.jvp` / `jacfwd` through it raise TypeError; grad of grad works.

    Args:
      x: [N, in] float (the flattened rows).
      w: [in, out], the dtype of x.
    Returns:
      [N, out], the dtype of x.
    Raises:
      ValueError: x or w is not 2-D, their inner sizes differ, or their dtypes differ.
    """
    return _checked_product(x, w)


def _checked_product(x: jax.Array, w: jax.Array) -> jax.Array:
    if x.ndim != 2 or w.ndim != 2 or x.shape[1] != w.shape[0] or x.dtype != w.dtype:
        raise ValueError(f"linear_product: expected x [N, in] and w [in, out] of one dtype, got x "
                         f"{x.dtype}{list(x.shape)} and w {w.dtype}{list(w.shape)}")
    return jnp.matmul(x, w)


def _linear_product_fwd(x: jax.Array, w: jax.Array):
    return _checked_product(x, w), (x, w)


def _linear_product_bwd(res, g: jax.Array):
    x, w = res
    if jax.default_backend() != "cpu":
        return jnp.matmul(g, w.T), jnp.matmul(x.T, g)
    dx = jnp.matmul(g, jax.lax.optimization_barrier(w.T))
    if w.shape[0] > w.shape[1]:
        dw = jax.lax.optimization_barrier(jnp.matmul(g.T, x)).T
    else:
        dw = jnp.matmul(x.T, g)
    return dx, dw


linear_product.defvjp(_linear_product_fwd, _linear_product_bwd)


class CastedLinear(nnx.Module):
    """Linear map with float32 parameters cast to the input's dtype (the reference's CastedLinear).

    Kernel layout is [in, out] (the PyTorch weight is [out, in]; `convert.py` transposes).
    Default init: truncated LeCun normal, std = 1/sqrt(in_features); bias zeros.
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        *,
        use_bias: bool = False,
        kernel_init: Initializer | None = None,
        bias_init: Initializer | None = None,
        rngs: nnx.Rngs,
    ):
        kernel_init = kernel_init or trunc_normal_init(1.0 / math.sqrt(in_features))
        self.kernel = nnx.Param(kernel_init(rngs.params(), (in_features, out_features), jnp.float32))
        if use_bias:
            bias_init = bias_init or (lambda key, shape, dtype=jnp.float32: jnp.zeros(shape, dtype))
            self.bias = nnx.Param(bias_init(rngs.params(), (out_features,), jnp.float32))
        else:
            self.bias = None

    def __call__(self, x: jax.Array) -> jax.Array:
        """[..., in] (compute dtype) -> [..., out] in the same dtype.

        The leading dimensions are flattened into one before the product (a free reshape): with a
        2-D [N, in] operand XLA:CPU computes the kernel gradient x^T g without first writing a
        transposed copy of g, which it does for a [B, L, in] operand (WORKSPACE.md, "Performance").
        """
        lead = x.shape[:-1]
        y = linear_product(x.reshape(-1, x.shape[-1]), self.kernel[...].astype(x.dtype))
        y = y.reshape(*lead, y.shape[-1])
        if self.bias is not None:
            y = y + self.bias[...].astype(x.dtype)
        return y


class CastedEmbedding(nnx.Module):
    """Embedding table [num, dim] float32, cast to the compute dtype before the gather.

    Init: truncated normal with std `init_std` (1/sqrt(D) for tokens and learned positions).
    """

    def __init__(self, num: int, dim: int, *, init_std: float, rngs: nnx.Rngs):
        self.embedding = nnx.Param(trunc_normal_init(init_std)(rngs.params(), (num, dim), jnp.float32))

    def __call__(self, ids: jax.Array, dtype: jnp.dtype) -> jax.Array:
        """ids [...] int32 -> [..., dim] in `dtype`."""
        return jnp.take(self.embedding[...].astype(dtype), ids, axis=0)


class SwiGLU(nnx.Module):
    """SwiGLU MLP: down(silu(gate) * up) with [gate | up] = gate_up(x) (gate first), no biases.

    Used over channels (hidden = D) and, in TRM-MLP, over the sequence axis (hidden = P + S).
    """

    def __init__(self, hidden: int, expansion: float, *, rngs: nnx.Rngs):
        inter = swiglu_intermediate_size(hidden, expansion)
        self.gate_up_proj = CastedLinear(hidden, 2 * inter, rngs=rngs)
        self.down_proj = CastedLinear(inter, hidden, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        """[..., hidden] -> [..., hidden], same dtype."""
        return self.down_proj(swiglu_gate(self.gate_up_proj(x)))


@jax.custom_vjp
def swiglu_gate(gate_up: jax.Array) -> jax.Array:
    """silu(gate) * up of [gate | up] = gate_up (the reference's SwiGLU activation, gate first).

    A custom VJP keeps only `gate_up` (already materialised by the projection) for the backward pass
    and computes d[gate | up] in one elementwise pass; automatic differentiation of
    `jax.nn.silu(gate) * up` instead materialises sigmoid, silu and their products as separate
    residual buffers, which XLA:CPU spends about 5x the activation's own time on (WORKSPACE.md,
    "Performance"). The maths is the same: d gate = g * up * s * (1 + gate * (1 - s)), d up = g *
    silu(gate), s = sigmoid(gate).

    Args:
      gate_up: [..., 2 * I] any float dtype.
    Returns:
      [..., I], same dtype.
    """
    gate, up = jnp.split(gate_up, 2, axis=-1)
    return jax.nn.silu(gate) * up


def _swiglu_gate_fwd(gate_up: jax.Array) -> tuple[jax.Array, jax.Array]:
    return swiglu_gate(gate_up), gate_up


def _swiglu_gate_bwd(gate_up: jax.Array, g: jax.Array) -> tuple[jax.Array]:
    # The barrier stops XLA from sharing sigmoid(gate) with the forward pass (CSE), which would keep it
    # as one more residual buffer; it is recomputed here instead.
    gate_up = jax.lax.optimization_barrier(gate_up)
    acc = accum_dtype(gate_up.dtype)  # float32 math, as torch's silu backward
    gate, up = jnp.split(gate_up.astype(acc), 2, axis=-1)
    g = g.astype(acc)
    s = jax.nn.sigmoid(gate)
    d_gate = g * up * (s * (1 + gate * (1 - s)))
    d_up = g * (gate * s)
    return (jnp.concatenate([d_gate, d_up], axis=-1).astype(gate_up.dtype),)


swiglu_gate.defvjp(_swiglu_gate_fwd, _swiglu_gate_bwd)


def rope_tables(length: int, head_dim: int, theta: float, dtype: jnp.dtype = np.float32
                ) -> tuple[jax.Array, jax.Array]:
    """RoPE cos/sin tables (rotate-half convention), positions 0..length-1 including the puzzle prefix.

    Computed once at trace time with NumPy in float32, the reference's dtype for inv_freq, the angles
    and cos/sin, and returned as constants. Computed with jnp inside the jitted step instead, XLA
    fuses cos and sin into every RoPE application of the differentiated sweep and re-evaluates them
    per element of [B, L, H, d] with scalar libm calls: about 8% of a CPU training step
    (WORKSPACE.md, "Performance").

    Args:
      length: L, positions 0..L-1; head_dim: d (even); theta: the RoPE base.
      dtype: float32 (the reference) or float64 (the rounding-floor runs, `accum_dtype`).
    Returns:
      (cos, sin), each [length, head_dim] of `dtype`, of concat(freqs, freqs) with
      freqs[t, i] = t * theta^(-2i/head_dim).
    """
    f = np.dtype(dtype).type
    inv_freq = f(1.0) / (f(theta) ** (np.arange(0, head_dim, 2, dtype=f) / f(head_dim)))
    t = np.arange(length, dtype=f)
    freqs = np.outer(t, inv_freq)
    emb = np.concatenate([freqs, freqs], axis=-1)
    return jnp.asarray(np.cos(emb)), jnp.asarray(np.sin(emb))


def apply_rope(x: jax.Array, cos: jax.Array, sin: jax.Array) -> jax.Array:
    """Rotates x [B, L, H, d] with tables [L, d] (rotate-half, GPT-NeoX); math in float32 (`accum_dtype`),
    result in x.dtype."""
    x32 = x.astype(accum_dtype(x.dtype))
    half = x.shape[-1] // 2
    rotated = jnp.concatenate([-x32[..., half:], x32[..., :half]], axis=-1)
    out = x32 * cos[:, None, :] + rotated * sin[:, None, :]
    return out.astype(x.dtype)


def einsum_attention(q: jax.Array, k: jax.Array, v: jax.Array) -> jax.Array:
    """softmax(q k^T / sqrt(d)) v over heads-first einsums, softmax in float32 (no mask).

    q, k, v: [B, L, H, d] (compute dtype) -> [B, L, H, d] in the same dtype. The maths of
    `jax.nn.dot_product_attention` with a canonical batched-matmul layout [B, H, L, d].
    """
    q, k, v = (jnp.swapaxes(t, 1, 2) for t in (q, k, v))
    scores = jnp.einsum("bhqd,bhkd->bhqk", q, k, preferred_element_type=accum_dtype(q.dtype)) * (q.shape[-1] ** -0.5)
    probs = jax.nn.softmax(scores, axis=-1).astype(v.dtype)
    return jnp.swapaxes(jnp.einsum("bhqk,bhkd->bhqd", probs, v), 1, 2)


class Attention(nnx.Module):
    """Non-causal multi-head self-attention with a fused QKV projection (TRM.md 2.4, HRM.md 2.4).

    qkv_proj: D -> 3 * H * d, output heads ordered [q heads | k heads | v heads], each head d
    consecutive features (the reference layout, kept by `convert.py`). No biases, no mask, scale
    1/sqrt(d); softmax through `jax.nn.dot_product_attention` (impl "dot_product_attention", cuDNN /
    flash where present) or `einsum_attention` (impl "einsum").
    """

    def __init__(self, hidden: int, num_heads: int, *, impl: str = "dot_product_attention", rngs: nnx.Rngs):
        if impl not in ("dot_product_attention", "einsum"):
            raise ValueError(f"attention impl={impl!r}: expected 'dot_product_attention' or 'einsum'")
        self.impl = impl
        self.num_heads = num_heads
        self.head_dim = hidden // num_heads
        self.qkv_proj = CastedLinear(hidden, 3 * num_heads * self.head_dim, rngs=rngs)
        self.o_proj = CastedLinear(num_heads * self.head_dim, hidden, rngs=rngs)

    def __call__(self, h: jax.Array, rope: tuple[jax.Array, jax.Array] | None) -> jax.Array:
        """h [B, L, D] -> [B, L, D] (same dtype). `rope`: (cos, sin) [L, d] float32 or None."""
        B, L, _ = h.shape
        qkv = self.qkv_proj(h).reshape(B, L, 3 * self.num_heads, self.head_dim)
        q, k, v = jnp.split(qkv, 3, axis=2)
        if rope is not None:
            cos, sin = rope
            q = apply_rope(q, cos, sin)
            k = apply_rope(k, cos, sin)
        if self.impl == "einsum":
            out = einsum_attention(q, k, v)
        else:
            out = jax.nn.dot_product_attention(q, k, v)
        return self.o_proj(out.reshape(B, L, self.num_heads * self.head_dim))


def _wrap_pad(x: jax.Array, ra: int, rb: int) -> jax.Array:
    """x [B, R, W, D] extended circularly by ra rows and rb columns on each side: [B, R + 2ra, W + 2rb, D]."""
    return jnp.pad(x, ((0, 0), (ra, ra), (rb, rb), (0, 0)), mode="wrap")


def _shifted_sum(w: jax.Array, padded: jax.Array, rows: int, cols: int) -> jax.Array:
    """sum over taps (a, b) of w[a, b] * padded[:, a:a + rows, b:b + cols]: the cross-correlation of the
    padded grid with the depthwise kernel w [ka, kb, D], [B, rows, cols, D]."""
    ka, kb = w.shape[:2]
    return sum(w[a, b] * padded[:, a:a + rows, b:b + cols] for a in range(ka) for b in range(kb))


@jax.custom_vjp
def _circular_conv(w: jax.Array, x: jax.Array) -> jax.Array:
    """The depthwise cross-correlation of x [B, R, W, D] with w [ka, kb, D] on the torus (both odd widths).

    The backward pass is written out (a custom VJP) because XLA:CPU differentiates the wrap padding into
    chains of pads and adds: 45 ms against 5-7 ms for the zero-padded convolution's gradient at [32, 12, 12, 64]:
    the input's cotangent is the circular convolution of the output's cotangent with the flipped kernel,
    and the kernel's is the sum over batch and positions of the cotangent times the shifted input.
    """
    ka, kb = w.shape[:2]
    return _shifted_sum(w, _wrap_pad(x, ka // 2, kb // 2), x.shape[1], x.shape[2])


def _circular_conv_fwd(w, x):
    return _circular_conv(w, x), (w, x)


def _circular_conv_bwd(res, g):
    w, x = res
    ka, kb = w.shape[:2]
    R, W = x.shape[1], x.shape[2]
    dx = _shifted_sum(w[::-1, ::-1], _wrap_pad(g, ka // 2, kb // 2), R, W)
    padded = _wrap_pad(x, ka // 2, kb // 2)
    dw = jnp.stack([jnp.stack([(g * padded[:, a:a + R, b:b + W]).sum(axis=(0, 1, 2)) for b in range(kb)])
                    for a in range(ka)])
    return dw.astype(w.dtype), dx.astype(x.dtype)


_circular_conv.defvjp(_circular_conv_fwd, _circular_conv_bwd)


class DepthwiseConv(nnx.Module):
    """Local token mixing: a depthwise convolution over the sequence (1-D) or over a grid (2-D), no bias.

    The extrapolating mixer of the "deep thinking" recurrent nets (Schwarzschild et al. 2021, arXiv
    2106.04537; Bansal et al. 2022, arXiv 2202.05826) and of the Universal Reasoning Model's
    ConvSwiGLU: one call moves information (kernel - 1) / 2 positions, so more recursion moves it
    further, and the parameters do not depend on the sequence length (a model trained on short
    inputs runs on long ones). Channel mixing is left to the block's SwiGLU. Padding: "zeros" ("SAME"
    zero padding) or "circular" (the sequence or grid wraps around: translation-equivariant on a torus,
    so no position, edge or corner, is distinguishable).

    Parameter `kernel`: [k, D] (1-D) or [k, k, D] (2-D) float32, truncated normal with std
    1/sqrt(taps), cast to the input's dtype.
    """

    def __init__(self, hidden: int, kernel: int, grid_width: int = 0, padding: str = "zeros", *, rngs: nnx.Rngs):
        """Raises: ValueError: an even or non-positive kernel, or padding not "zeros" / "circular"."""
        if kernel < 1 or kernel % 2 == 0:
            raise ValueError(f"conv kernel={kernel}: expected an odd width >= 1")
        if padding not in ("zeros", "circular"):
            raise ValueError(f"conv padding={padding!r}: expected 'zeros' or 'circular'")
        self.grid_width = grid_width
        self.padding = padding
        shape = (kernel, kernel, hidden) if grid_width else (kernel, hidden)
        taps = kernel * kernel if grid_width else kernel
        self.kernel = nnx.Param(trunc_normal_init(1.0 / math.sqrt(taps))(rngs.params(), shape, jnp.float32))

    def __call__(self, h: jax.Array) -> jax.Array:
        """h [B, L, D] -> [B, L, D] (same dtype). 2-D: L = rows * grid_width, row-major.

        Computed as a sum of k (or k^2) shifted, weighted copies of the padded input: elementwise
        work that XLA fuses. XLA:CPU's grouped convolution (`lax.conv_general_dilated` with
        feature_group_count=D) took 50x longer forward and 6x longer forward + backward at [64, 512, 64]
        (`tests/test_extrapolation.py` checks the two agree).

        Raises:
          ValueError: (2-D) L is not a multiple of grid_width.
        """
        B, L, D = h.shape
        W = self.grid_width or L  # 1-D: a grid of one row
        if L % W:
            raise ValueError(f"conv over a grid of width {W}: sequence length {L} is not a multiple of it")
        w = self.kernel[...].astype(h.dtype)
        kernel = w if self.grid_width else w[None]  # [ka, kb, D]
        x = h.reshape(B, L // W, W, D)
        if self.padding == "circular":
            return _circular_conv(kernel, x).reshape(B, L, D)
        ra, rb = kernel.shape[0] // 2, kernel.shape[1] // 2
        padded = jnp.pad(x, ((0, 0), (ra, ra), (rb, rb), (0, 0)))
        return _shifted_sum(kernel, padded, L // W, W).reshape(B, L, D)


class Block(nnx.Module):
    """One post-norm block (TRM.md 2.7): token mixer (attention, MLP-t or convolution) then the channel SwiGLU.

    Attention: h = RMSNorm(h + Attn(h)); MLP-t: the SwiGLU runs over the sequence axis of h^T and
    its RMSNorm normalises over the sequence axis; convolution (`conv_kernel` > 0, ours, not in the
    reference): h = RMSNorm(h + DepthwiseConv(h)). Then h = RMSNorm(h + SwiGLU_D(h)).
    """

    def __init__(self, *, hidden: int, num_heads: int, expansion: float, mlp_t: bool, total_len: int,
                 eps: float, attention_impl: str = "dot_product_attention", conv_kernel: int = 0,
                 conv_grid_width: int = 0, conv_padding: str = "zeros", rngs: nnx.Rngs):
        self.eps = eps
        self.use_mlp_t = mlp_t
        self.use_conv = conv_kernel > 0
        if mlp_t:
            self.mlp_t = SwiGLU(total_len, expansion, rngs=rngs)
        elif self.use_conv:
            self.conv = DepthwiseConv(hidden, conv_kernel, conv_grid_width, conv_padding, rngs=rngs)
        else:
            self.self_attn = Attention(hidden, num_heads, impl=attention_impl, rngs=rngs)
        self.mlp = SwiGLU(hidden, expansion, rngs=rngs)

    def __call__(self, h: jax.Array, rope: tuple[jax.Array, jax.Array] | None) -> jax.Array:
        """h [B, L, D] -> [B, L, D] (same dtype)."""
        if self.use_mlp_t:
            u = jnp.swapaxes(h, 1, 2)  # [B, D, L]
            u = rms_norm(u + self.mlp_t(u), self.eps)
            h = jnp.swapaxes(u, 1, 2)
        elif self.use_conv:
            h = rms_norm(h + self.conv(h), self.eps)
        else:
            h = rms_norm(h + self.self_attn(h, rope), self.eps)
        return rms_norm(h + self.mlp(h), self.eps)


class ReasoningModule(nnx.Module):
    """A stack of blocks applied to `z + injection` (the reference's ReasoningModule).

    TRM's single shared net f and HRM's H and L modules are instances of this.
    """

    def __init__(self, num_layers: int, **block_kwargs):
        self.layers = nnx.List([Block(**block_kwargs) for _ in range(num_layers)])

    def __call__(self, z: jax.Array, injection: jax.Array, rope: tuple[jax.Array, jax.Array] | None) -> jax.Array:
        """z, injection [B, L, D] (compute dtype) -> [B, L, D]: blocks(z + injection)."""
        h = z + injection
        for layer in self.layers:
            h = layer(h, rope)
        return h
