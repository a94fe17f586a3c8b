"""Models: TRM, HRM and the non-recursive transformer baseline, built from a ModelConfig."""

import jax
import jax.numpy as jnp
from flax import nnx

from recur_jax.core.models.baseline import TransformerBaseline
from recur_jax.core.models.common import ModelOutput, RecursiveReasoner, count_params
from recur_jax.core.models.config import ModelConfig
from recur_jax.core.models.hrm import HRM
from recur_jax.core.models.trm import TRM

_ARCHS = {"trm": TRM, "hrm": HRM, "transformer": TransformerBaseline}


def build_model(config: ModelConfig, rngs: nnx.Rngs) -> RecursiveReasoner:
    """Instantiates the model named by `config.arch` ("trm", "hrm" or "transformer").

    A float64 model (`forward_dtype="float64"`, JAX's x64 mode: the rounding-floor runs) gets float64
    parameters and buffers; every other model float32 parameters.

    Raises:
      ValueError: for an unknown arch (ModelConfig validation names the field), or float64 without x64.
    """
    model = _ARCHS[config.arch](config, rngs=rngs)
    if config.dtype == jnp.float64:
        nnx.update(model, jax.tree_util.tree_map(lambda x: x.astype(jnp.float64), nnx.state(model)))
    return model


__all__ = ["HRM", "TRM", "ModelConfig", "ModelOutput", "RecursiveReasoner", "TransformerBaseline",
           "build_model", "count_params"]
