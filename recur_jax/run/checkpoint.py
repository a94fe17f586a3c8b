"""What a checkpoint holds and whether it may be resumed or loaded: Orbax checkpoints of the whole
training state, so that a restarted command resumes the same run, and the policy around them.

The policy (one home, used by training, evaluation, solving, analysis and the benchmark; none of them
imports the training loop): `checkpoint_record` (the JSON saved beside the state), `check_resumable`
(a checkpoint written under another model, batch, EMA, data or seed is refused before anything is
touched), `restore_for_training` (newest readable checkpoint, fingerprint and PRNG checks) and
`load_for_inference` (a run's weights, EMA or raw, for evaluation and solving).


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

import dataclasses
import errno
import os
import shutil
from collections.abc import Callable
from typing import Any

import jax
import ml_collections
import orbax.checkpoint as ocp
from jax.experimental import multihost_utils

from recur_jax.core.models import ModelConfig
from recur_jax.io.errors import RunError
from recur_jax.io import paths
from recur_jax.io.safe_io import read_json
from recur_jax.run.state import TrainState, example_batch, init_train_state, maybe_fingerprint
from recur_jax.run.workdir import MAX_RUN_JSON_BYTES, as_json_value

class CheckpointError(RunError):
    """Checkpoints exist but cannot be restored, or a save failed (the message names the directory and
    step, and for a full disk the space needed and free)."""


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
        self.directory = paths.absolute(directory)  # a local path or a cloud URL (Orbax takes both)
        self._pending: int | None = None  # the step of an asynchronous save not yet known to be committed
        self._failed = False  # a save failure was raised (later errors of the same failure are not)
        self._state_bytes = 0
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
        """Saves `state` (a pytree of arrays) and `meta` (JSON-serialisable) as step `step`.

        The previous asynchronous save is waited for first (as Orbax does), so that its failure is reported
        under its own step.

        Returns:
          Whether a save was started (Orbax's policy may skip a step unless `force`).
        Raises:
          CheckpointError: this save or the previous asynchronous one failed (one line naming the step and
            directory; a full disk says how much the state needs and how much is free). Committed steps
            are untouched.
        """
        self.wait()
        self._state_bytes = sum(int(getattr(x, "nbytes", 0)) for x in jax.tree_util.tree_leaves(state))
        try:
            started = self._manager.save(step, args=ocp.args.Composite(state=ocp.args.StandardSave(state),
                                                                       meta=ocp.args.JsonSave(meta)), force=force)
        except Exception as e:  # noqa: BLE001 - Orbax and TensorStore raise many types; the line says which
            raise self._save_error(step, e) from e
        if started:
            self._pending = step
        return started

    def _save_error(self, step: int | None, e: BaseException) -> CheckpointError:
        """A one-line CheckpointError for a failed save of `step` (records that a failure was reported)."""
        self._failed = True
        text = " ".join(str(e).split())
        try:
            newest = max(self.steps(), default=None)
        except Exception:  # noqa: BLE001 - the directory itself may be what failed
            newest = None
        kept = (f"the newest committed checkpoint, step {newest}, is intact: run the same command again to resume "
                f"from it" if newest is not None else "no checkpoint was committed")
        where = f"saving checkpoint step {step} in {self.directory} failed"
        if is_disk_full(e):
            try:
                free = f"{_megabytes(shutil.disk_usage(self.directory).free)} free"
            except OSError:
                free = "free space unknown"
            return CheckpointError(f"{where}: no space left on device (the state holds "
                                   f"{_megabytes(self._state_bytes)} of arrays, {free}); {kept} once space is "
                                   f"freed")
        return CheckpointError(f"{where} ({type(e).__name__}: {text[:400]}); {kept}")

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
                print(f"warning: {msg}; trying the previous one")
        if candidates:
            raise CheckpointError(f"none of the checkpoints {candidates} in {self.directory} can be restored; "
                               f"move them away or use a new workdir")
        return None

    def _set_aside(self, steps: list[int]) -> None:
        """Moves unreadable newer checkpoints to `<dir>/unreadable/<step>` (kept for inspection, never
        deleted), so that the resumed run can write those steps again."""
        if jax.process_index() == 0:  # one process moves them; the others wait for it
            target = paths.join(self.directory, "unreadable")
            paths.makedirs(target)
            for s in steps:
                dst = paths.join(target, str(s))
                n = 1
                while paths.exists(dst):
                    dst, n = paths.join(target, f"{s}.{n}"), n + 1
                paths.rename(paths.join(self.directory, str(s)), dst)
                print(f"warning: moved unreadable checkpoint {s} to {dst}")
        if jax.process_count() > 1:
            multihost_utils.sync_global_devices("recur_jax_checkpoints_set_aside")
        self._manager.reload()

    def wait(self) -> None:
        """Blocks until pending asynchronous saves are committed.

        Raises:
          CheckpointError: the pending save failed (as `save`).
        """
        try:
            self._manager.wait_until_finished()
        except Exception as e:  # noqa: BLE001 - the background save's error, whatever its type
            step, self._pending = self._pending, None
            raise self._save_error(step, e) from e
        self._pending = None

    def committed(self, step: int) -> bool:
        """Whether checkpoint `step` is committed (call `wait` first for an asynchronous save)."""
        self._manager.reload()
        return step in self._manager.all_steps()

    def close(self) -> None:
        """Waits for pending saves and releases the manager.

        Raises:
          CheckpointError: a pending save failed and no failure was reported yet (after one was, the
            library's later errors are not raised again: the first line stays the one the user sees).
        """
        reported = self._failed
        try:
            self.wait()
        except CheckpointError:
            if not reported:
                raise
        finally:
            try:
                self._manager.close()
            except Exception:  # noqa: BLE001 - closing after a failed save may raise the same failure again
                if not self._failed:
                    raise


def is_disk_full(e: BaseException) -> bool:
    """Whether `e` (or its cause) is a full disk: errno ENOSPC, or TensorStore's / Orbax's text for it."""
    while e is not None:
        if isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        text = str(e)
        if "No space left on device" in text or "os_error_code='28'" in text or "Disk quota exceeded" in text:
            return True
        e = e.__cause__ or e.__context__
    return False


def _megabytes(n: int) -> str:
    return f"{n / 2**20:.1f} MiB"


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


# --------------------------------------------------------------------------------------------------
# What a run's checkpoint holds, and whether it may be resumed or loaded for inference
# --------------------------------------------------------------------------------------------------

STRUCTURAL_FIELDS = ("model", "global_batch_size", "ema")  # decide the checkpoint's structure
STREAM_FIELDS = ("data", "seed")  # decide what the run trains on; --resume_anyway may change them


def prng_impl() -> str:
    """The name of JAX's default PRNG implementation (part of the RNG state a checkpoint records)."""
    return str(jax.config.jax_default_prng_impl)


def checkpoint_record(config: ml_collections.ConfigDict, state: TrainState, step: int,
                      train_window: dict[str, Any] | None = None) -> dict[str, Any]:
    """The JSON record saved beside the state of checkpoint `step`.

    The RNG is stateless: every draw derives from (config.seed, step) and the data stream from
    (data.seed + seed, step), so the record holds the data position (= step), the seeds and the PRNG
    implementation, the resolved config, the state's sha256 `fingerprint` (checked on restore) and the
    host-side metric window (`train_window`: so that logs continue unchanged after a resume).
    """
    return {"step": step, "data_position": step, "config": config.to_dict(), "fingerprint": maybe_fingerprint(state),
            "rng": {"seed": config.seed, "data_seed": config.data.seed + config.seed, "prng_impl": prng_impl()},
            **(train_window or {})}


def verify_fingerprint(state: TrainState, meta: dict[str, Any]) -> None:
    """Raises ValueError when a restored state's bytes differ from those recorded at save time."""
    want = meta.get("fingerprint")
    if want is not None and (got := maybe_fingerprint(state)) is not None and got != want:
        raise ValueError(f"the restored state's sha256 {got[:16]}... differs from the {want[:16]}... recorded "
                         f"when it was saved (garbled bytes)")


def check_resumable(checkpointer: Checkpointer, config: ml_collections.ConfigDict, *, resume_anyway: bool
                    ) -> tuple[int, dict[str, Any]] | None:
    """Refuses, before anything is touched, to resume checkpoints written under another config.

    The newest checkpoint whose record can be read decides. The model, global batch and EMA decide the
    checkpoint's structure: never resumable under others. The data and seed decide what is trained:
    resumable only with `resume_anyway`.

    Returns:
      (step, config) of the newest readable record (None: no checkpoint, or none readable: restoring
      reports it).
    Raises:
      ValueError: naming the directory, the step and the field.
    """
    for s in reversed(checkpointer.steps()):
        try:
            saved = checkpointer.read_meta(s).get("config", {})
        except Exception:  # noqa: BLE001 - an unreadable record is handled by restore_for_training
            continue
        for key in STRUCTURAL_FIELDS + (() if resume_anyway else STREAM_FIELDS):
            now = config[key].to_dict() if isinstance(config[key], ml_collections.ConfigDict) else config[key]
            if key in saved and saved[key] != as_json_value(now):  # the record is JSON (no tuples)
                raise ValueError(f"{checkpointer.directory}: checkpoint {s} was written with a different "
                                 f"config.{key}; resuming needs the same one (or use a new --workdir, or "
                                 f"--overwrite)")
        return s, saved
    return None


def restore_for_training(checkpointer: Checkpointer, state: TrainState
                         ) -> tuple[int, TrainState, dict[str, Any]]:
    """The newest readable checkpoint restored onto `state`'s shapes and shardings, or (0, state, {}).

    Raises:
      CheckpointError: checkpoints exist and none can be read.
      ValueError: it was written under another PRNG implementation (the random streams would differ).
    """
    restored = checkpointer.restore(abstract_like(state), verify=verify_fingerprint)
    if restored is None:
        return 0, state, {}
    step, state, meta = restored
    saved = meta.get("rng", {}).get("prng_impl", prng_impl())
    if saved != prng_impl():
        raise ValueError(f"{checkpointer.directory}: checkpoint {step} was written with "
                         f"jax_default_prng_impl={saved!r}, this process uses {prng_impl()!r}: the random "
                         f"streams would differ; set the same one to resume")
    return step, state, meta


@dataclasses.dataclass
class InferenceState:
    """A trained run loaded for evaluation or solving (`load_for_inference`).

    Attributes:
      config: the run's resolved config (run.json); model_cfg: its model.
      graphdef, params, buffers: the model, split (`params` are the EMA weights when the run has EMA
        and `weights="ema"`, else the raw ones).
      puzzle_table: [N, ndim] float32 or None.
      step: the checkpoint's step; weights: "ema" or "raw".
    """

    config: ml_collections.ConfigDict
    model_cfg: ModelConfig
    graphdef: Any
    params: Any
    buffers: Any
    puzzle_table: Any
    step: int
    weights: str


def at_size(run: InferenceState, seq_len: int, grid_width: int = 0, H_cycles: int = 0) -> InferenceState:
    """`run` rebuilt for inputs of another size (length extrapolation) or another H_cycles, same weights.

    Only the module structure changes (RoPE tables, latent shapes, the 2-D convolution's grid width,
    the number of sweeps); the parameters are shared unchanged, which is possible when none of them has
    a length axis: not with learned positions (`embed_pos` [P+S, D]) or the MLP-t mixer (a SwiGLU over
    the sequence axis).

    Args:
      run: a loaded run (`load_for_inference`).
      seq_len: S of the new inputs; grid_width: the new grid width for a 2-D convolution (0: keep);
      H_cycles: sweeps per supervision step at test time (0: the run's).
    Returns:
      An InferenceState whose `model_cfg` and `graphdef` fit the new size (the same object when nothing
      changes).
    Raises:
      ValueError: the model's parameters depend on seq_len (naming the field), or the new config is invalid.
    """
    from flax import nnx

    from recur_jax.core.layers import Buffer
    from recur_jax.core.models import build_model

    cfg = run.model_cfg
    changes = {"seq_len": int(seq_len)}
    if cfg.conv_grid_width and grid_width:
        changes["conv_grid_width"] = int(grid_width)
    if H_cycles:
        changes["H_cycles"] = int(H_cycles)
    if all(getattr(cfg, k) == v for k, v in changes.items()):
        return run
    if int(seq_len) != cfg.seq_len:
        if cfg.pos_encodings == "learned":
            raise ValueError(f"model.pos_encodings='learned': the run's position table has seq_len={cfg.seq_len} "
                             f"rows, so it cannot be evaluated at seq_len={seq_len} (RoPE or none generalise)")
        if cfg.mlp_t:
            raise ValueError(f"model.mlp_t=True: the MLP-t mixer's weights are sized for seq_len={cfg.seq_len}, "
                             f"so the run cannot be evaluated at seq_len={seq_len}")
    new_cfg = cfg.replace(**changes)
    model = nnx.eval_shape(lambda: build_model(new_cfg, nnx.Rngs(params=0)))
    graphdef, _, _ = nnx.split(model, nnx.Param, Buffer)
    return dataclasses.replace(run, model_cfg=new_cfg, graphdef=graphdef)


def read_run_record(workdir: str) -> dict[str, Any]:
    """`<workdir>/run.json` (size-limited JSON), checked to be a run record.

    Raises:
      FileNotFoundError: no run.json (the message asks whether this is a recur_jax workdir).
      ValueError: too large, not JSON, or not a run record (names the file).
    """
    path = paths.join(workdir, "run.json")
    if not paths.exists(path):
        raise FileNotFoundError(f"{path} not found: is {workdir} a recur_jax workdir?")
    run = read_json(path, max_bytes=MAX_RUN_JSON_BYTES)
    if not isinstance(run, dict) or not isinstance(run.get("config"), dict):
        raise ValueError(f"{path}: expected an object with a 'config' object (a recur_jax run record)")
    return run


def load_for_inference(workdir: str, step: int | None = None, weights: str = "ema") -> InferenceState:
    """Loads a trained run's checkpoint (newest, or `step`) for evaluation or solving; changes nothing.

    Args:
      workdir: a training run's workdir.
      step: a checkpoint step (None: the newest readable one).
      weights: "ema" (the EMA weights, when the run has EMA; else the raw ones) or "raw".
    Raises:
      FileNotFoundError: no run.json or no checkpoint in `workdir`.
      ValueError: run.json is too large, not JSON, or not a run record (names the file); unknown weights.
      CheckpointError: `step` (or every checkpoint) cannot be read.
    """
    if weights not in ("ema", "raw"):
        raise ValueError(f"weights={weights!r}: expected 'ema' or 'raw'")
    config = ml_collections.ConfigDict(read_run_record(workdir)["config"])
    model_cfg = ModelConfig.from_dict(config.model.to_dict())
    ckpt = Checkpointer(paths.join(workdir, "checkpoints"), keep=max(1, config.checkpoint.keep), async_save=False)
    try:
        if not ckpt.steps():
            raise FileNotFoundError(f"no checkpoint in {ckpt.directory}")
        graphdef, state = init_train_state(config, model_cfg, example_batch(config, model_cfg))
        restored = ckpt.restore(abstract_like(state), step)
    finally:
        ckpt.close()
    if restored is None:
        raise FileNotFoundError(f"no readable checkpoint in {ckpt.directory}")
    s, state, _ = restored
    use_ema = weights == "ema" and bool(config.ema)
    return InferenceState(config=config, model_cfg=model_cfg, graphdef=graphdef,
                          params=state.ema_params if use_ema else state.params, buffers=state.buffers,
                          puzzle_table=state.puzzle_table, step=s, weights="ema" if use_ema else "raw")


__all__ = ["CheckpointError", "Checkpointer", "InferenceState", "abstract_like", "check_resumable",
           "at_size", "checkpoint_record", "is_disk_full", "load_for_inference", "prng_impl", "read_run_record", "restore_for_training",
           "verify_fingerprint"]
