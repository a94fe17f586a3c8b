"""Multi-host start-up: `jax.distributed.initialize` when the environment asks for it.

Single process (the default) needs nothing. A multi-process run is recognised from the environment:
JAX_COORDINATOR_ADDRESS (+ JAX_NUM_PROCESSES, JAX_PROCESS_ID) set explicitly, a SLURM job step with
more than one task, or a TPU pod slice (JAX auto-detects it from the TPU metadata). Must run before
any other JAX call.
"""

from __future__ import annotations

import os

import jax


def initialize() -> bool:
    """Initialises the JAX distributed runtime when the environment describes several processes.

    Returns:
      True if `jax.distributed.initialize` was called.
    Raises:
      ValueError: JAX_COORDINATOR_ADDRESS is set without JAX_NUM_PROCESSES / JAX_PROCESS_ID.
    """
    addr = os.environ.get("JAX_COORDINATOR_ADDRESS")
    if addr:
        try:
            n, pid = int(os.environ["JAX_NUM_PROCESSES"]), int(os.environ["JAX_PROCESS_ID"])
        except KeyError as e:
            raise ValueError(f"JAX_COORDINATOR_ADDRESS={addr} is set but {e.args[0]} is not") from None
        jax.distributed.initialize(coordinator_address=addr, num_processes=n, process_id=pid)
        return True
    if int(os.environ.get("SLURM_NTASKS", "1")) > 1 or os.environ.get("TPU_WORKER_HOSTNAMES", "").count(",") > 0:
        jax.distributed.initialize()
        return True
    return False
