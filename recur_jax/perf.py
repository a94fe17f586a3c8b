"""Process-wide performance settings that must be applied before JAX starts its backends.

`config.xla_flags` (experiments/common.py) holds extra XLA flags, e.g. for CPU
`--xla_cpu_experimental_ynn_fusion_type=` (matrix products through XLA's own dot emitter instead of
YNNPACK fusions; measured A/B in WORKSPACE.md). XLA reads `XLA_FLAGS` once, when the first backend is
created, so launchers call `apply_xla_flags` right after parsing the config and before any
computation.
"""

from __future__ import annotations

import os

# XLA flags that the CPU benchmarks of issue 8 measured to help (see WORKSPACE.md, "Performance").
CPU_XLA_FLAGS = "--xla_cpu_experimental_ynn_fusion_type="


def backends_started() -> bool:
    """True once JAX has created a backend (after which XLA_FLAGS changes have no effect)."""
    try:
        from jax._src import xla_bridge
    except ImportError:  # pragma: no cover - JAX internals moved
        return False
    return bool(getattr(xla_bridge, "_backends", {}))


def apply_xla_flags(flags: str) -> str:
    """Appends `flags` (space-separated `--name=value`) to the XLA_FLAGS environment variable.

    Flags already present with the same name are replaced. Does nothing for an empty string.

    Returns:
      The resulting XLA_FLAGS value.
    Raises:
      ValueError: a flag that does not start with `--`, or flags given after a JAX backend has
        started (they would be silently ignored).
    """
    flags = (flags or "").split()
    if not flags:
        return os.environ.get("XLA_FLAGS", "")
    bad = [f for f in flags if not f.startswith("--")]
    if bad:
        raise ValueError(f"config.xla_flags: expected --name=value items, got {bad}")
    if backends_started():
        raise ValueError("config.xla_flags must be applied before JAX creates a backend "
                         "(call recur_jax.perf.apply_xla_flags first)")
    names = {f.split("=", 1)[0] for f in flags}
    kept = [f for f in os.environ.get("XLA_FLAGS", "").split() if f.split("=", 1)[0] not in names]
    os.environ["XLA_FLAGS"] = " ".join(kept + flags)
    return os.environ["XLA_FLAGS"]
