"""Process-wide performance settings that must be applied before JAX starts its backends.

`config.xla_flags` (experiments/common.py) holds extra XLA flags, e.g. for CPU
`--xla_cpu_experimental_ynn_fusion_type=` (matrix products through XLA's own dot emitter instead of
YNNPACK fusions; measured A/B in WORKSPACE.md). XLA reads `XLA_FLAGS` once, when the first backend is
created, so launchers call `apply_config` (host huge pages, then XLA flags) right after parsing the
config and before any computation.

`config.host_hugepages` asks glibc's malloc for transparent huge pages (`ensure_host_hugepages`). XLA:CPU
allocates each step's temporary buffers afresh (hundreds of MB, mmapped and unmapped every step by
glibc), so every step first-touches them again; with 4 KiB pages that is ~180k page faults per
one-core TRM-Att step. glibc reads its tunables only at process start, so the launchers re-execute
the process once with the tunable set.
"""

from __future__ import annotations

import logging
import os
import platform
import sys
from typing import Any, Callable

# XLA flags that the CPU benchmarks of issue 8 measured to help (see WORKSPACE.md, "Performance").
CPU_XLA_FLAGS = "--xla_cpu_experimental_ynn_fusion_type="

# One single-threaded XLA CPU device per usable core: the global batch is split over the cores by the
# `data` mesh axis (gradients all-reduced), instead of every small matmul being split over threads.
# Measured on 2 cores (WORKSPACE.md, "Performance"): the step runs at 2.0x its one-core speed this way,
# against 1.78x with one multi-threaded device. `cores` is resolved by `resolve_xla_flags`.
CPU_PER_CORE_FLAGS = "--xla_force_host_platform_device_count=cores --xla_cpu_multi_thread_eigen=false"
_DEVICE_COUNT = "--xla_force_host_platform_device_count"


def usable_cores() -> int:
    """CPU cores this process may run on (its affinity mask; os.cpu_count() where that is unknown)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def resolve_xla_flags(flags: str, batch_size: int | None = None, cores: int | None = None) -> list[str]:
    """Splits `flags` and resolves `--xla_force_host_platform_device_count=cores`.

    `cores` becomes the largest device count <= the usable cores that divides `batch_size` (every
    device must get the same number of rows), at least 1.

    Args:
      flags: space-separated `--name=value` items (config.xla_flags).
      batch_size: the global batch size (None: no divisibility constraint).
      cores: usable cores (default `usable_cores()`).
    Returns:
      The list of flags, `cores` replaced by a number.
    Raises:
      ValueError: an item that does not start with `--`, or a non-numeric device count other than `cores`.
    """
    items = (flags or "").split()
    bad = [f for f in items if not f.startswith("--")]
    if bad:
        raise ValueError(f"config.xla_flags: expected --name=value items, got {bad}")
    out = []
    for f in items:
        name, _, value = f.partition("=")
        if name == _DEVICE_COUNT and value == "cores":
            n = max(1, cores if cores is not None else usable_cores())
            while batch_size and n > 1 and batch_size % n:
                n -= 1
            f = f"{name}={n}"
        elif name == _DEVICE_COUNT and not value.isdigit():
            raise ValueError(f"config.xla_flags: {name} expects a positive integer or 'cores', got {value!r}")
        out.append(f)
    return out


def backends_started() -> bool:
    """True once JAX has created a backend (after which XLA_FLAGS changes have no effect)."""
    try:
        from jax._src import xla_bridge
    except ImportError:  # pragma: no cover - JAX internals moved
        return False
    return bool(getattr(xla_bridge, "_backends", {}))


def apply_xla_flags(flags: str, batch_size: int | None = None) -> str:
    """Appends `flags` (space-separated `--name=value`) to the XLA_FLAGS environment variable.

    Flags already present with the same name are replaced. Does nothing for an empty string.
    `--xla_force_host_platform_device_count=cores` is resolved by `resolve_xla_flags(flags, batch_size)`.

    Returns:
      The resulting XLA_FLAGS value.
    Raises:
      ValueError: a flag that does not start with `--`, or flags given after a JAX backend has
        started (they would be silently ignored).
    """
    flags = resolve_xla_flags(flags, batch_size)
    if not flags:
        return os.environ.get("XLA_FLAGS", "")
    if backends_started():
        raise ValueError("config.xla_flags must be applied before JAX creates a backend "
                         "(call recur_jax.run.perf.apply_xla_flags first)")
    names = {f.split("=", 1)[0] for f in flags}
    kept = [f for f in os.environ.get("XLA_FLAGS", "").split() if f.split("=", 1)[0] not in names]
    os.environ["XLA_FLAGS"] = " ".join(kept + flags)
    return os.environ["XLA_FLAGS"]


HUGEPAGE_TUNABLE = "glibc.malloc.hugetlb=1"  # glibc >= 2.35: malloc madvises its mmaps MADV_HUGEPAGE
_REEXEC_MARKER = "RECUR_JAX_REEXECUTED"


def ensure_host_hugepages(enabled: bool, *, environ: dict[str, str] | None = None,
                          execve: Callable[..., Any] = os.execve) -> bool:
    """Makes glibc's malloc use transparent huge pages, re-executing this process once if needed.

    With `enabled`, on Linux with glibc, and `GLIBC_TUNABLES` lacking `glibc.malloc.hugetlb=1`, this
    appends it (keeping other tunables) and replaces the process with the same command line
    (`sys.orig_argv`) under the new environment; it does not return then. Call it first thing in a
    launcher, before any state worth keeping exists. Measured A/B on 2 cores (WORKSPACE.md,
    "Performance"): TRM-Att +12%, HRM +8% examples/s; TRM-MLP no better on average, and less steady.
    Results are bit-identical: only where memory comes from changes.

    Returns:
      True when the tunable is in effect (already set at start), False when not enabled, not glibc
      (logged), or the tunable was added once and is still missing (no second re-execution).
    """
    if not enabled:
        return False
    env = os.environ if environ is None else environ
    tunables = [t for t in env.get("GLIBC_TUNABLES", "").split(":") if t]
    if HUGEPAGE_TUNABLE in tunables:
        return True
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        logging.warning("config.host_hugepages: needs Linux with glibc (have %s %s); ignored",
                        platform.system(), platform.libc_ver()[0] or "another libc")
        return False
    if env.get(_REEXEC_MARKER):
        logging.warning("config.host_hugepages: GLIBC_TUNABLES=%s was set but is not in effect; ignored",
                        HUGEPAGE_TUNABLE)
        return False
    tunables = [t for t in tunables if not t.startswith("glibc.malloc.hugetlb=")] + [HUGEPAGE_TUNABLE]
    new_env = dict(env, GLIBC_TUNABLES=":".join(tunables), **{_REEXEC_MARKER: "1"})
    sys.stdout.flush()
    sys.stderr.flush()
    execve(sys.executable, [sys.executable, *sys.orig_argv[1:]], new_env)
    return False  # only reached when `execve` is a test double


def apply_config(config: Any) -> bool:
    """The process-wide settings of a run config, in the order they must happen; call first in a launcher.

    `ensure_host_hugepages(config.host_hugepages)` (which may re-execute the process), then
    `apply_xla_flags(config.xla_flags, config.global_batch_size)`. Either field may be absent (older
    configs and run records).

    Returns:
      Whether glibc's huge-page tunable is in effect.
    Raises:
      ValueError: from `apply_xla_flags` (a malformed flag, or a JAX backend already running).
    """
    hugepages = ensure_host_hugepages(config.get("host_hugepages", False))
    apply_xla_flags(config.get("xla_flags", ""), config.get("global_batch_size"))
    return hugepages
