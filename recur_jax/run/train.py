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
from jax.sharding import NamedSharding, PartitionSpec as P

from recur_jax.core import act, optim, recursion
from recur_jax.core.layers import Buffer, accum_dtype
from recur_jax.core.models import ModelConfig, build_model, count_params
from recur_jax.io.safe_io import read_json, write_json_atomic
from recur_jax.run import config as config_schema, evaluate, sharding
from recur_jax.run import workdir as workdir_lib
from recur_jax.run.checkpoint import Checkpointer, abstract_like
from recur_jax.run.preemption import Preempted, PreemptionGuard
from recur_jax.tasks.loader import TrainLoader, eval_batches
from recur_jax.tasks.registry import Task, build_task

PURPOSE_HALT = 1  # fold_in ids of the RNG streams derived from the root key
PURPOSE_INIT = 2


class TrainingDiverged(RuntimeError):
    """The loss, a metric or a gradient became NaN/Inf; the last good checkpoint is kept."""


def _nonfinite_policy(config: ml_collections.ConfigDict) -> tuple[str, int]:
    """(policy, max_consecutive_skips) of `config.nonfinite` ("stop", 10 for configs that predate it)."""
    nf = config.get("nonfinite") or {}
    return str(nf.get("policy", "stop")), int(nf.get("max_consecutive_skips", 10))


def _count_nonfinite(tree) -> jax.Array:
    """float32 scalar: number of NaN/Inf elements in a pytree of arrays (0 for None)."""
    leaves = [x for x in jax.tree_util.tree_leaves(tree) if jnp.issubdtype(x.dtype, jnp.inexact)]
    return sum((jnp.sum(~jnp.isfinite(x)).astype(jnp.float32) for x in leaves), jnp.zeros((), jnp.float32))


@flax.struct.dataclass
class TrainState:
    """Everything a step reads and writes; also exactly what a checkpoint holds.

    Attributes:
      step: int32 scalar, optimizer steps taken.
      params: nnx.State of the model's float32 parameters.
      buffers: nnx.State of the frozen H_init/L_init [D] (compute dtype).
      opt_state: AdamATan2 state.
      ema_params: EMA of params (same structure), or None when EMA is off.
      puzzle_table: [num_puzzle_identifiers (padded, sharding.padded_puzzle_rows), puzzle_emb_ndim]
        float32, or None.
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
    if model_cfg.puzzle_emb_ndim > 0:  # rows padded for sharding (sharding.padded_puzzle_rows)
        rows = sharding.padded_puzzle_rows(model_cfg.num_puzzle_identifiers, config)
        table = jnp.zeros((rows, model_cfg.puzzle_emb_ndim), accum_dtype(model_cfg.dtype))
    state = TrainState(
        step=jnp.zeros((), jnp.int32), params=params, buffers=buffers, opt_state=tx.init(params),
        ema_params=jax.tree_util.tree_map(jnp.copy, params) if config.ema else None,
        puzzle_table=table, puzzle_opt_state=pe_opt.init(table) if table is not None else None,
        carry=act.initial_carry(model, example_batch))
    return graphdef, state


def make_train_step(graphdef: nnx.GraphDef, config: ml_collections.ConfigDict, model_cfg: ModelConfig,
                    compute_shardings: Any = None):
    """The pure training step `(state, batch) -> (state, metrics)` (not jitted).

    Metrics are device scalars: the reference's sums (count, accuracy, exact_accuracy,
    q_halt_accuracy, steps), the loss terms summed over the batch, `loss`, `lr`, and the non-finite
    guard's `nonfinite_loss` (1.0 when the loss is NaN/Inf), `nonfinite_grads` / `nonfinite_puzzle_grads`
    (NaN/Inf elements in the gradients of the parameters / of the gathered puzzle-table rows) and
    `skipped` (1.0 when the step was skipped).

    With `config.nonfinite.policy == "skip"`, a step whose loss or gradients are not finite leaves
    params, optimizer state, EMA, puzzle table and ACT carry exactly as they were; only `step` advances
    (so the data position moves past the batch; the optimizers' own step counts, and so their
    schedules, do not); its loss and accuracy sums are zeroed. With "stop" (default)
    the step is applied as computed and the host raises `TrainingDiverged` (see train_and_evaluate).

    `compute_shardings` (`sharding.compute_shardings`): the parameters are constrained to these for
    the forward/backward (FSDP all-gather); None leaves placement to the compiler.
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
        params = state.params
        if compute_shardings is not None:
            params = jax.lax.with_sharding_constraint(params, compute_shardings)
        loss, carry, _, metrics, grads, pz = act.act_train_grads(
            graphdef, params, state.buffers, state.puzzle_table, carry, batch, rng,
            loss_scale=scale, row_weight=row_weight)
        if compute_shardings is not None:  # gradients summed over the rows where they are computed
            grads = jax.lax.with_sharding_constraint(grads, compute_shardings)
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
        acc, rest = jax.lax.scan(body, zeros, (jnp.arange(k), xs), unroll=recursion.is_unrolled())
        return acc, jax.tree_util.tree_map(merge, rest)

    skip_nonfinite = _nonfinite_policy(config)[0] == "skip"

    def one_step(state: TrainState, batch: act.Batch, row_weight=None):
        rng = jax.random.fold_in(jax.random.fold_in(root, state.step), PURPOSE_HALT)
        (loss, metrics, grads), (carry, pz) = microbatched(state, batch, rng, row_weight)
        bad_grads = _count_nonfinite(grads)
        bad_pz = _count_nonfinite(pz[1]) if pz is not None else jnp.zeros((), jnp.float32)
        metrics = dict(metrics, loss=loss, lr=optim.scheduled_lr(lr_schedule, state.step + 1),
                       nonfinite_loss=(~jnp.isfinite(loss)).astype(jnp.float32), nonfinite_grads=bad_grads,
                       nonfinite_puzzle_grads=bad_pz)
        new = apply_grads(state, grads, pz, carry)
        if not skip_nonfinite:
            return new, dict(metrics, skipped=jnp.zeros((), jnp.float32))
        ok = jnp.isfinite(loss) & (bad_grads == 0) & (bad_pz == 0)
        new = jax.tree_util.tree_map(lambda n, o: jnp.where(ok, n, o), new, state).replace(step=new.step)
        kept = ("lr", "nonfinite_loss", "nonfinite_grads", "nonfinite_puzzle_grads")
        metrics = {k: v if k in kept else jnp.where(ok, v, jnp.zeros_like(v)) for k, v in metrics.items()}
        return new, dict(metrics, skipped=1.0 - ok.astype(jnp.float32))

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


def _hash_leaves(h, tree) -> None:
    """Feeds dtype, shape and bytes of every leaf of `tree` (gathered over processes) into hasher `h`."""
    for leaf in jax.tree_util.tree_leaves(tree):
        if jax.dtypes.issubdtype(leaf.dtype, jax.dtypes.prng_key):
            leaf = jax.random.key_data(leaf)
        arr = sharding.to_host(leaf)  # gathers arrays sharded over several processes
        h.update(f"{arr.dtype}{arr.shape}".encode())
        h.update(np.ascontiguousarray(arr).tobytes())


def _digest(tree) -> str:
    h = hashlib.sha256()
    _hash_leaves(h, tree)
    return h.hexdigest()


def fingerprint_parts(state: TrainState) -> dict[str, str]:
    """sha256 (hex) of each part of the state: params, opt_state (AdamATan2), ema, puzzle_table (with
    its SignSGD state), carry (the ACT carry), step. Equal digests mean bitwise-equal parts."""
    return {"params": _digest(state.params), "opt_state": _digest(state.opt_state),
            "ema": _digest(state.ema_params), "puzzle_table": _digest((state.puzzle_table, state.puzzle_opt_state)),
            "carry": _digest(state.carry), "step": _digest(state.step)}


def fingerprint(state: TrainState) -> str:
    """sha256 over the bytes (and shapes/dtypes) of params, optimizer state, EMA, puzzle table (and its
    optimizer state), ACT carry and step: equal fingerprints mean the same run state bit for bit."""
    h = hashlib.sha256()
    _hash_leaves(h, (state.params, state.opt_state, state.ema_params, state.puzzle_table, state.puzzle_opt_state))
    h.update(_digest(state.carry).encode())
    h.update(_digest(state.step).encode())
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
    out["skipped"] = sums.get("skipped", 0.0)  # non-finite steps skipped in this window (policy "skip")
    return out


class _RunLog:
    """metrics.jsonl + TensorBoard, written by process 0 only.

    On resume the lines after the restored step are dropped (they are replayed), as are torn lines;
    with `redo_final_eval` also the evaluation line at the restored step (the final one, run again).
    """

    def __init__(self, workdir: str, restored_step: int, active: bool, redo_final_eval: bool = False):
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
                        rec = json.loads(ln)
                        step = rec.get("step", 0)
                        if step < restored_step or (step == restored_step and not (
                                redo_final_eval and rec.get("kind") == "eval")):
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
      ValueError: naming the first invalid field (`config.<name>=<value>: expected ...`): an unknown
        field, a value of the wrong type, a value out of range, or an impossible combination (batch not
        divisible by the devices or microbatches, mlp_t with RoPE, a puzzle prefix too short for
        puzzle_emb_ndim, fewer steps than one episode, ...).
    """
    def bad(name: str, value: Any, expected: str):
        raise ValueError(f"config.{name}={value!r}: expected {expected}")

    config_schema.check(config)  # unknown fields and wrong types, named

    for name in ("total_steps", "global_batch_size", "log_every", "microbatches"):
        if int(config[name]) < 1:
            bad(name, config[name], "an integer >= 1")
    for name in ("eval_every", "checkpoint_every"):
        if int(config[name]) < 0:
            bad(name, config[name], "an integer >= 0 (0: only at the end)")
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
    sharding.validate(config, num_devices, jax.process_count())  # mesh, rules, batch sizes vs data*fsdp
    if int(config.checkpoint.keep) < 1:
        bad("checkpoint.keep", config.checkpoint.keep, "an integer >= 1")
    policy, max_skips = _nonfinite_policy(config)
    if policy not in ("stop", "skip"):
        bad("nonfinite.policy", policy, "'stop' or 'skip'")
    if max_skips < 1:
        bad("nonfinite.max_consecutive_skips", max_skips, "an integer >= 1")
    if config.act_mode == "episode" and config.total_steps < config.model.halt_max_steps:
        bad("total_steps", config.total_steps, f"at least one episode of model.halt_max_steps="
            f"{config.model.halt_max_steps} optimizer steps (act_mode='episode')")
    for name in ("num_train", "num_test"):
        if name in config.data and int(config.data[name]) < (1 if name == "num_train" else 0):
            bad(f"data.{name}", config.data[name], "a positive integer" if name == "num_train" else ">= 0")
    model = config.model.to_dict()  # num_puzzle_identifiers 0: sized from the data (see _resolve)
    ModelConfig.from_dict(dict(model, num_puzzle_identifiers=max(1, int(model["num_puzzle_identifiers"]))))


def _maybe_fingerprint(state: TrainState) -> str | None:
    """fingerprint(state) when every array is readable from this process (else None: not checked)."""
    if all(getattr(x, "is_fully_addressable", True) for x in jax.tree_util.tree_leaves(state)):
        return fingerprint(state)
    return None


def _verify_fingerprint(state: TrainState, meta: dict[str, Any]) -> None:
    """Raises ValueError when a restored state's bytes differ from those recorded at save time."""
    want = meta.get("fingerprint")
    if want is not None and (got := _maybe_fingerprint(state)) is not None and got != want:
        raise ValueError(f"the restored state's sha256 {got[:16]}... differs from the {want[:16]}... recorded "
                         f"when it was saved (garbled bytes)")


def _prng_impl() -> str:
    """The name of JAX's default PRNG implementation (part of the RNG state a checkpoint records)."""
    return str(jax.config.jax_default_prng_impl)


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


def _nonfinite_quantities(host: dict[str, float]) -> list[str]:
    """Names of the non-finite quantities of one step's host metrics (empty when all are finite)."""
    out = []
    if host.get("nonfinite_loss", 0.0) or not math.isfinite(host.get("loss", 0.0)):
        out.append("loss")
    out += [k for k, v in host.items() if k != "loss" and not math.isfinite(v)]
    if host.get("nonfinite_grads", 0.0):
        out.append(f"gradient of the parameters ({int(host['nonfinite_grads'])} NaN/Inf values)")
    if host.get("nonfinite_puzzle_grads", 0.0):
        out.append(f"gradient of the puzzle embeddings ({int(host['nonfinite_puzzle_grads'])} NaN/Inf values)")
    return out


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
      TrainingDiverged: the loss or a gradient became NaN/Inf (policy "stop"; the message names the step
        and the quantity; no checkpoint is written after the last good one), or more than
        `nonfinite.max_consecutive_skips` steps in a row were skipped (policy "skip").
      Preempted: SIGTERM/SIGINT (or, multi-host, a preemption notice to any process): a checkpoint of
        the current step was written (and committed) first; running again resumes from it.
    """
    t_start = time.time()
    workdir = os.path.abspath(workdir)
    n_dev, n_proc, pid = jax.device_count(), jax.process_count(), jax.process_index()
    validate_config(config, n_dev)
    if overwrite and resume_anyway:
        raise ValueError("overwrite and resume_anyway exclude each other: start over, or continue the run")
    if os.path.exists(workdir) and not os.path.isdir(workdir):
        raise ValueError(f"--workdir={workdir} exists and is not a directory")
    if n_proc > 1 and pid != 0:  # process 0 builds the data first, the others then reuse it
        sharding.barrier("recur_jax_data_built")
    task = build_task(config.data, workdir)  # validates the data before anything else is written
    if n_proc > 1 and pid == 0:
        sharding.barrier("recur_jax_data_built")
    config, model_cfg = _resolve(config, task)
    recorded, recorded_source = workdir_lib.recorded_config(workdir)
    changed = workdir_lib.check(recorded, recorded_source, config.to_dict(), overwrite=overwrite,
                                resume_anyway=resume_anyway)
    if overwrite:
        if pid == 0:
            workdir_lib.set_aside_previous_run(workdir)
        if n_proc > 1:
            from jax.experimental import multihost_utils

            multihost_utils.sync_global_devices("recur_jax: previous run set aside")

    mesh = sharding.make_mesh(config)
    replicated = NamedSharding(mesh, P())
    by_row = sharding.batch_sharding(mesh, config)  # rows over data x fsdp
    sharding.check_process_rows(by_row, config.global_batch_size)

    def put_batch(local: dict[str, np.ndarray]) -> act.Batch:
        return sharding.put_local_batch(local, by_row)

    loader = TrainLoader(task.train, global_batch_size=config.global_batch_size, seed=config.data.seed + config.seed,
                         transform=task.train_transform, process_index=pid, process_count=n_proc)
    example = {k: np.zeros((config.global_batch_size,) + v.shape[1:], v.dtype)
               for k, v in loader.batch(0).items()}
    graphdef, shardings, state = sharding.init_sharded(
        lambda: init_train_state(config, model_cfg, example), mesh, config)  # created in place, sharded

    checkpointer = Checkpointer(os.path.join(workdir, "checkpoints"), keep=config.checkpoint.keep,
                                async_save=config.checkpoint.async_save, cleanup_tmp=True)
    for s in reversed(checkpointer.steps()):  # refuse before touching anything if the run differs
        try:
            saved = checkpointer.read_meta(s).get("config", {})
        except Exception:  # noqa: BLE001 - an unreadable record is handled by restore() below
            continue
        # The model, batch and EMA decide the checkpoint's structure: never resumable under others.
        for key in ("model", "global_batch_size", "ema") + (() if resume_anyway else ("data", "seed")):
            now = config[key].to_dict() if isinstance(config[key], ml_collections.ConfigDict) else config[key]
            if key in saved and saved[key] != workdir_lib.as_json_value(now):  # the record is JSON (no tuples)
                raise ValueError(f"{checkpointer.directory}: checkpoint {s} was written with a different "
                                 f"config.{key}; resuming needs the same one (or use a new --workdir, or "
                                 f"--overwrite)")
        if recorded is None:  # no readable run.json: the checkpoint's record decides
            changed = workdir_lib.check(saved, f"{checkpointer.directory}/{s}", config.to_dict(),
                                        overwrite=False, resume_anyway=resume_anyway)
        break
    restored = checkpointer.restore(abstract_like(state), verify=_verify_fingerprint)
    start_step, resume_meta = 0, {}
    if restored is not None:
        start_step, state, resume_meta = restored
        saved_rng = resume_meta.get("rng", {})
        if saved_rng.get("prng_impl", _prng_impl()) != _prng_impl():
            raise ValueError(f"{checkpointer.directory}: checkpoint {start_step} was written with "
                             f"jax_default_prng_impl={saved_rng['prng_impl']!r}, this process uses "
                             f"{_prng_impl()!r}: the random streams would differ; set the same one to resume")
        print(f"Resuming from step {start_step} ({checkpointer.directory})")

    param_compute = sharding.compute_shardings(shardings.params)  # FSDP: gathered over fsdp for compute
    step_fn = jax.jit(make_train_step(graphdef, config, model_cfg, param_compute), in_shardings=(shardings, by_row),
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
               "data": task.describe, "resumed_from_step": start_step,
               "param_shardings": sharding.describe(shardings.params)}
        history = workdir_lib.recorded_run_field(workdir, "resumed_anyway") or []  # never dropped
        if changed and resume_anyway and restored is not None:
            history = [*history, {"from_step": start_step, "changed": {k: {"before": a, "now": b}
                                                                        for k, (a, b) in sorted(changed.items())}}]
        if history:
            run["resumed_anyway"] = history
        write_json_atomic(os.path.join(workdir, "run.json"), run, indent=2, default=str)
    steps_per_batch = model_cfg.halt_max_steps if config.act_mode == "episode" else 1
    runlog = _RunLog(workdir, start_step, is_main,  # resumed at the end: the final evaluation runs again
                     redo_final_eval=start_step >= config.total_steps // steps_per_batch * steps_per_batch)

    eval_steps = int(config.eval.halt_max_steps)
    def eval_step(p, b, t, batch):  # parameters gathered over fsdp as in the train step
        return evaluate.eval_batch(graphdef, jax.lax.with_sharding_constraint(p, param_compute), b, t, batch,
                                   eval_steps)

    eval_fn = jax.jit(eval_step, in_shardings=(shardings.ema_params if config.ema else shardings.params,
                                               shardings.buffers, shardings.puzzle_table, by_row),
                      out_shardings=replicated)
    max_eval = config.eval.max_examples or None
    task_eval = task.make_evaluator(workdir, is_main) if task.make_evaluator else None  # pass@K, reports

    def run_eval(st: TrainState) -> dict[str, Any]:
        params = st.ema_params if config.ema else st.params
        batches = eval_batches(task.test, global_batch_size=config.eval.global_batch_size,
                               to_example=task.test_transform, process_index=pid, process_count=n_proc,
                               max_examples=max_eval)
        return evaluate.evaluate(eval_fn, params, st.buffers, st.puzzle_table, batches, put_batch, task_eval)

    def meta(step: int) -> dict[str, Any]:
        # The RNG is stateless: every draw derives from (config.seed, step) and the data stream from
        # (data.seed + seed, step); the host-side metric window is saved so logs continue unchanged.
        return {"step": step, "data_position": step, "config": config.to_dict(), "fingerprint": _maybe_fingerprint(state),
                "rng": {"seed": config.seed, "data_seed": config.data.seed + config.seed, "prng_impl": _prng_impl()},
                "train_window": {"sums": dict(sums), "steps": window_steps}, "last_train": last_train,
                "skip_streak": skip_streak}

    from tqdm import tqdm

    # Streaming: one batch per optimizer step. Episode: one batch per halt_max_steps optimizer steps.
    per_batch = model_cfg.halt_max_steps if config.act_mode == "episode" else 1
    total = int(config.total_steps) // per_batch * per_batch
    if total < 1:
        raise ValueError(f"config.total_steps={config.total_steps} is less than one episode "
                         f"({per_batch} optimizer steps)")
    bar = tqdm(total=total, initial=start_step, disable=not is_main, dynamic_ncols=True, desc="train")
    window = resume_meta.get("train_window", {})
    sums: dict[str, float] = dict(window.get("sums", {}))
    window_steps, window_t = int(window.get("steps", 0)), time.time()
    pending = None
    last_good = start_step
    last_eval: dict[str, Any] = {}
    last_train: dict[str, float] = dict(resume_meta.get("last_train", {}))
    policy, max_skips = _nonfinite_policy(config)
    skip_streak = int(resume_meta.get("skip_streak", 0))

    def consume(step: int, metrics: dict[str, jax.Array]):
        nonlocal window_steps, window_t, last_train, skip_streak
        host = {k: float(v) for k, v in jax.device_get(metrics).items()}
        where = f"step {step}" if per_batch == 1 else f"steps {step - per_batch + 1}-{step} (one episode)"
        bad = _nonfinite_quantities(host)
        kept = (f"the last good checkpoint (step {last_good}) in {checkpointer.directory} is kept and nothing "
                f"after it was written" if last_good else f"no checkpoint was written to {checkpointer.directory}")
        if bad and (policy != "skip" or not host.get("skipped", 0.0)):
            raise TrainingDiverged(f"{where}: non-finite {', '.join(bad)}; {kept} "
                                   f"(config.nonfinite.policy='skip' skips such steps instead)")
        if host.get("skipped", 0.0):
            skip_streak += int(host["skipped"])
            bar.write(f"{where}: skipped {int(host['skipped'])} step(s) with non-finite {', '.join(bad)}; "
                      f"the state is unchanged by them")
            if skip_streak > max_skips:
                raise TrainingDiverged(f"{where}: {skip_streak} non-finite steps in a row were skipped, more than "
                                       f"config.nonfinite.max_consecutive_skips={max_skips}; {kept}")
        else:
            skip_streak = 0
        for k, v in host.items():
            if k == "lr":
                sums["lr_last"] = v
            elif not k.startswith("nonfinite_"):
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

    guard = PreemptionGuard(n_proc).__enter__()

    def stop_for_preemption(step: int):
        """Checkpoints `step` (unless it just was), waits for the commit, raises Preempted."""
        nonlocal pending
        if pending is not None:
            consume(*pending)
            pending = None
        checkpointer.wait()  # a periodic save of this very step may still be in flight
        if step not in checkpointer.steps():
            checkpointer.save(step, state, meta(step), force=True)
            checkpointer.wait()
        raise Preempted(step, checkpointer.directory, guard.reason())

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

            # Evaluate before checkpointing: a resumed run must not lose (or repeat) an evaluation line.
            if crossed(config.eval_every):
                if pending is not None:
                    consume(*pending)
                    pending = None
                last_eval = run_eval(state)
                runlog.write("eval", done, last_eval)
                if is_main:
                    bar.write(f"step {done}: eval exact_accuracy={last_eval['exact_accuracy']:.4f} "
                              f"accuracy={last_eval['accuracy']:.4f}")
            if crossed(config.checkpoint_every):
                if pending is not None:
                    consume(*pending)
                    pending = None
                checkpointer.save(done, state, meta(done))
                last_good = done
            if guard.should_stop(done):  # every step, on every process (multi-host sync point)
                stop_for_preemption(done)
        if pending is not None:
            consume(*pending)
        bar.close()
        final_step = int(state.step)
        if final_step > start_step or not checkpointer.steps():
            checkpointer.save(final_step, state, meta(final_step), force=True)
        if guard.requested and n_proc == 1:  # signalled after the last step: skip the evaluation
            stop_for_preemption(final_step)
        last_eval = run_eval(state)
        runlog.write("eval", final_step, last_eval)
        summary = {"step": final_step, "wall_s": time.time() - t_start, "eval": last_eval, "train": last_train,
                   "fingerprint": fingerprint(state), "fingerprint_parts": fingerprint_parts(state),
                   "num_params": num_params, "data": task.describe}
        if is_main:
            write_json_atomic(os.path.join(workdir, "summary.json"), summary, indent=2)
        return summary
    finally:
        guard.__exit__(None, None, None)
        bar.close()
        checkpointer.close()
        runlog.close()


def load_for_inference(workdir: str, step: int | None = None):
    """Loads a trained run for evaluation or solving.

    Returns:
      (config, model_cfg, graphdef, params (EMA when EMA is on), buffers, puzzle_table, step).
    Raises:
      FileNotFoundError: no run.json or no checkpoint in `workdir`.
      ValueError: run.json is too large, not JSON, or not a run record (names the file).
    """
    path = os.path.join(workdir, "run.json")
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path} not found: is {workdir} a recur_jax workdir?")
    run = read_json(path, max_bytes=workdir_lib.MAX_RUN_JSON_BYTES)
    if not isinstance(run, dict) or not isinstance(run.get("config"), dict):
        raise ValueError(f"{path}: expected an object with a 'config' object (a recur_jax run record)")
    config = ml_collections.ConfigDict(run["config"])
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
