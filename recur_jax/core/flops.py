"""Analytic FLOP count of the recursive models' training and evaluation steps.

Counts matrix multiplications only (2 * M * N * K FLOPs each, a multiply-add = 2 FLOPs): the
projections of every block, the attention scores and the attention-weighted values, the MLP-t token
mixer and the heads. Elementwise work (norms, RoPE, activations, softmax, the loss, the optimizer)
is not counted; it is a few percent of the total at these sizes, which is the usual convention for
"model FLOPs" and for MFU.

The recursion (`recur_jax.core.recursion`): one ACT step runs H_cycles sweeps of L_cycles L updates and
one H update, each a call of a block stack over [B, P+S, D]. Every call is counted forward. Backward
costs twice the forward (the input gradient and the weight gradient of every matmul; the two
attention products likewise) and is counted only for the calls the gradient mode differentiates:

  * "full": every call;
  * "last_sweep": the last sweep (L_cycles L calls + 1 H call);
  * "one_step": the last L call and the last H call.

The heads (lm_head over the S grid positions, q_head at position 0) run once per ACT step, forward
and backward. HRM's bootstrapped Q target (`no_ACT_continue=False`, training) is a second forward of
the whole step without backward. `remat` recomputation is *not* model FLOPs and is not counted.
"""

from __future__ import annotations

import dataclasses

from recur_jax.core.layers import swiglu_intermediate_size
from recur_jax.core.models.config import ModelConfig


def block_flops(cfg: ModelConfig, batch: int) -> int:
    """Forward FLOPs of one block (token mixer + channel SwiGLU) on [batch, P+S, D].

    Attention: QKV projection D -> 3D, scores Q K^T and values A V (2 * L^2 * D each per example),
    output projection D -> D. MLP-t: SwiGLU over the sequence axis (L -> 2 I_t -> L) for each of
    the D channels. Convolution: k (1-D) or k^2 (2-D) taps per token and channel (depthwise; counted
    though it is not a matmul, as the mixer's only work). Channel SwiGLU: D -> 2 I -> D.
    """
    D, L = cfg.hidden_size, cfg.total_len
    tokens = batch * L
    inter = swiglu_intermediate_size(D, cfg.expansion)
    mlp = 2 * tokens * (D * 2 * inter + inter * D)
    if cfg.conv_kernel:  # depthwise: k (or k x k) multiply-adds per token and channel
        taps = cfg.conv_kernel ** (2 if cfg.conv_grid_width else 1)
        mixer = 2 * tokens * D * taps
    elif cfg.mlp_t:
        inter_t = swiglu_intermediate_size(L, cfg.expansion)
        mixer = 2 * batch * D * (L * 2 * inter_t + inter_t * L)
    else:
        hd = cfg.num_heads * cfg.head_dim
        proj = 2 * tokens * (D * 3 * hd + hd * D)
        attn = 2 * (2 * batch * L * L * hd)
        mixer = proj + attn
    return mixer + mlp


def head_flops(cfg: ModelConfig, batch: int) -> int:
    """Forward FLOPs of the heads: lm_head D -> V over the S grid positions, q_head D -> 2 at position 0."""
    D = cfg.hidden_size
    return 2 * batch * cfg.seq_len * D * cfg.vocab_size + 2 * batch * D * 2


@dataclasses.dataclass(frozen=True)
class CallCounts:
    """Stack calls of one ACT step: forward and differentiated (backward) calls per stack."""

    fwd_L: int
    fwd_H: int
    bwd_L: int
    bwd_H: int


def call_counts(cfg: ModelConfig, grad_mode: str | None = None) -> CallCounts:
    """How many L-stack and H-stack calls one ACT step makes, and how many of them are differentiated.

    For TRM both kinds of call use the one shared net; for the transformer baseline one H call.

    Raises:
      ValueError: for an unknown grad_mode.
    """
    mode = grad_mode or cfg.grad_mode
    if cfg.arch == "transformer":
        return CallCounts(0, 1, 0, 1)
    T, n = cfg.H_cycles, cfg.L_cycles
    if mode == "full":
        return CallCounts(T * n, T, T * n, T)
    if mode == "last_sweep":
        return CallCounts(T * n, T, n, 1)
    if mode == "one_step":
        return CallCounts(T * n, T, 1, 1)
    raise ValueError(f"grad_mode={mode!r}: expected 'one_step', 'last_sweep' or 'full'")


def _layers(cfg: ModelConfig) -> tuple[int, int]:
    """(blocks in an L call, blocks in an H call)."""
    if cfg.arch == "trm":
        return cfg.L_layers, cfg.L_layers
    if cfg.arch == "transformer":
        return 0, cfg.H_layers
    return cfg.L_layers, cfg.H_layers


def forward_flops(cfg: ModelConfig, batch: int) -> int:
    """Forward FLOPs of one ACT step of the inner model (every sweep plus the heads)."""
    c = call_counts(cfg)
    nL, nH = _layers(cfg)
    blk = block_flops(cfg, batch)
    return (c.fwd_L * nL + c.fwd_H * nH) * blk + head_flops(cfg, batch)


def train_step_flops(cfg: ModelConfig, batch: int, grad_mode: str | None = None) -> dict[str, int]:
    """Model FLOPs of one training step (one ACT step, forward + backward, batch rows).

    Args:
      cfg: the model config; `grad_mode` overrides cfg.grad_mode.
      batch: global batch size (rows).
    Returns:
      {"forward": FLOPs, "backward": FLOPs, "q_target": FLOPs of HRM's second forward (0 for TRM),
       "total": their sum}, ints (FLOPs, not FLOP/s).
    """
    c = call_counts(cfg, grad_mode)
    nL, nH = _layers(cfg)
    blk = block_flops(cfg, batch)
    heads = head_flops(cfg, batch)
    fwd = (c.fwd_L * nL + c.fwd_H * nH) * blk + heads
    bwd = 2 * ((c.bwd_L * nL + c.bwd_H * nH) * blk + heads)
    q_target = fwd if (not cfg.no_ACT_continue and cfg.halt_max_steps > 1) else 0
    return {"forward": fwd, "backward": bwd, "q_target": q_target, "total": fwd + bwd + q_target}


def eval_step_flops(cfg: ModelConfig, batch: int, num_steps: int) -> int:
    """FLOPs of one evaluation batch: `num_steps` forward ACT steps (no backward, no Q target)."""
    return num_steps * forward_flops(cfg, batch)
