"""Preemption: SIGTERM / SIGINT become "checkpoint this step and stop", agreed by every process.

Single process: `PreemptionGuard` installs Python handlers for SIGTERM and SIGINT that only record
the signal; the training loop asks `should_stop(step)` after every step and, when it says so, saves a
checkpoint of that step and raises `Preempted`. A second SIGINT while stopping interrupts at once
(the default handler is back), so a stuck save can still be abandoned with Ctrl-C.

Several processes (`jax.process_count() > 1`): the processes must stop at the *same* step, or their
checkpoints would differ. JAX's preemption service (started by `jax.distributed.initialize`, on by
default through `jax_enable_preemption_service`) catches SIGTERM itself, tells the coordination service,
and `jax.experimental.multihost_utils.reached_preemption_sync_point(step)` returns True on every process
at the same step (the largest step any of them had reached, plus one). The guard then leaves SIGTERM
to JAX and turns a SIGINT into a SIGTERM to its own process, so a Ctrl-C is propagated the same way.
Without that service the guard handles both signals itself and the processes agree through an
all-gather of their flags at every step. `should_stop` must be called with the same step sequence on
every process, once per step.
"""

from __future__ import annotations

import os
import signal
import threading
from typing import Any

import jax
import numpy as np


class Preempted(Exception):
    """Training stopped on SIGTERM/SIGINT after checkpointing step `step` in `directory`.

    Attributes:
      step: the optimizer step of the checkpoint written before stopping.
      directory: the checkpoint directory.
      signal_name: "SIGTERM", "SIGINT" or "preemption notice" (another process got the signal).
    """

    def __init__(self, step: int, directory: str, signal_name: str):
        self.step, self.directory, self.signal_name = step, directory, signal_name
        super().__init__(f"stopped by {signal_name} at step {step}; checkpoint {step} is in {directory}")


def _preemption_service_running() -> bool:
    """Whether `jax.distributed.initialize` started JAX's preemption sync manager in this process."""
    from jax._src import distributed  # no public accessor; reached_preemption_sync_point reads the same

    return getattr(distributed.global_state, "preemption_sync_manager", None) is not None


class PreemptionGuard:
    """Context manager recording SIGTERM/SIGINT; `should_stop(step)` says when to checkpoint and stop.

    Args:
      process_count: number of JAX processes (default `jax.process_count()`).
    Handlers are installed on entry (main thread only; elsewhere signals keep their handlers and only
    the multi-host sync point is consulted) and the previous handlers are restored on exit.
    """

    def __init__(self, process_count: int | None = None):
        self.process_count = jax.process_count() if process_count is None else int(process_count)
        self.received: str | None = None  # the name of the first signal seen by this process
        self._previous: dict[int, Any] = {}
        # Several processes without JAX's preemption service (jax_enable_preemption_service=False):
        # our own handlers, and the processes agree through a small all-gather of the flags per step.
        self.use_jax_service = self.multi_process and _preemption_service_running()

    @property
    def multi_process(self) -> bool:
        return self.process_count > 1

    def _on_signal(self, signum: int, frame) -> None:  # noqa: ARG002 - signal handler signature
        name = signal.Signals(signum).name
        if self.received is None:
            self.received = name
            print(f"{name} received: checkpointing at the end of this step, then stopping "
                  f"(press Ctrl-C again to stop at once)", flush=True)
            # A second SIGINT interrupts immediately.
            signal.signal(signal.SIGINT, self._previous.get(signal.SIGINT, signal.default_int_handler))
        if self.use_jax_service and signum == signal.SIGINT:
            os.kill(os.getpid(), signal.SIGTERM)  # JAX's notifier propagates SIGTERM to every process

    def __enter__(self) -> PreemptionGuard:
        if threading.current_thread() is not threading.main_thread():
            return self
        # With several processes SIGTERM belongs to JAX's preemption notifier: leave it alone.
        signums = (signal.SIGINT,) if self.use_jax_service else (signal.SIGINT, signal.SIGTERM)
        for s in signums:
            self._previous[s] = signal.getsignal(s)
            signal.signal(s, self._on_signal)
        return self

    def __exit__(self, *exc) -> None:
        for s, handler in self._previous.items():
            signal.signal(s, handler if handler is not None else signal.SIG_DFL)
        self._previous.clear()

    @property
    def requested(self) -> bool:
        """This process has seen a signal (it will stop at the next agreed step)."""
        return self.received is not None

    def should_stop(self, step: int) -> bool:
        """True when training should checkpoint `step` and stop (the same answer on every process).

        Args:
          step: the optimizer step just completed; strictly increasing between calls.
        """
        from jax.experimental import multihost_utils

        if self.use_jax_service:
            return bool(multihost_utils.reached_preemption_sync_point(step))
        if self.multi_process:
            flags = multihost_utils.process_allgather(np.int32(self.received is not None))
            return bool(np.any(flags))
        return self.received is not None

    def reason(self) -> str:
        """The signal that stopped this process, or "preemption notice" when it came from elsewhere."""
        return self.received or "preemption notice"


__all__ = ["Preempted", "PreemptionGuard"]
