"""The model configuration shared by TRM, HRM and the transformer baseline.

Field names are the official code's (`H_cycles`, `L_cycles`, `H_layers`, `L_layers`, `hidden_size`,
`num_heads`, `expansion`, `pos_encodings`, `puzzle_emb_ndim`, `puzzle_emb_len`, `mlp_t`,
`halt_max_steps`, `halt_exploration_prob`, `no_ACT_continue`, ...), so a reference config JSON maps
onto it one to one (see `ModelConfig.from_reference`).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import Any

import jax.numpy as jnp

ARCHS = ("trm", "hrm", "transformer")
POS_ENCODINGS = ("rope", "learned", "none")
GRAD_MODES = ("one_step", "last_sweep", "full")
LOSS_TYPES = ("stablemax_cross_entropy", "softmax_cross_entropy")
DTYPES = ("float32", "bfloat16", "float16", "float64")
ATTENTION_IMPLS = ("dot_product_attention", "einsum")


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """Architecture, recursion and ACT settings of one model.

    Attributes:
      arch: "trm" (one shared net; TRM paper arXiv 2510.04871), "hrm" (separate H and L stacks;
        arXiv 2506.21734) or "transformer" (non-recursive baseline, the papers' "direct prediction").
      vocab_size: V, number of token ids (Sudoku 11, Maze 6, ARC 12).
      seq_len: S, grid tokens per example (Sudoku 81, Maze/ARC 900).
      num_puzzle_identifiers: rows of the puzzle-embedding table (ids 0..N-1; 0 is the blank id).
      puzzle_emb_ndim: width of one puzzle-embedding row; 0 disables the puzzle prefix.
      puzzle_emb_len: P, prefix slots; 0 means ceil(puzzle_emb_ndim / hidden_size) (TRM.md 1.1).
      hidden_size: D.
      num_heads: attention heads; head_dim = D / num_heads.
      expansion: SwiGLU expansion factor (intermediate size rounding in `layers.swiglu_intermediate_size`).
      H_cycles: T, number of sweeps per ACT step (TRM "deep recursion"; HRM high-level cycles).
      L_cycles: n, z_L updates per sweep.
      H_layers: blocks of the H stack (HRM only; TRM ignores it; the baseline uses it as its depth).
      L_layers: blocks of the L stack (TRM's single shared net).
      pos_encodings: "rope", "learned" or "none".
      rope_theta: RoPE base.
      rms_norm_eps: epsilon of the weightless RMSNorm.
      mlp_t: TRM-MLP: replace attention by a SwiGLU over the sequence axis (TRM.md 2.7).
      halt_max_steps: N_sup, the maximum number of ACT (supervision) steps.
      halt_exploration_prob: probability of drawing a minimum halting step U{2..halt_max_steps}.
      halt_in_training: True (the reference): in training the Q head may halt a row before
        halt_max_steps. False (ours): the Q head is still trained, but every row gets all halt_max_steps
        supervision steps, so the iteration is trained to stay put after the point of solution (needed
        for length extrapolation, where test-time budgets run far beyond training's).
      warmup_max_steps: R, progressive loss (ours; Bansal et al. 2022, arXiv 2202.05826 sec. 3.2): in
        training, rows that start a new example first take r ~ U{0..R} ACT steps without gradient or loss
        (r drawn once per batch, as the deep-thinking code does), then their halt_max_steps supervised steps;
        the supervised steps thus see latents from deeper in the iteration than halt_max_steps reaches. 0:
        off (the reference). Evaluation never warms up.
      no_ACT_continue: True: halt when q_halt > 0 (TRM); False: halt when q_halt > q_continue and
        train q_continue on HRM's bootstrapped target (second forward pass without gradient).
      grad_mode: "one_step" (HRM), "last_sweep" (TRM) or "full" (backprop through every sweep).
      forward_dtype: compute dtype of activations and the carry ("bfloat16" on accelerators,
        "float32" for CPU and parity; "float64" under JAX's x64 mode for the rounding-floor runs of
        `launch.parity --x64`, whose parameters are then float64 too). Parameters are float32 otherwise.
      loss_type: "stablemax_cross_entropy" (both papers) or "softmax_cross_entropy".
      remat: recompute each network call's activations in the backward pass (`jax.checkpoint`)
        instead of storing them: same numbers, less memory (paper sizes at batch 768 on a CPU host),
        about one extra forward of the differentiated sweep.
      unroll_grad_sweep: trace the differentiated sweep's L updates unrolled instead of under
        `lax.scan` (performance only; the numbers are the same).
      conv_kernel: 0 (the reference's mixers), or k (odd): the token mixer is a depthwise convolution of
        width k (ours, `layers.DepthwiseConv`): local mixing whose parameters do not depend on seq_len,
        for length extrapolation (train small, test large by recursing longer). Not with mlp_t.
      conv_grid_width: 0: the convolution runs over the sequence (1-D, prefix included); W: the S tokens
        are a row-major grid of width W and the convolution is k x k (needs no puzzle prefix).
      conv_padding: what the convolution sees beyond the sequence or grid: "zeros" (zero padding) or
        "circular" (the sequence or grid wraps around, a torus: no position is distinguishable from another,
        so a rule learned on small boards cannot lean on the distance to the edge; mazes, whose last row and
        column are walls, keep their wall between the wrapped sides).
      q_head_input: "first" (the reference: the Q head reads z_H[:, 0]) or "mean" (the mean of z_H over
        positions; a size-independent halting input for length extrapolation).
      attention_impl: "dot_product_attention" (`jax.nn.dot_product_attention`, cuDNN/flash on GPU)
        or "einsum" (heads-first einsums and a float32 softmax; performance only, same maths).
    """

    arch: str = "trm"
    vocab_size: int = 11
    seq_len: int = 81
    num_puzzle_identifiers: int = 1
    puzzle_emb_ndim: int = 512
    puzzle_emb_len: int = 16
    hidden_size: int = 512
    num_heads: int = 8
    expansion: float = 4.0
    H_cycles: int = 3
    L_cycles: int = 6
    H_layers: int = 0
    L_layers: int = 2
    pos_encodings: str = "rope"
    rope_theta: float = 10000.0
    rms_norm_eps: float = 1e-5
    mlp_t: bool = False
    halt_max_steps: int = 16
    halt_exploration_prob: float = 0.1
    halt_in_training: bool = True
    warmup_max_steps: int = 0
    no_ACT_continue: bool = True
    grad_mode: str = "last_sweep"
    forward_dtype: str = "bfloat16"
    loss_type: str = "stablemax_cross_entropy"
    remat: bool = False
    unroll_grad_sweep: bool = False
    attention_impl: str = "dot_product_attention"
    conv_kernel: int = 0
    conv_grid_width: int = 0
    conv_padding: str = "zeros"
    q_head_input: str = "first"

    def __post_init__(self):
        def bad(field: str, expected: str):
            raise ValueError(f"model.{field}={getattr(self, field)!r}: expected {expected}")

        if self.arch not in ARCHS:
            bad("arch", f"one of {ARCHS}")
        if self.pos_encodings not in POS_ENCODINGS:
            bad("pos_encodings", f"one of {POS_ENCODINGS}")
        if self.grad_mode not in GRAD_MODES:
            bad("grad_mode", f"one of {GRAD_MODES}")
        if self.loss_type not in LOSS_TYPES:
            bad("loss_type", f"one of {LOSS_TYPES}")
        if self.attention_impl not in ATTENTION_IMPLS:
            bad("attention_impl", f"one of {ATTENTION_IMPLS}")
        if self.forward_dtype not in DTYPES:
            bad("forward_dtype", f"one of {DTYPES}")
        for name in ("vocab_size", "seq_len", "hidden_size", "num_heads", "halt_max_steps", "num_puzzle_identifiers"):
            if int(getattr(self, name)) < 1:
                bad(name, "an integer >= 1")
        for name in ("puzzle_emb_ndim", "puzzle_emb_len", "H_layers", "L_layers", "warmup_max_steps"):
            if int(getattr(self, name)) < 0:
                bad(name, "an integer >= 0")
        if self.H_cycles < 1:
            bad("H_cycles", "an integer >= 1")
        if self.L_cycles < 1 and self.arch != "transformer":
            bad("L_cycles", "an integer >= 1")
        if self.hidden_size % self.num_heads and not (self.mlp_t or self.conv_kernel):
            bad("num_heads", f"a divisor of hidden_size={self.hidden_size}")
        if self.arch == "trm" and self.L_layers < 1:
            bad("L_layers", "an integer >= 1 for TRM")
        if self.arch == "hrm" and (self.H_layers < 1 or self.L_layers < 1):
            bad("H_layers", "H_layers >= 1 and L_layers >= 1 for HRM")
        if self.arch == "transformer" and self.H_layers < 1:
            bad("H_layers", "an integer >= 1 (the baseline's depth)")
        if self.mlp_t and self.pos_encodings == "rope":
            bad("pos_encodings", "'none' or 'learned' when mlp_t=True (the reference turns RoPE off)")
        if self.puzzle_emb_ndim > self.prefix_len * self.hidden_size:
            bad("puzzle_emb_len", f"0 or at least ceil(puzzle_emb_ndim / hidden_size) = "
                f"{math.ceil(self.puzzle_emb_ndim / self.hidden_size)} (puzzle_emb_ndim={self.puzzle_emb_ndim} "
                f"must fit in puzzle_emb_len * hidden_size)")
        if self.conv_kernel < 0 or (self.conv_kernel and self.conv_kernel % 2 == 0):
            bad("conv_kernel", "0 (off) or an odd width >= 1")
        if self.conv_kernel and self.mlp_t:
            bad("conv_kernel", "0 when mlp_t=True (one token mixer: attention, MLP-t or convolution)")
        if self.conv_kernel and self.pos_encodings == "rope":
            bad("pos_encodings", "'none' (or 'learned') when conv_kernel > 0: RoPE acts only inside attention")
        if self.conv_grid_width < 0 or (self.conv_grid_width and not self.conv_kernel):
            bad("conv_grid_width", "0, or a grid width >= 1 together with conv_kernel > 0")
        if self.conv_grid_width and self.seq_len % self.conv_grid_width:
            bad("conv_grid_width", f"a divisor of seq_len={self.seq_len} (the grid's width)")
        if self.conv_grid_width and self.prefix_len:
            bad("conv_grid_width", "0 when there is a puzzle prefix (puzzle_emb_ndim > 0): the 2-D convolution "
                "covers the grid only; use the 1-D convolution (conv_grid_width=0) with a prefix")
        if self.conv_padding not in ("zeros", "circular"):
            bad("conv_padding", "'zeros' or 'circular'")
        if self.q_head_input not in ("first", "mean"):
            bad("q_head_input", "'first' or 'mean'")
        if not 0.0 <= self.halt_exploration_prob <= 1.0:
            bad("halt_exploration_prob", "a probability in [0, 1]")

    @property
    def prefix_len(self) -> int:
        """P: puzzle-embedding prefix slots (TRM.md 1.1: `puzzle_emb_len` if non-zero, else ceil(ndim/D))."""
        if self.puzzle_emb_ndim <= 0:
            return 0
        if self.puzzle_emb_len > 0:
            return self.puzzle_emb_len
        return math.ceil(self.puzzle_emb_ndim / self.hidden_size)

    @property
    def total_len(self) -> int:
        """P + S: length of the latent states z_H and z_L."""
        return self.prefix_len + self.seq_len

    @property
    def dtype(self) -> jnp.dtype:
        """The compute dtype as a JAX dtype."""
        return jnp.dtype(self.forward_dtype)

    @property
    def head_dim(self) -> int:
        """Per-head width D / num_heads."""
        return self.hidden_size // self.num_heads

    def replace(self, **changes: Any) -> "ModelConfig":
        """A copy with some fields changed (validated again)."""
        return dataclasses.replace(self, **changes)

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> "ModelConfig":
        """Builds a config from a mapping (e.g. `config.model` of an experiment).

        Raises:
          ValueError: naming any key that is not a field, and listing the valid fields.
        """
        fields = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - fields)
        if unknown:
            raise ValueError(f"unknown model config key(s) {unknown}; valid keys: {sorted(fields)}")
        return cls(**dict(values))

    @classmethod
    def from_reference(cls, ref: Mapping[str, Any], arch: str | None = None) -> "ModelConfig":
        """Maps an official-code config (the fixtures' `config` JSON) onto a ModelConfig.

        Args:
          ref: the reference's arch config (`batch_size` and `causal` are ignored).
          arch: "trm" or "hrm"; inferred when None (HRM configs have H_layers > 0 and no
            `puzzle_emb_len`/`no_ACT_continue`; TRM ignores H_layers).
        """
        ref = dict(ref)
        if arch is None:
            arch = "trm" if ("no_ACT_continue" in ref or "mlp_t" in ref) else "hrm"
        values: dict[str, Any] = {"arch": arch}
        fields = {f.name for f in dataclasses.fields(cls)}
        for k, v in ref.items():
            if k in fields:
                values[k] = v
        values.setdefault("puzzle_emb_len", 0)
        if arch == "hrm":
            values["no_ACT_continue"] = False
            values["grad_mode"] = "one_step"
        else:
            values.setdefault("no_ACT_continue", True)
            values["grad_mode"] = "last_sweep"
        return cls(**values)
