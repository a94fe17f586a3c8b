"""recur_jax: the Hierarchical Reasoning Model and the Tiny Recursive Model in JAX/Flax."""

__version__ = "0.1.0"
