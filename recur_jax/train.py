"""Training: `train_and_evaluate(config, workdir)`, the pure jitted train step, and the run record.

One optimizer step = one ACT step on the persistent carry (the official streaming semantics,
TRM.md 3.2), or, with `config.act_mode = "episode"`, all `halt_max_steps` supervision steps of one
batch inside one jitted `lax.scan` (the paper's pseudocode: a fresh carry per batch, one optimizer
update per supervision step, rows stop contributing once they halt).

Per step: gradients of loss / global_batch_size (act.act_train_grads); AdamATan2 on the model
parameters; sparse SignSGD on the puzzle-table rows of the global batch; EMA of the parameters.

Workdir: `checkpoints/` (Orbax; restarting the same command resumes), `run.json`, `metrics.jsonl`,
`tb/` (TensorBoard), `summary.json` at the end (with a fingerprint over the bytes of parameters,
optimizer state, EMA and puzzle table).
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import math
import os
import platform
import subprocess
import time
from typing import Any

import flax.struct
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from flax import nnx
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from recur_jax import act, evaluate, optim
from recur_jax.checkpoint import Checkpointer, abstract_like
from recur_jax.data.loader import TrainLoader, eval_batches
from recur_jax.data.tasks import Task, build_task
from recur_jax.layers import Buffer
from recur_jax.models import ModelConfig, build_model, count_params

PURPOSE_HALT = 1  # fold_in ids of the RNG streams derived from the root key
PURPOSE_INIT = 2


class TrainingDiverged(RuntimeError):
    """The loss or a metric became NaN/Inf; the last good checkpoint is kept."""


@flax.struct.dataclass
class TrainState:
    """Everything a step reads and writes; also exactly what a checkpoint holds.

    Attributes:
      step: int32 scalar, optimizer steps taken.
      params: nnx.State of the model's float32 parameters.
      buffers: nnx.State of the frozen H_init/L_init [D] (compute dtype).
      opt_state: AdamATan2 state.
      ema_params: EMA of params (same structure), or None when EMA is off.
      puzzle_table: [num_puzzle_identifiers, puzzle_emb_ndim] float32, or None.
      puzzle_opt_state: sparse SignSGD state (its step count), or None.
      carry: the ACT carry, [global_batch, ...].
    """

    step: jax.Array
    params: Any
    buffers: Any
    opt_state: Any
    ema_params: Any
    puzzle_table: jax.Array | None
    puzzle_opt_state: Any
    carry: act.ACTCarry


def _schedules(config: ml_collections.ConfigDict):
    o = config.optim
    lr = optim.warmup_cosine_schedule(o.lr, o.lr_warmup_steps, config.total_steps, o.lr_min_ratio)
    pe_lr = optim.warmup_cosine_schedule(o.puzzle_emb_lr, o.lr_warmup_steps, config.total_steps, o.lr_min_ratio)
    return lr, pe_lr


def make_optimizers(config: ml_collections.ConfigDict):
    """(AdamATan2 for the parameters, sparse SignSGD for the puzzle table, lr schedule)."""
    lr, pe_lr = _schedules(config)
    o = config.optim
    tx = optim.adam_atan2(lr, b1=o.beta1, b2=o.beta2, weight_decay=o.weight_decay)
    pe_opt = optim.sparse_signsgd(pe_lr, weight_decay=o.puzzle_emb_weight_decay)
    return tx, pe_opt, lr


def init_train_state(config: ml_collections.ConfigDict, model_cfg: ModelConfig, example_batch: act.Batch
                     ) -> tuple[nnx.GraphDef, TrainState]:
    """Builds the model (seeded by config.seed), the optimizer states, EMA, puzzle table and carry.

    Args:
      example_batch: a global batch (only shapes are used) for the carry.
    Returns:
      (graphdef, state) with the puzzle table zero-initialised as in the reference.
    """
    key = jax.random.fold_in(jax.random.key(config.seed), PURPOSE_INIT)
    model = build_model(model_cfg, nnx.Rngs(params=key))
    graphdef, params, buffers = nnx.split(model, nnx.Param, Buffer)
    tx, pe_opt, _ = make_optimizers(config)
    table = None
    if model_cfg.puzzle_emb_ndim > 0:
        table = jnp.zeros((model_cfg.num_puzzle_identifiers, model_cfg.puzzle_emb_ndim), jnp.float32)
    state = TrainState(
        step=jnp.zeros((), jnp.int32), params=params, buffers=buffers, opt_state=tx.init(params),
        ema_params=jax.tree_util.tree_map(jnp.copy, params) if config.ema else None,
        puzzle_table=table, puzzle_opt_state=pe_opt.init(table) if table is not None else None,
        carry=act.initial_carry(model, example_batch))
    return graphdef, state


def make_train_step(graphdef: nnx.GraphDef, config: ml_collections.ConfigDict, model_cfg: ModelConfig):
    """The pure training step `(state, batch) -> (state, metrics)` (not jitted).

    Metrics are device scalars: the reference's sums (count, accuracy, exact_accuracy,
    q_halt_accuracy, steps), the loss terms summed over the batch, `loss` and `lr`.
    """
    tx, pe_opt, lr_schedule = make_optimizers(config)
    root = jax.random.key(config.seed)
    scale = 1.0 / config.global_batch_size
    use_ema, ema_rate = bool(config.ema), float(config.ema_rate)

    def apply_grads(state: TrainState, grads, puzzle_grads, carry) -> TrainState:
        updates, opt_state = tx.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        table, pe_state = state.puzzle_table, state.puzzle_opt_state
        if puzzle_grads is not None:
            table, pe_state = pe_opt.update(table, puzzle_grads[0], puzzle_grads[1], pe_state)
        ema = optim.ema_update(state.ema_params, params, ema_rate) if use_ema else None
        return state.replace(step=state.step + 1, params=params, opt_state=opt_state, ema_params=ema,
                             puzzle_table=table, puzzle_opt_state=pe_state, carry=carry)

    k = int(config.microbatches)
    if k < 1 or config.global_batch_size % k:
        raise ValueError(f"config.microbatches={k}: expected a divisor of global_batch_size="
                         f"{config.global_batch_size}")

    def grads_of(state: TrainState, carry, batch, rng, row_weight):
        loss, carry, _, metrics, grads, pz = act.act_train_grads(
            graphdef, state.params, state.buffers, state.puzzle_table, carry, batch, rng,
            loss_scale=scale, row_weight=row_weight)
        return (loss, metrics, grads), (carry, pz)

    def split(x):  # [B, ...] -> [k, B/k, ...]; microbatch i holds rows i, i+k, ... (no resharding)
        return x.reshape((x.shape[0] // k, k) + x.shape[1:]).swapaxes(0, 1)

    def merge(x):  # the inverse of split
        return x.swapaxes(0, 1).reshape((-1,) + x.shape[2:])

    def microbatched(state: TrainState, batch: act.Batch, rng, row_weight):
        """Gradients summed over k row chunks computed one after another (less memory, same sums)."""
        if k == 1:
            return grads_of(state, state.carry, batch, rng, row_weight)
        weight = jnp.ones(batch["inputs"].shape[:1], jnp.float32) if row_weight is None else row_weight
        xs = jax.tree_util.tree_map(split, (state.carry, batch, weight))

        def body(acc, args):
            i, (carry_i, batch_i, w_i) = args
            out, rest = grads_of(state, carry_i, batch_i, jax.random.fold_in(rng, i), w_i)
            return jax.tree_util.tree_map(jnp.add, acc, out), rest

        carry0, batch0, w0 = jax.tree_util.tree_map(lambda x: x[0], xs)
        first = jax.eval_shape(lambda: grads_of(state, carry0, batch0, rng, w0)[0])
        zeros = jax.tree_util.tree_map(lambda a: jnp.zeros(a.shape, a.dtype), first)
        acc, rest = jax.lax.scan(body, zeros, (jnp.arange(k), xs))
        return acc, jax.tree_util.tree_map(merge, rest)

    def one_step(state: TrainState, batch: act.Batch, row_weight=None):
        rng = jax.random.fold_in(jax.random.fold_in(root, state.step), PURPOSE_HALT)
        (loss, metrics, grads), (carry, pz) = microbatched(state, batch, rng, row_weight)
        metrics = dict(metrics, loss=loss, lr=optim.scheduled_lr(lr_schedule, state.step + 1))
        return apply_grads(state, grads, pz, carry), metrics

    if config.act_mode == "streaming":
        return one_step
    if config.act_mode != "episode":
        raise ValueError(f"act_mode={config.act_mode!r}: expected 'streaming' or 'episode'")

    def episode(state: TrainState, batch: act.Batch):
        fresh = state.carry.replace(halted=jnp.ones_like(state.carry.halted))
        state = state.replace(carry=fresh)

        def body(carry_state, _):
            st, done = carry_state
            st = st.replace(carry=st.carry.replace(halted=jnp.zeros_like(done)))  # rows are never replaced
            st, metrics = one_step(st, batch, row_weight=(~done).astype(jnp.float32))
            return (st, done | st.carry.halted), metrics

        # First supervision step resets every row from the batch; later ones continue the same rows.
        state, m0 = one_step(state, batch)
        (state, _), ms = jax.lax.scan(body, (state, state.carry.halted), None,
                                      length=model_cfg.halt_max_steps - 1)
        metrics = {k: (m0[k] + jnp.sum(ms[k])) if k not in ("lr",) else ms[k][-1] for k in m0}
        return state, metrics

    return episode


def fingerprint(state: TrainState) -> str:
    """sha256 over the bytes (and shapes/dtypes) of params, optimizer state, EMA and puzzle table."""
    h = hashlib.sha256()
    for leaf in jax.tree_util.tree_leaves((state.params, state.opt_state, state.ema_params, state.puzzle_table,
                                           state.puzzle_opt_state)):
        arr = np.asarray(jax.device_get(leaf))
        h.update(f"{arr.dtype}{arr.shape}".encode())
        h.update(np.ascontiguousarray(arr).tobytes())
    return h.hexdigest()


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


def _normalise_train_metrics(sums: dict[str, float], steps: int, global_batch: int) -> dict[str, float]:
    """Reference logging: accuracies over rows that halted; losses per example of the global batch."""
    count = max(sums.get("count", 0.0), 1.0)
    out = {"count": sums.get("count", 0.0) / max(steps, 1)}
    for k in ("accuracy", "exact_accuracy", "q_halt_accuracy", "steps"):
        out[k] = sums.get(k, 0.0) / count
    for k in ("loss", "lm_loss", "q_halt_loss", "q_continue_loss"):
        if k in sums:
            out[k] = sums[k] / (max(steps, 1) * global_batch)
    out["lr"] = sums.get("lr_last", 0.0)
    return out


class _RunLog:
    """metrics.jsonl + TensorBoard, written by process 0 only."""

    def __init__(self, workdir: str, restored_step: int, active: bool):
        self.active = active
        self.path = os.path.join(workdir, "metrics.jsonl")
        self.tb = None
        if not active:
            return
        if os.path.exists(self.path):  # a resumed run replays the steps after its checkpoint
            kept = []
            with open(self.path) as f:
                for ln in f:
                    if not ln.strip():
                        continue
                    try:
                        if json.loads(ln).get("step", 0) <= restored_step:
                            kept.append(ln if ln.endswith("\n") else ln + "\n")
                    except json.JSONDecodeError:  # a line torn by a kill or a full disk: dropped
                        print(f"warning: {self.path}: dropping an unreadable line: {ln[:60]!r}")
            with open(self.path + ".tmp", "w") as f:
                f.writelines(kept)
            os.replace(self.path + ".tmp", self.path)
        from tensorboardX import SummaryWriter

        self.tb = SummaryWriter(os.path.join(workdir, "tb"))

    def write(self, kind: str, step: int, values: dict[str, Any]) -> None:
        if not self.active:
            return
        with open(self.path, "a") as f:
            f.write(json.dumps({"kind": kind, "step": step, **values}) + "\n")
        for k, v in values.items():
            if isinstance(v, (int, float)) and math.isfinite(v):
                self.tb.add_scalar(f"{kind}/{k}", v, step)
            elif k == "exact_accuracy_by_step":
                for i, x in enumerate(v):
                    self.tb.add_scalar(f"{kind}/exact_accuracy_step_{i + 1:02d}", x, step)
        self.tb.flush()

    def close(self):
        if self.tb is not None:
            self.tb.close()


def validate_config(config: ml_collections.ConfigDict, num_devices: int) -> None:
    """Checks every training field before anything is built or written.

    Raises:
      ValueError: naming the first invalid field (`config.<name>=<value>: expected ...`).
    """
    def bad(name: str, value: Any, expected: str):
        raise ValueError(f"config.{name}={value!r}: expected {expected}")

    for name in ("total_steps", "global_batch_size", "log_every", "microbatches"):
        if int(config[name]) < 1:
            bad(name, config[name], "an integer >= 1")
    for name in ("eval_every", "checkpoint_every"):
        if int(config[name]) < 0:
            bad(name, config[name], "an integer >= 0 (0: only at the end)")
    if config.global_batch_size % num_devices:
        bad("global_batch_size", config.global_batch_size, f"a multiple of the {num_devices} devices")
    if config.act_mode not in ("streaming", "episode"):
        bad("act_mode", config.act_mode, "'streaming' or 'episode'")
    if config.global_batch_size % config.microbatches:
        bad("microbatches", config.microbatches, f"a divisor of global_batch_size={config.global_batch_size}")
    if not 0.0 <= float(config.ema_rate) <= 1.0:
        bad("ema_rate", config.ema_rate, "a number in [0, 1]")
    o = config.optim
    for name in ("lr", "puzzle_emb_lr", "weight_decay", "puzzle_emb_weight_decay", "lr_warmup_steps"):
        if float(o[name]) < 0:
            bad(f"optim.{name}", o[name], "a number >= 0")
    if not 0.0 <= float(o.lr_min_ratio) <= 1.0:
        bad("optim.lr_min_ratio", o.lr_min_ratio, "a number in [0, 1]")
    for name in ("beta1", "beta2"):
        if not 0.0 <= float(o[name]) < 1.0:
            bad(f"optim.{name}", o[name], "a number in [0, 1)")
    for name in ("halt_max_steps", "global_batch_size", "max_examples"):
        if int(config.eval[name]) < 0:
            bad(f"eval.{name}", config.eval[name], "an integer >= 0 (0: the default)")
    if config.eval.global_batch_size and config.eval.global_batch_size % num_devices:
        bad("eval.global_batch_size", config.eval.global_batch_size, f"a multiple of the {num_devices} devices")
    if int(config.checkpoint.keep) < 1:
        bad("checkpoint.keep", config.checkpoint.keep, "an integer >= 1")
    for name in ("num_train", "num_test"):
        if name in config.data and int(config.data[name]) < (1 if name == "num_train" else 0):
            bad(f"data.{name}", config.data[name], "a positive integer" if name == "num_train" else ">= 0")
    model = config.model.to_dict()  # num_puzzle_identifiers 0: sized from the data (see _resolve)
    ModelConfig.from_dict(dict(model, num_puzzle_identifiers=max(1, int(model["num_puzzle_identifiers"]))))


def _resolve(config: ml_collections.ConfigDict, task: Task) -> tuple[ml_collections.ConfigDict, ModelConfig]:
    """Fills defaults that depend on the task and checks the config against the data."""
    config = ml_collections.ConfigDict(config.to_dict())
    if config.model.num_puzzle_identifiers == 0:  # 0: the size of the data's identifier map
        config.model.num_puzzle_identifiers = task.num_puzzle_identifiers
    for name, expected in (("vocab_size", task.vocab_size), ("seq_len", task.seq_len),
                           ("num_puzzle_identifiers", task.num_puzzle_identifiers)):
        if config.model[name] != expected:
            raise ValueError(f"config.model.{name}={config.model[name]} but the {task.name} data has {expected}")
    if config.eval.halt_max_steps <= 0:
        config.eval.halt_max_steps = config.model.halt_max_steps
    if config.eval.global_batch_size <= 0:
        config.eval.global_batch_size = config.global_batch_size
    return config, ModelConfig.from_dict(config.model.to_dict())


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict[str, Any]:
    """Trains, evaluates and checkpoints into `workdir`; resumes if it holds checkpoints.

    Args:
      config: an experiment config (experiments/*.py `get_config`), possibly overridden.
      workdir: output directory (created).
    Returns:
      The summary dict also written to `workdir/summary.json`.
    Raises:
      ValueError: an invalid config field (named) or data that fails validation (file and line);
        nothing in an existing workdir's checkpoints is touched then.
      TrainingDiverged: the loss became NaN/Inf (the last good checkpoint is kept).
    """
    t_start = time.time()
    workdir = os.path.abspath(workdir)
    n_dev, n_proc, pid = jax.device_count(), jax.process_count(), jax.process_index()
    validate_config(config, n_dev)
    if os.path.exists(workdir) and not os.path.isdir(workdir):
        raise ValueError(f"--workdir={workdir} exists and is not a directory")
    task = build_task(config.data, workdir)  # validates the data before anything else is written
    config, model_cfg = _resolve(config, task)

    mesh = Mesh(np.asarray(jax.devices()), ("data",))
    replicated = NamedSharding(mesh, P())
    by_row = NamedSharding(mesh, P("data"))

    def put_batch(local: dict[str, np.ndarray]) -> act.Batch:
        return {k: jax.make_array_from_process_local_data(by_row, v) for k, v in local.items()}

    loader = TrainLoader(task.train, global_batch_size=config.global_batch_size, seed=config.data.seed + config.seed,
                         transform=task.train_transform, process_index=pid, process_count=n_proc)
    example = {k: np.zeros((config.global_batch_size,) + v.shape[1:], v.dtype)
               for k, v in loader.batch(0).items()}
    graphdef, state = init_train_state(config, model_cfg, example)
    shardings = jax.tree_util.tree_map(lambda _: replicated, state)
    carry_sh = jax.tree_util.tree_map(lambda _: by_row, state.carry)
    shardings = shardings.replace(carry=carry_sh)
    state = jax.device_put(state, shardings)

    checkpointer = Checkpointer(os.path.join(workdir, "checkpoints"), keep=config.checkpoint.keep,
                                async_save=config.checkpoint.async_save)
    for s in reversed(checkpointer.steps()):  # refuse before touching anything if the run differs
        try:
            saved = checkpointer.read_meta(s).get("config", {})
        except Exception:  # noqa: BLE001 - an unreadable record is handled by restore() below
            continue
        for key in ("model", "data", "global_batch_size", "ema", "seed"):
            now = config[key].to_dict() if isinstance(config[key], ml_collections.ConfigDict) else config[key]
            if key in saved and saved[key] != now:
                raise ValueError(f"{checkpointer.directory}: checkpoint {s} was written with a different "
                                 f"config.{key}; resuming needs the same one (or use a new --workdir)")
        break
    restored = checkpointer.restore(abstract_like(state))
    start_step = 0
    if restored is not None:
        start_step, state, _ = restored
        print(f"Resuming from step {start_step} ({checkpointer.directory})")

    step_fn = jax.jit(make_train_step(graphdef, config, model_cfg), in_shardings=(shardings, by_row),
                      out_shardings=(shardings, replicated), donate_argnums=(0,))
    os.makedirs(workdir, exist_ok=True)
    is_main = pid == 0
    num_params = count_params(nnx.merge(graphdef, state.params, state.buffers))
    if is_main:
        run = {"config": config.to_dict(), "git_hash": _git_hash(), "packages": _package_versions(),
               "python": platform.python_version(), "devices": {"count": n_dev, "process_count": n_proc,
                                                                 "kind": jax.devices()[0].device_kind,
                                                                 "platform": jax.devices()[0].platform},
               "mesh": dict(mesh.shape), "seed": config.seed, "num_params": num_params,
               "data": task.describe, "resumed_from_step": start_step}
        with open(os.path.join(workdir, "run.json"), "w") as f:
            json.dump(run, f, indent=2, default=str)
    runlog = _RunLog(workdir, start_step, is_main)

    eval_steps = int(config.eval.halt_max_steps)
    eval_fn = jax.jit(lambda p, b, t, batch: evaluate.eval_batch(graphdef, p, b, t, batch, eval_steps))
    max_eval = config.eval.max_examples or None
    task_eval = task.make_evaluator(workdir, is_main) if task.make_evaluator else None  # pass@K, reports

    def run_eval(st: TrainState) -> dict[str, Any]:
        params = st.ema_params if config.ema else st.params
        batches = eval_batches(task.test, global_batch_size=config.eval.global_batch_size,
                               to_example=task.test_transform, process_index=pid, process_count=n_proc,
                               max_examples=max_eval)
        return evaluate.evaluate(eval_fn, params, st.buffers, st.puzzle_table, batches, put_batch, task_eval)

    def meta(step: int) -> dict[str, Any]:
        return {"step": step, "data_position": step, "config": config.to_dict()}

    from tqdm import tqdm

    # Streaming: one batch per optimizer step. Episode: one batch per halt_max_steps optimizer steps.
    per_batch = model_cfg.halt_max_steps if config.act_mode == "episode" else 1
    total = int(config.total_steps) // per_batch * per_batch
    if total < 1:
        raise ValueError(f"config.total_steps={config.total_steps} is less than one episode "
                         f"({per_batch} optimizer steps)")
    bar = tqdm(total=total, initial=start_step, disable=not is_main, dynamic_ncols=True, desc="train")
    sums: dict[str, float] = {}
    window_steps, window_t = 0, time.time()
    pending = None
    last_good = start_step
    last_eval: dict[str, Any] = {}
    last_train: dict[str, float] = {}

    def consume(step: int, metrics: dict[str, jax.Array]):
        nonlocal window_steps, window_t, last_train
        host = {k: float(v) for k, v in jax.device_get(metrics).items()}
        bad = [k for k, v in host.items() if not math.isfinite(v)]
        if bad:
            raise TrainingDiverged(f"step {step}: non-finite {', '.join(bad)}; the last good checkpoint "
                                   f"(step {last_good}) in {checkpointer.directory} is kept")
        for k, v in host.items():
            if k == "lr":
                sums["lr_last"] = v
            else:
                sums[k] = sums.get(k, 0.0) + v
        window_steps += per_batch
        if step // config.log_every > (step - per_batch) // config.log_every or step == total:
            dt = time.time() - window_t
            m = _normalise_train_metrics(sums, window_steps, config.global_batch_size)
            m["examples_per_s"] = window_steps * config.global_batch_size / max(dt, 1e-9)
            m["epoch"] = loader.epoch(step // per_batch)
            runlog.write("train", step, m)
            bar.set_postfix(loss=f"{m.get('loss', 0):.4f}", acc=f"{m['accuracy']:.3f}",
                            exact=f"{m['exact_accuracy']:.3f}", ex_s=f"{m['examples_per_s']:.0f}")
            last_train = m
            sums.clear()
            window_steps, window_t = 0, time.time()

    try:
        for b in range(start_step // per_batch, total // per_batch):
            batch = put_batch(loader.batch(b))
            state, metrics = step_fn(state, batch)
            if pending is not None:
                consume(*pending)
            done = (b + 1) * per_batch  # optimizer steps after this batch
            pending = (done, metrics)
            bar.update(per_batch)

            def crossed(every: int) -> bool:
                return bool(every) and done // every > (done - per_batch) // every and done < total

            if crossed(config.checkpoint_every):
                consume(*pending)
                pending = None
                checkpointer.save(done, state, meta(done))
                last_good = done
            if crossed(config.eval_every):
                if pending is not None:
                    consume(*pending)
                    pending = None
                last_eval = run_eval(state)
                runlog.write("eval", done, last_eval)
                bar.write(f"step {done}: eval exact_accuracy={last_eval['exact_accuracy']:.4f} "
                          f"accuracy={last_eval['accuracy']:.4f}")
        if pending is not None:
            consume(*pending)
        bar.close()
        final_step = int(state.step)
        if final_step > start_step or not checkpointer.steps():
            checkpointer.save(final_step, state, meta(final_step), force=True)
        last_eval = run_eval(state)
        runlog.write("eval", final_step, last_eval)
        summary = {"step": final_step, "wall_s": time.time() - t_start, "eval": last_eval, "train": last_train,
                   "fingerprint": fingerprint(state), "num_params": num_params,
                   "data": task.describe}
        if is_main:
            with open(os.path.join(workdir, "summary.json"), "w") as f:
                json.dump(summary, f, indent=2)
        return summary
    finally:
        bar.close()
        checkpointer.close()
        runlog.close()


def load_for_inference(workdir: str, step: int | None = None):
    """Loads a trained run for evaluation or solving.

    Returns:
      (config, model_cfg, graphdef, params (EMA when EMA is on), buffers, puzzle_table, step).
    Raises:
      FileNotFoundError: no run.json or no checkpoint in `workdir`.
    """
    path = os.path.join(workdir, "run.json")
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path} not found: is {workdir} a recur_jax workdir?")
    with open(path) as f:
        config = ml_collections.ConfigDict(json.load(f)["config"])
    model_cfg = ModelConfig.from_dict(config.model.to_dict())
    ckpt = Checkpointer(os.path.join(workdir, "checkpoints"), keep=max(1, config.checkpoint.keep), async_save=False)
    if not ckpt.steps():
        raise FileNotFoundError(f"no checkpoint in {ckpt.directory}")
    example = {"inputs": np.zeros((config.global_batch_size, model_cfg.seq_len), np.int32),
               "labels": np.zeros((config.global_batch_size, model_cfg.seq_len), np.int32),
               "puzzle_identifiers": np.zeros((config.global_batch_size,), np.int32)}
    graphdef, state = init_train_state(config, model_cfg, example)
    restored = ckpt.restore(abstract_like(state), step)
    ckpt.close()
    if restored is None:
        raise FileNotFoundError(f"no readable checkpoint in {ckpt.directory}")
    s, state, _ = restored
    params = state.ema_params if config.ema else state.params
    return config, model_cfg, graphdef, params, state.buffers, state.puzzle_table, s


__all__ = ["TrainState", "TrainingDiverged", "fingerprint", "init_train_state", "load_for_inference",
           "make_optimizers", "make_train_step", "train_and_evaluate"]
