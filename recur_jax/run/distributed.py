"""Multi-host start-up: `jax.distributed.initialize` from flags or the environment.

One process (the default) needs nothing. Several processes are recognised, in this order:

  1. explicit values (the `--coordinator_address`, `--num_processes`, `--process_id` flags of
     `launch.main`, or the environment variables JAX_COORDINATOR_ADDRESS, JAX_NUM_PROCESSES,
     JAX_PROCESS_ID, which `launch.local_multiprocess` sets);
  2. a SLURM job step (inside `srun`) with more than one task (SLURM_NTASKS > 1; JAX reads
     SLURM_STEP_NODELIST, SLURM_PROCID and SLURM_LOCALID itself: `launch.slurm` writes such a job);
  3. a Cloud TPU pod slice (TPU_WORKER_HOSTNAMES lists more than one worker, or `--distributed=tpu`;
     JAX reads the TPU metadata: `launch.tpu` starts one process per worker).

`--distributed=none` forces a single process, `auto` (default) applies the rules above, and
`explicit`/`slurm`/`tpu` insist on one method (an error if it lacks its values). On CPU, cross-process
collectives use gloo (`jax_cpu_collectives_implementation`). Must run before any other JAX call
that touches devices.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import jax

MODES = ("auto", "none", "explicit", "slurm", "tpu")


@dataclass(frozen=True)
class Plan:
    """What `initialize` will do: `method` is one of "none", "explicit", "slurm", "tpu"; the other fields
    are the explicit arguments (None: JAX detects them)."""

    method: str
    coordinator_address: str | None = None
    num_processes: int | None = None
    process_id: int | None = None


def env_int(env: dict[str, str], name: str, minimum: int) -> int:
    """The integer in environment variable `name`.

    Raises:
      ValueError: not an integer, or below `minimum` (names the variable and its value).
    """
    text = env[name]
    try:
        value = int(text.strip())
    except ValueError:
        raise ValueError(f"environment variable {name}={text!r}: expected an integer >= {minimum}") from None
    if value < minimum:
        raise ValueError(f"environment variable {name}={text!r}: expected an integer >= {minimum}")
    return value


def plan(mode: str = "auto", coordinator_address: str | None = None, num_processes: int | None = None,
         process_id: int | None = None, environ: dict[str, str] | None = None) -> Plan:
    """Decides how to start the distributed runtime (pure: reads `environ`, calls nothing).

    Args:
      mode: one of MODES (the `--distributed` flag).
      coordinator_address, num_processes, process_id: explicit values (flags); None = not given, then
        JAX_COORDINATOR_ADDRESS, JAX_NUM_PROCESSES, JAX_PROCESS_ID from the environment.
      environ: the environment (default os.environ).
    Raises:
      ValueError: an unknown mode; a malformed JAX_NUM_PROCESSES / JAX_PROCESS_ID / SLURM_NTASKS (named); a coordinator address without the process count or id (naming the
        missing flag / variable); a process id outside [0, num_processes); `slurm` or `tpu` asked for
        outside such a job.
    """
    env = os.environ if environ is None else environ
    if mode not in MODES:
        raise ValueError(f"--distributed={mode!r}: expected one of {list(MODES)}")
    if mode == "none":
        return Plan("none")
    addr = coordinator_address or env.get("JAX_COORDINATOR_ADDRESS") or None
    if num_processes is None and env.get("JAX_NUM_PROCESSES"):
        num_processes = env_int(env, "JAX_NUM_PROCESSES", minimum=1)
    if process_id is None and env.get("JAX_PROCESS_ID"):
        process_id = env_int(env, "JAX_PROCESS_ID", minimum=0)
    if mode == "explicit" or (mode == "auto" and addr):
        if not addr:
            raise ValueError("--distributed=explicit needs --coordinator_address (or JAX_COORDINATOR_ADDRESS)")
        if num_processes is None:
            raise ValueError(f"coordinator address {addr} is set but --num_processes (JAX_NUM_PROCESSES) is not")
        if process_id is None:
            raise ValueError(f"coordinator address {addr} is set but --process_id (JAX_PROCESS_ID) is not")
        if num_processes < 1 or not 0 <= process_id < num_processes:
            raise ValueError(f"--process_id={process_id} with --num_processes={num_processes}: expected "
                             f"0 <= process_id < num_processes")
        return Plan("explicit", addr, num_processes, process_id)
    step_vars = ("SLURM_JOB_ID", "SLURM_STEP_NODELIST", "SLURM_NTASKS", "SLURM_PROCID", "SLURM_LOCALID")
    slurm = (env_int(env, "SLURM_NTASKS", minimum=1) if env.get("SLURM_NTASKS") else 1) > 1 and all(v in env for v in step_vars)
    if mode == "slurm" or (mode == "auto" and slurm):
        missing = [v for v in step_vars if v not in env]
        if missing:
            raise ValueError(f"--distributed=slurm outside a SLURM job step ({', '.join(missing)} unset; "
                             f"start it with srun)")
        return Plan("slurm")
    tpu_pod = env.get("TPU_WORKER_HOSTNAMES", "").count(",") > 0
    if mode == "tpu" or (mode == "auto" and tpu_pod):
        return Plan("tpu")
    return Plan("none")


def initialize(mode: str = "auto", coordinator_address: str | None = None, num_processes: int | None = None,
               process_id: int | None = None) -> bool:
    """Starts the JAX distributed runtime as `plan` decides.

    Returns:
      True if `jax.distributed.initialize` was called.
    Raises:
      ValueError: as `plan`.
    """
    p = plan(mode, coordinator_address, num_processes, process_id)
    if p.method == "none":
        return False
    if os.environ.get("JAX_PLATFORMS", "").split(",")[0] == "cpu":
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
    if p.method == "explicit":
        jax.distributed.initialize(coordinator_address=p.coordinator_address, num_processes=p.num_processes,
                                   process_id=p.process_id)
    else:  # SLURM and TPU: JAX's cluster detection reads the environment / TPU metadata
        jax.distributed.initialize()
    return True


def define_flags(flags_module) -> None:
    """Defines --distributed, --coordinator_address, --num_processes, --process_id (absl)."""
    flags_module.DEFINE_enum("distributed", "auto", list(MODES),
                             "Multi-process start-up: auto (environment), none, explicit, slurm or tpu.")
    flags_module.DEFINE_string("coordinator_address", None, "host:port of process 0 (explicit multi-process).")
    flags_module.DEFINE_integer("num_processes", None, "Number of processes (explicit multi-process).")
    flags_module.DEFINE_integer("process_id", None, "This process's index in [0, num_processes).")


def initialize_from_flags(flag_values) -> bool:
    """`initialize` with the values of the flags of `define_flags`."""
    return initialize(flag_values.distributed, flag_values.coordinator_address, flag_values.num_processes,
                      flag_values.process_id)
