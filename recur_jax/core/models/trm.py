"""Tiny Recursive Model (arXiv 2510.04871; the official `models/recursive_reasoning/trm.py`, TRM.md 1).

Paper names: y = z_H (answer), z = z_L (latent), T = H_cycles, n = L_cycles. One shared network
f = `L_level` (L_layers blocks) makes both updates:

    z_L = f(z_L, z_H + x)   (n times)        z_H = f(z_H, z_L)   (no x)
"""

from __future__ import annotations

import jax
from flax import nnx
from recur_jax.core.models.common import RecursiveReasoner
from recur_jax.core.models.config import ModelConfig
from recur_jax.core.recursion import recurse


class TRM(RecursiveReasoner):
    """TRM with one shared net `L_level`; default gradient mode "last_sweep".

    Args:
      config: a ModelConfig with arch="trm" (H_layers is ignored, as in the reference).
      rngs: nnx.Rngs with a `params` stream.
    """

    def __init__(self, config: ModelConfig, *, rngs: nnx.Rngs):
        super().__init__(config, rngs=rngs)
        self.L_level = self._stack(config.L_layers, rngs)

    def recur(self, z_H: jax.Array, z_L: jax.Array, x: jax.Array, grad_mode: str) -> tuple[jax.Array, jax.Array]:
        """H_cycles sweeps of TRM.md 1.4; returns (z_H, z_L) [B, P+S, D] with gradient per grad_mode."""
        state, net = self._pure(self.L_level)

        def L_step(ctx, z_L, z_H):
            net_state, x = ctx
            return net(net_state, z_L, z_H + x)

        def H_step(ctx, z_H, z_L):
            return net(ctx[0], z_H, z_L)

        c = self.config
        return recurse(L_step, H_step, (state, x), z_H, z_L, H_cycles=c.H_cycles, L_cycles=c.L_cycles,
                       grad_mode=grad_mode,
                       unroll_grad=c.unroll_grad_sweep)
