"""Hierarchical Reasoning Model (arXiv 2506.21734; the official `hrm_act_v1.py`, HRM.md 1).

Two separate stacks: the low-level module L (`L_level`, L_layers blocks) sees the input,
the high-level module H (`H_level`, H_layers blocks) never does:

    z_L = L(z_L, z_H + x)   (L_cycles times)   z_H = H(z_H, z_L)      (per H cycle)

Default gradient mode "one_step": only the final L and H updates are differentiated.
"""

from __future__ import annotations

import jax
from flax import nnx
from recur_jax.core.models.common import RecursiveReasoner
from recur_jax.core.models.config import ModelConfig
from recur_jax.core.recursion import recurse


class HRM(RecursiveReasoner):
    """HRM with separate `H_level` and `L_level` stacks.

    Args:
      config: a ModelConfig with arch="hrm" (H_layers, L_layers >= 1).
      rngs: nnx.Rngs with a `params` stream.
    """

    def __init__(self, config: ModelConfig, *, rngs: nnx.Rngs):
        super().__init__(config, rngs=rngs)
        self.H_level = self._stack(config.H_layers, rngs)
        self.L_level = self._stack(config.L_layers, rngs)

    def recur(self, z_H: jax.Array, z_L: jax.Array, x: jax.Array, grad_mode: str) -> tuple[jax.Array, jax.Array]:
        """H_cycles x (L_cycles L updates + 1 H update), HRM.md 1.4; returns (z_H, z_L) [B, P+S, D]."""
        st_H, H_net = self._pure(self.H_level)
        st_L, L_net = self._pure(self.L_level)

        def L_step(ctx, z_L, z_H):
            _, L_state, x = ctx
            return L_net(L_state, z_L, z_H + x)

        def H_step(ctx, z_H, z_L):
            return H_net(ctx[0], z_H, z_L)

        c = self.config
        return recurse(L_step, H_step, (st_H, st_L, x), z_H, z_L, H_cycles=c.H_cycles, L_cycles=c.L_cycles,
                       grad_mode=grad_mode,
                       unroll_grad=c.unroll_grad_sweep)
