"""Training: `train_and_evaluate(config, workdir)`, the loop that runs the jitted step, evaluates,
logs and checkpoints, and resumes exactly.

The pieces it composes, each in its own module: the state and its fingerprint (`run.state`), the pure
step (`run.step`), what a checkpoint holds and whether it may be resumed (`run.checkpoint`), the workdir
policy (`run.workdir`), logging and the non-finite guard (`run.runlog`), preemption (`run.preemption`),
the mesh (`run.sharding`), config validation (`run.config`) and evaluation (`run.evaluate`).

Workdir: `checkpoints/` (Orbax; restarting the same command resumes), `run.json`, `metrics.jsonl`,
`tb/` (TensorBoard), `summary.json` at the end (with a fingerprint over the bytes of parameters,
optimizer state, EMA and puzzle table).
"""

from __future__ import annotations

import dataclasses
import importlib.metadata
import os
import platform
import subprocess
import time
from typing import Any, Callable

import jax
import ml_collections
import numpy as np
from flax import nnx
from jax.sharding import NamedSharding, PartitionSpec as P

from recur_jax.core.models import ModelConfig, count_params
from recur_jax.io import paths
from recur_jax.io.safe_io import write_json_atomic
from recur_jax.run import checkpoint, config as run_config, evaluate, sharding
from recur_jax.run import workdir as workdir_lib
from recur_jax.run.checkpoint import CheckpointError, Checkpointer
from recur_jax.run.preemption import Preempted, PreemptionGuard
from recur_jax.run.runlog import MetricsWindow, NonfiniteGuard, RunLog, TrainingDiverged
from recur_jax.run.state import TrainState, fingerprint, fingerprint_parts, init_train_state
from recur_jax.run.step import make_train_step
from recur_jax.tasks.loader import TrainLoader, eval_batches
from recur_jax.tasks.registry import Task, build_task


def _package_versions() -> dict[str, str]:
    out = {}
    for name in ("recur_jax", "jax", "jaxlib", "flax", "optax", "orbax-checkpoint", "numpy", "grain",
                 "tensorflow-datasets"):
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def _git_hash() -> str:
    here = os.path.dirname(os.path.abspath(__file__))
    try:
        res = subprocess.run(["git", "-C", here, "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10)
        return res.stdout.strip() if res.returncode == 0 else "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


@dataclasses.dataclass
class PreparedRun:
    """Everything the loop needs, built by `prepare_run`.

    Attributes:
      config, model_cfg, task: the resolved config, its model and the task's data.
      workdir, is_main: the output directory; whether this process writes files.
      state: the TrainState (restored or fresh), sharded; start_step and resume_meta: where it came from.
      step_fn: the jitted training step; put_batch: places a host batch on the mesh.
      loader: the training batches; per_batch, total: optimizer steps per batch and in all.
      eval_settings, eval_fn, task_eval: evaluation (`run.evaluate`).
      checkpointer, runlog, num_params: checkpoints, logs, and the trainable parameter count.
    """

    config: ml_collections.ConfigDict
    model_cfg: ModelConfig
    task: Task
    workdir: str
    is_main: bool
    state: TrainState
    start_step: int
    resume_meta: dict[str, Any]
    step_fn: Callable
    put_batch: Callable
    loader: TrainLoader
    per_batch: int
    total: int
    eval_settings: evaluate.EvalSettings
    eval_fn: Callable
    task_eval: Any
    checkpointer: Checkpointer
    runlog: RunLog
    num_params: int

    def evaluate(self) -> dict[str, Any]:
        """The evaluation of the current state (EMA weights when the run has EMA) on the test split."""
        st = self.state
        params = st.ema_params if self.config.ema else st.params
        from tqdm import tqdm

        settings = self.eval_settings
        batches = eval_batches(self.task.test, global_batch_size=settings.global_batch_size,
                               to_example=self.task.test_transform, process_index=jax.process_index(),
                               process_count=jax.process_count(), max_examples=settings.max_examples)
        n = len(self.task.test) if settings.max_examples is None else min(len(self.task.test), settings.max_examples)
        batches = tqdm(batches, total=-(-n // settings.global_batch_size), desc="eval", leave=False,
                       disable=not self.is_main, dynamic_ncols=True)
        return evaluate.evaluate(self.eval_fn, params, st.buffers, st.puzzle_table, batches, self.put_batch,
                                 self.task_eval, settings=self.eval_settings)


def _build_data(config: ml_collections.ConfigDict, workdir: str) -> Task:
    """Builds (or reuses) the task's data; process 0 first, the others then read it."""
    n_proc, pid = jax.process_count(), jax.process_index()
    if n_proc > 1 and pid != 0:
        sharding.barrier("recur_jax_data_built")
    task = build_task(config.data, workdir)  # validates the data before anything else is written
    if n_proc > 1 and pid == 0:
        sharding.barrier("recur_jax_data_built")
    return task


def _claim_workdir(config: ml_collections.ConfigDict, workdir: str, *, overwrite: bool, resume_anyway: bool
                   ) -> tuple[Checkpointer, dict[str, tuple[Any, Any]]]:
    """The workdir policy (`run.workdir`: a recorded run with another config is refused; `overwrite`
    sets it aside) and the checkpoints' compatibility (`run.checkpoint.check_resumable`), before anything
    is written. Returns the checkpointer and the config differences that `resume_anyway` accepts."""
    recorded, source = workdir_lib.recorded_config(workdir)
    changed = workdir_lib.check(recorded, source, config.to_dict(), overwrite=overwrite, resume_anyway=resume_anyway)
    if overwrite:
        if jax.process_index() == 0:
            workdir_lib.set_aside_previous_run(workdir)
        sharding.barrier("recur_jax: previous run set aside")
    checkpointer = Checkpointer(paths.join(workdir, "checkpoints"), keep=config.checkpoint.keep,
                                async_save=config.checkpoint.async_save, cleanup_tmp=True)
    saved = checkpoint.check_resumable(checkpointer, config, resume_anyway=resume_anyway)
    if recorded is None and saved is not None:  # no readable run.json: the checkpoint's record decides
        step, saved_config = saved
        changed = workdir_lib.check(saved_config, f"{checkpointer.directory}/{step}", config.to_dict(),
                                    overwrite=False, resume_anyway=resume_anyway)
    return checkpointer, changed


def _write_run_record(run: PreparedRun, mesh, shardings, changed: dict, resume_anyway: bool) -> None:
    """`run.json`: resolved config, git hash, versions, devices, mesh, data, parameter shardings."""
    dev = jax.devices()[0]
    record = {"config": run.config.to_dict(), "git_hash": _git_hash(), "packages": _package_versions(),
              "python": platform.python_version(),
              "devices": {"count": jax.device_count(), "process_count": jax.process_count(),
                          "kind": dev.device_kind, "platform": dev.platform},
              "mesh": dict(mesh.shape), "seed": run.config.seed, "num_params": run.num_params,
              "data": run.task.describe, "resumed_from_step": run.start_step,
              "param_shardings": sharding.describe(shardings.params)}
    history = workdir_lib.recorded_run_field(run.workdir, "resumed_anyway") or []  # never dropped
    if changed and resume_anyway and run.start_step:
        history = [*history, {"from_step": run.start_step, "changed": {k: {"before": a, "now": b}
                                                                         for k, (a, b) in sorted(changed.items())}}]
    if history:
        record["resumed_anyway"] = history
    write_json_atomic(paths.join(run.workdir, "run.json"), record, indent=2, default=str)


def prepare_run(config: ml_collections.ConfigDict, workdir: str, *, overwrite: bool = False,
                resume_anyway: bool = False) -> PreparedRun:
    """Validates, builds the data, claims the workdir, creates or restores the state, and jits the steps.

    Raises: as `train_and_evaluate` (nothing in an existing workdir is touched before the checks pass).
    """
    workdir = paths.absolute(workdir)
    run_config.validate(config, jax.device_count())
    if overwrite and resume_anyway:
        raise ValueError("overwrite and resume_anyway exclude each other: start over, or continue the run")
    if paths.isfile(workdir):
        raise ValueError(f"--workdir={workdir} exists and is not a directory")
    task = _build_data(config, workdir)
    config, model_cfg = run_config.resolve(config, task)
    checkpointer, changed = _claim_workdir(config, workdir, overwrite=overwrite, resume_anyway=resume_anyway)

    mesh = sharding.make_mesh(config)
    by_row = sharding.batch_sharding(mesh, config)  # rows over data x fsdp
    sharding.check_process_rows(by_row, config.global_batch_size)
    put_batch = lambda local: sharding.put_local_batch(local, by_row)  # noqa: E731
    pid, n_proc = jax.process_index(), jax.process_count()
    loader = TrainLoader(task.train, global_batch_size=config.global_batch_size, seed=config.data.seed + config.seed,
                         transform=task.train_transform, process_index=pid, process_count=n_proc)
    example = {k: np.zeros((config.global_batch_size,) + v.shape[1:], v.dtype) for k, v in loader.batch(0).items()}
    graphdef, shardings, state = sharding.init_sharded(
        lambda: init_train_state(config, model_cfg, example), mesh, config)  # created in place, sharded
    start_step, state, resume_meta = checkpoint.restore_for_training(checkpointer, state)
    if start_step:
        print(f"Resuming from step {start_step} ({checkpointer.directory})")

    param_compute = sharding.compute_shardings(shardings.params)  # FSDP: gathered over fsdp for compute
    replicated = NamedSharding(mesh, P())
    step_fn = jax.jit(make_train_step(graphdef, config, model_cfg, param_compute), in_shardings=(shardings, by_row),
                      out_shardings=(shardings, replicated), donate_argnums=(0,))
    settings = evaluate.resolve_settings(config, model_cfg)
    eval_fn = evaluate.jit_eval_step(graphdef, model_cfg, settings, param_compute,
                                     (shardings.ema_params if config.ema else shardings.params, shardings.buffers,
                                      shardings.puzzle_table, by_row), replicated)
    paths.makedirs(workdir)
    per_batch = model_cfg.halt_max_steps if config.act_mode == "episode" else 1  # optimizer steps per batch
    total = int(config.total_steps) // per_batch * per_batch
    run = PreparedRun(
        config=config, model_cfg=model_cfg, task=task, workdir=workdir, is_main=pid == 0, state=state,
        start_step=start_step, resume_meta=resume_meta, step_fn=step_fn, put_batch=put_batch, loader=loader,
        per_batch=per_batch, total=total, eval_settings=settings, eval_fn=eval_fn,
        task_eval=task.make_evaluator(workdir, pid == 0) if task.make_evaluator else None,
        checkpointer=checkpointer,
        runlog=RunLog(workdir, start_step, pid == 0, redo_final_eval=start_step >= total),  # final eval runs again
        num_params=count_params(nnx.merge(graphdef, state.params, state.buffers)))
    if run.is_main:
        _write_run_record(run, mesh, shardings, changed, resume_anyway)
    return run


def header(run: PreparedRun) -> str:
    """What is about to run, in a few lines: model, data, steps, evaluation, workdir, devices."""
    c, m, d = run.config, run.model_cfg, run.task.describe
    dev = jax.devices()[0]
    data = ", ".join(f"{k}={d[k]}" for k in ("source", "tier", "path", "num_train", "num_test") if d.get(k) is not None)
    start = f", resuming from step {run.start_step}" if run.start_step else ""
    mixer = "MLP" if m.mlp_t else (f"convolution k={m.conv_kernel}" if m.conv_kernel else "attention")
    return (f"recur_jax: {m.arch.upper()} ({mixer} mixer), {run.num_params:,} parameters, "
            f"H_cycles={m.H_cycles} L_cycles={m.L_cycles} halt_max_steps={m.halt_max_steps}\n"
            f"  data: {c.data.name} ({data})\n"
            f"  train: {run.total} steps x {c.global_batch_size} examples{start}; evaluation of "
            f"{run.eval_settings.halt_max_steps} supervision steps at the end"
            f"{f' and every {c.eval_every} steps' if c.eval_every else ''}\n"
            f"  workdir: {run.workdir}; devices: {jax.device_count()} x {dev.platform} ({dev.device_kind}), "
            f"{jax.process_count()} process(es)")


def _crossed(every: int, done: int, per_batch: int, total: int) -> bool:
    """Whether the batch that ended at optimizer step `done` crossed a multiple of `every` (before the end)."""
    return bool(every) and done // every > (done - per_batch) // every and done < total


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str, *, overwrite: bool = False,
                       resume_anyway: bool = False) -> dict[str, Any]:
    """Trains, evaluates and checkpoints into `workdir`; resumes if it holds checkpoints.

    Args:
      config: an experiment config (experiments/*.py `get_config`), possibly overridden.
      workdir: output directory (created).
      overwrite: the workdir holds another run: move its files to `<workdir>/previous/<time>/` and
        start a fresh run (see `recur_jax.run.workdir`).
      resume_anyway: the workdir holds a run with a different config: resume its newest checkpoint
        under this config (the model, global batch and EMA must still match the checkpoint).
    Returns:
      The summary dict also written to `workdir/summary.json`.
    Raises:
      ValueError: an invalid config field (named) or data that fails validation (file and line);
        nothing in an existing workdir's checkpoints is touched then.
      workdir.WorkdirMismatch (a ValueError): the workdir's run.json (or newest checkpoint) records a
        different config and neither `overwrite` nor `resume_anyway` was given.
      workdir.WorkdirInUse: another live run holds the workdir (`run.workdir.WorkdirLock`).
      OSError: the workdir cannot be created or written (read-only, under a file, a full disk).
      CheckpointError: a checkpoint cannot be restored, or a save failed (a full disk: the line says how
        much the state needs); no summary is written then and the run stays resumable from the newest
        committed checkpoint.
      TrainingDiverged: the loss or a gradient became NaN/Inf (policy "stop"; the message names the step
        and the quantity; no checkpoint is written after the last good one), or more than
        `nonfinite.max_consecutive_skips` steps in a row were skipped (policy "skip").
      Preempted: SIGTERM/SIGINT (or, multi-host, a preemption notice to any process): a checkpoint of
        the current step was written (and committed) first; running again resumes from it.
    """
    t_start = time.time()
    run_config.validate(config, jax.device_count())  # before the workdir is created or locked
    with workdir_lib.WorkdirLock(workdir, active=jax.process_index() == 0):  # one run per workdir
        return _train(config, workdir, t_start, overwrite=overwrite, resume_anyway=resume_anyway)


def _train(config: ml_collections.ConfigDict, workdir: str, t_start: float, *, overwrite: bool,
           resume_anyway: bool) -> dict[str, Any]:
    """`train_and_evaluate` inside the workdir lock."""
    run = prepare_run(config, workdir, overwrite=overwrite, resume_anyway=resume_anyway)
    if run.is_main:
        print(header(run), flush=True)
    loop = TrainLoop(run)
    with PreemptionGuard(jax.process_count()) as preemption:
        try:
            for b in range(run.start_step // run.per_batch, run.total // run.per_batch):
                done = loop.step(b)
                # Evaluate before checkpointing: a resumed run must not lose (or repeat) an evaluation line.
                if _crossed(run.config.eval_every, done, run.per_batch, run.total):
                    loop.evaluate(done)
                if _crossed(run.config.checkpoint_every, done, run.per_batch, run.total):
                    loop.checkpoint(done)
                if preemption.should_stop(done):  # every step, on every process (multi-host sync point)
                    loop.stop(done, preemption.reason())
            loop.flush()
            loop.bar.close()
            final_step = int(run.state.step)
            if final_step > run.start_step or not run.checkpointer.steps():
                loop.checkpoint(final_step, force=True)
            if preemption.requested and jax.process_count() == 1:  # signalled after the last step: no evaluation
                loop.stop(final_step, preemption.reason())
            ev = loop.evaluate(final_step, announce=False)  # overlaps the asynchronous final save
            loop.commit(final_step)  # the summary declares the run finished: only once its checkpoint is on disk
            summary = {"step": final_step, "wall_s": time.time() - t_start, "eval": ev, "train": loop.window.last,
                       "fingerprint": fingerprint(run.state), "fingerprint_parts": fingerprint_parts(run.state),
                       "num_params": run.num_params, "data": run.task.describe}
            if run.is_main:
                write_json_atomic(paths.join(run.workdir, "summary.json"), summary, indent=2)
            return summary
        finally:
            loop.close()


class TrainLoop:
    """The loop's moving parts over a PreparedRun: the progress bar, the metric window (metrics fetched
    one step late), the non-finite guard, and the last checkpoint known to be good.

    Args:
      run: the prepared run (`prepare_run`); its `state` is advanced in place.
    """

    def __init__(self, run: PreparedRun):
        from tqdm import tqdm

        self.run = run
        self.window = MetricsWindow(run.config.log_every, run.config.global_batch_size, run.per_batch,
                                    run.resume_meta)
        self.nonfinite = NonfiniteGuard(run.config, int(run.resume_meta.get("skip_streak", 0)))
        self.bar = tqdm(total=run.total, initial=run.start_step, disable=not run.is_main, dynamic_ncols=True,
                        desc="train")
        self.last_good = run.start_step
        self.pending: tuple[int, dict[str, jax.Array]] | None = None

    def step(self, b: int) -> int:
        """Dispatches batch b's step, then handles the previous step's metrics; returns the optimizer steps done."""
        run = self.run
        run.state, metrics = run.step_fn(run.state, run.put_batch(run.loader.batch(b)))
        self.flush()
        done = (b + 1) * run.per_batch
        self.pending = (done, metrics)
        self.bar.update(run.per_batch)
        return done

    def flush(self) -> None:
        """Fetches the held step's metrics: non-finite guard, metric window, `train` line."""
        if self.pending is None:
            return
        (done, metrics), self.pending = self.pending, None
        run = self.run
        host = {k: float(v) for k, v in jax.device_get(metrics).items()}
        where = f"step {done}" if run.per_batch == 1 else f"steps {done - run.per_batch + 1}-{done} (one episode)"
        kept = (f"the last good checkpoint (step {self.last_good}) in {run.checkpointer.directory} is kept and "
                f"nothing after it was written" if self.last_good else
                f"no checkpoint was written to {run.checkpointer.directory}")
        if (warning := self.nonfinite.check(where, host, kept)) is not None:
            self.bar.write(warning)
        line = self.window.add(done, host, final=done == run.total)
        if line is not None:
            line["epoch"] = run.loader.epoch(done // run.per_batch)
            run.runlog.write("train", done, line)
            self.bar.set_postfix(loss=f"{line.get('loss', 0):.4f}", acc=f"{line['accuracy']:.3f}",
                                 exact=f"{line['exact_accuracy']:.3f}", ex_s=f"{line['examples_per_s']:.0f}")

    def evaluate(self, step: int, announce: bool = True) -> dict[str, Any]:
        """Evaluates the current state and writes the `eval` line at `step`."""
        self.flush()
        ev = self.run.evaluate()
        self.run.runlog.write("eval", step, ev)
        if announce and self.run.is_main:
            self.bar.write(f"step {step}: eval exact_accuracy={ev['exact_accuracy']:.4f} "
                           f"accuracy={ev['accuracy']:.4f}")
        return ev

    def checkpoint(self, step: int, force: bool = False) -> None:
        """Saves the state at `step` with its record (asynchronously unless the config says otherwise)."""
        self.flush()
        run = self.run
        record = checkpoint.checkpoint_record(run.config, run.state, step,
                                              {**self.window.state_dict(), "skip_streak": self.nonfinite.streak})
        run.checkpointer.save(step, run.state, record, force=force)
        self.last_good = step

    def commit(self, step: int) -> None:
        """Waits for the save of `step` and checks that it committed.

        Raises:
          CheckpointError: the save failed or `step` is not among the committed checkpoints (the run stays
            resumable from the newest committed one, and no summary is written).
        """
        self.run.checkpointer.wait()
        if not self.run.checkpointer.committed(step):
            raise CheckpointError(f"checkpoint step {step} is not among the committed checkpoints in "
                                  f"{self.run.checkpointer.directory} after its save; the run is not finished: "
                                  f"run the same command again to resume")

    def stop(self, step: int, reason: str) -> None:
        """Checkpoints `step` (unless it just was), waits for the commit, raises Preempted."""
        self.flush()
        self.run.checkpointer.wait()  # a periodic save of this very step may still be in flight
        if step not in self.run.checkpointer.steps():
            self.checkpoint(step, force=True)
            self.run.checkpointer.wait()
        raise Preempted(step, self.run.checkpointer.directory, reason)

    def close(self) -> None:
        """Closes the progress bar, waits for pending saves, closes the logs."""
        self.bar.close()
        self.run.checkpointer.close()
        self.run.runlog.close()


__all__ = ["PreparedRun", "TrainingDiverged", "prepare_run", "train_and_evaluate"]
