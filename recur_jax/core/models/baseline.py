"""Non-recursive transformer baseline: the papers' "direct prediction" row (TRM.md 1.7).

One stack of `H_layers` blocks, applied once per ACT step: z_H = stack(z_H + x). With H_layers=8
it has HRM's parameter count; with H_layers = L_layers of a TRM, TRM's. z_L is carried unchanged.
ACT, losses and the optimizers are the same as for the recursive models.
"""

from __future__ import annotations

import jax
from flax import nnx

from recur_jax.core.models.common import RecursiveReasoner
from recur_jax.core.models.config import ModelConfig


class TransformerBaseline(RecursiveReasoner):
    """Plain post-norm transformer of `H_layers` blocks over [puzzle prefix ; grid].

    Args:
      config: a ModelConfig with arch="transformer" (H_cycles, L_cycles, grad_mode are unused).
      rngs: nnx.Rngs with a `params` stream.
    """

    def __init__(self, config: ModelConfig, *, rngs: nnx.Rngs):
        super().__init__(config, rngs=rngs)
        self.H_level = self._stack(config.H_layers, rngs)

    def recur(self, z_H: jax.Array, z_L: jax.Array, x: jax.Array, grad_mode: str) -> tuple[jax.Array, jax.Array]:
        """One pass z_H = stack(z_H + x), fully differentiated; z_L is returned unchanged."""
        del grad_mode
        state, net = self._pure(self.H_level)
        return net(state, z_H, x), z_L
