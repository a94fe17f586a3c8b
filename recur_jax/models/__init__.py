"""Models: TRM, HRM and the non-recursive transformer baseline, built from a ModelConfig."""

from flax import nnx

from recur_jax.models.baseline import TransformerBaseline
from recur_jax.models.common import ModelOutput, RecursiveReasoner, count_params
from recur_jax.models.config import ModelConfig
from recur_jax.models.hrm import HRM
from recur_jax.models.trm import TRM

_ARCHS = {"trm": TRM, "hrm": HRM, "transformer": TransformerBaseline}


def build_model(config: ModelConfig, rngs: nnx.Rngs) -> RecursiveReasoner:
    """Instantiates the model named by `config.arch` ("trm", "hrm" or "transformer").

    Raises:
      ValueError: for an unknown arch (ModelConfig validation names the field).
    """
    return _ARCHS[config.arch](config, rngs=rngs)


__all__ = ["HRM", "TRM", "ModelConfig", "ModelOutput", "RecursiveReasoner", "TransformerBaseline",
           "build_model", "count_params"]
