"""Orbax checkpoints of the whole training state, so that a restarted command resumes the same run.

A checkpoint at step k holds the TrainState (parameters, optimizer state, EMA, puzzle table, frozen
H_init/L_init, ACT carry, step) and a JSON record (data position = k, the resolved config, the
metrics fingerprint). Every process calls save and restore (Orbax coordinates the writes); a
restore places every array by the target's shardings, whatever mesh or number of processes wrote
it (tested: 2 processes -> 1 and back, (8, 1) -> (2, 4) -> 1 device).
Orbax commits a step atomically (it writes to a temporary directory and renames it), keeps the last
`keep` steps and deletes older ones only after a newer one has been committed (a save that dies half
way leaves `<step>.orbax-checkpoint-tmp*`, which is not a step and is removed when the next training
run opens the directory (`cleanup_tmp=True`); the older steps are all still there). A checkpoint that fails to
restore (truncated or garbled files) is reported, set aside under `unreadable/`, and the previous one
is used. tests/test_faults.py checks each of these.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from typing import Any

import jax
import orbax.checkpoint as ocp
from jax.experimental import multihost_utils

log = logging.getLogger(__name__)


class CheckpointError(RuntimeError):
    """Checkpoints exist but cannot be restored (the message names the directory and steps)."""


class Checkpointer:
    """Thin wrapper over `orbax.checkpoint.CheckpointManager` for (state, meta) pairs.

    Args:
      directory: `<workdir>/checkpoints`; created on the first save.
      keep: number of most recent checkpoints kept (>= 1).
      async_save: write in a background thread (the step loop continues).
      cleanup_tmp: remove temporary directories left by saves that died half way (the training run
        that owns the directory; never a reader such as `launch.solve`, which could otherwise delete
        the temporary directory of a save in progress).
    """

    def __init__(self, directory: str | os.PathLike, *, keep: int = 3, async_save: bool = True,
                 cleanup_tmp: bool = False):
        if keep < 1:
            raise ValueError(f"checkpoint.keep must be >= 1, got {keep}")
        self.directory = os.path.abspath(os.fspath(directory))
        self._manager = ocp.CheckpointManager(
            self.directory,
            options=ocp.CheckpointManagerOptions(max_to_keep=keep, enable_async_checkpointing=async_save,
                                                 create=True, cleanup_tmp_directories=cleanup_tmp))

    def steps(self) -> list[int]:
        """Committed checkpoint steps, ascending."""
        return sorted(self._manager.all_steps())

    def read_meta(self, step: int) -> dict[str, Any]:
        """The JSON record of checkpoint `step` alone (the state is not read)."""
        restored = self._manager.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))
        return dict(restored.meta)

    def save(self, step: int, state: Any, meta: dict[str, Any], *, force: bool = False) -> bool:
        """Saves `state` (a pytree of arrays) and `meta` (JSON-serialisable) as step `step`."""
        return self._manager.save(step, args=ocp.args.Composite(state=ocp.args.StandardSave(state),
                                                                meta=ocp.args.JsonSave(meta)), force=force)

    def restore(self, abstract_state: Any, step: int | None = None, *,
                verify: Callable[[Any, dict[str, Any]], None] | None = None
                ) -> tuple[int, Any, dict[str, Any]] | None:
        """Restores the newest readable checkpoint (or exactly `step`).

        Args:
          abstract_state: a pytree like the saved state (arrays or jax.ShapeDtypeStruct with shardings),
            giving structure, dtypes and the shardings to restore onto (resharding as needed).
          step: a specific step; None tries the newest first, then older ones.
          verify: called as verify(state, meta) after a successful read; raising marks the checkpoint
            unreadable like a read error (train.py checks the state's sha256 against the one recorded
            at save time, which catches garbled bytes that still decode).
        Returns:
          (step, state, meta), or None when there is no checkpoint at all.
        Raises:
          CheckpointError: a specific `step` was asked for and cannot be read, or checkpoints exist and
            none of them can be read (starting over would let the keep policy delete them).
        """
        candidates = [step] if step is not None else list(reversed(self.steps()))
        unreadable = []
        for s in candidates:
            try:
                restored = self._manager.restore(s, args=ocp.args.Composite(
                    state=ocp.args.StandardRestore(abstract_state), meta=ocp.args.JsonRestore()))
                if verify is not None:
                    verify(restored.state, dict(restored.meta))
                if unreadable:
                    self._set_aside(unreadable)
                return s, restored.state, dict(restored.meta)
            except Exception as e:  # noqa: BLE001 - any failure to read means "try the previous one"
                msg = f"checkpoint step {s} in {self.directory} cannot be restored ({type(e).__name__}: {e})"
                if step is not None:
                    raise CheckpointError(msg) from e
                unreadable.append(s)
                log.warning("%s; trying the previous one", msg)
                print(f"warning: {msg}; trying the previous one")
        if candidates:
            raise CheckpointError(f"none of the checkpoints {candidates} in {self.directory} can be restored; "
                               f"move them away or use a new workdir")
        return None

    def _set_aside(self, steps: list[int]) -> None:
        """Moves unreadable newer checkpoints to `<dir>/unreadable/<step>` (kept for inspection, never
        deleted), so that the resumed run can write those steps again."""
        if jax.process_index() == 0:  # one process moves them; the others wait for it
            target = os.path.join(self.directory, "unreadable")
            os.makedirs(target, exist_ok=True)
            for s in steps:
                dst = os.path.join(target, str(s))
                n = 1
                while os.path.exists(dst):
                    dst, n = os.path.join(target, f"{s}.{n}"), n + 1
                os.rename(os.path.join(self.directory, str(s)), dst)
                print(f"warning: moved unreadable checkpoint {s} to {dst}")
        if jax.process_count() > 1:
            multihost_utils.sync_global_devices("recur_jax_checkpoints_set_aside")
        self._manager.reload()

    def wait(self) -> None:
        """Blocks until pending asynchronous saves are committed."""
        self._manager.wait_until_finished()

    def close(self) -> None:
        """Waits for pending saves and releases the manager."""
        self._manager.wait_until_finished()
        self._manager.close()


def abstract_like(tree: Any, shardings: Any = None) -> Any:
    """ShapeDtypeStructs (with shardings) of a pytree of arrays, for `Checkpointer.restore`.

    Args:
      tree: arrays or ShapeDtypeStructs (e.g. from `jax.eval_shape`), giving shapes and dtypes.
      shardings: a matching pytree of `jax.sharding.Sharding`s to restore onto (e.g.
        `sharding.state_shardings`); None keeps each array's own sharding.
    Returns:
      The target of a restore: Orbax reads each array's saved shards and places them by these
      shardings, so a checkpoint written on any mesh or process count restores onto the current one.
    """
    if shardings is None:
        return jax.tree_util.tree_map(ocp.utils.to_shape_dtype_struct, tree)
    return jax.tree_util.tree_map(lambda x, sh: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sh), tree, shardings)
