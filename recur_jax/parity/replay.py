"""Training-curve replay: recur_jax's own training step on the batches of a reference training run.

A curve file (`.npz`, format in `tests/fixtures/curves/README.md`) records an official-code training
run: its config (`config`, JSON with the model under `model` and lr, warmup, wd, betas), the state
before step 1 (`init/<name>`) and after the last step (`final/<name>`), and for every optimizer step t
= 1..T the batch offered (`step{t}/inputs`, `step{t}/labels`, optionally `step{t}/puzzle_identifiers`,
else all 0), the loss it reported (scaled by 1 / batch), its learning rate and the metric sums
(`count`, `exact_accuracy`, `accuracy`, `steps`).

`replay` loads `init/*` into a recur_jax model and runs `train.make_train_step` (the step function
`launch.main` jits) on those batches with the file's optimizer settings: AdamATan2 with decoupled decay
on every parameter, sparse SignSGD with decay on the touched puzzle-table rows, linear warmup then a
constant LR, the loss scaled by 1 / batch, no halting exploration, no EMA. The ACT carry, halting and
data replacement are ours (only halted rows take the offered row), not read from the file.

`check_curve` replays in float32 and in float64 (the rounding floor, as `recur_jax.parity.fixtures`) and judges:

- float32 against the reference, step by step: |loss ours - loss ref| / |loss ref| within
  parity.RATIO x the floor (the float64 run's difference, largest so far, at least parity.MIN_FLOOR);
- the maths: the float64 run within parity.RATIO x our own rounding (float32 vs float64, largest so
  far), so that a wrong optimizer setting, which moves both of our runs alike, cannot hide in the floor;
- the halting decisions (`count`, `steps`) and exact accuracy agree exactly.

These per-step checks hold in the rounding regime: until our own float32 and float64 replays are
DIVERGENCE (1e-3) apart (a measure of rounding amplification that a defect of the maths, moving both
runs alike, cannot shorten). From then on rounding, amplified by the training dynamics (measured: by
about e^(t/20)), makes single steps' differences noise in any correct code, and halting decisions may
flip. Agreement is then statistical: over windows of steps (1-20, 1-100, 201-300, and the last 100
steps) the mean relative loss difference must be within parity.RATIO x the float64 replay's (the
reference's own drift over the same window), the two curves' window means must differ by less than the
loss's step-to-step noise (windows reaching past the rounding regime), and the final weights' median
relative error must be within parity.RATIO x the float64 replay's.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from flax import nnx

from recur_jax.core import act, convert
from recur_jax.core.layers import Buffer
from recur_jax.core.models import ModelConfig, build_model
from recur_jax.io.safe_io import read_npz
from recur_jax.parity import fixtures as parity
from recur_jax.run import sharding

DIVERGENCE = 1e-3  # relative loss difference that counts as the curves having parted
METRICS = ("count", "exact_accuracy", "accuracy", "steps")
EXACT_METRICS = ("count", "exact_accuracy", "steps")  # integer-valued sums: halting and exact accuracy


@dataclasses.dataclass
class Curve:
    """A reference training curve read from a file.

    Attributes:
      path: the file.
      config: the file's JSON config (`model`: the reference model config; lr, warmup, wd, betas, ...).
      steps: T, the number of recorded optimizer steps (1..T).
      init, final: reference state_dict names -> float32 arrays before step 1 / after step T.
      batches: per step t = 1..T (index t - 1): inputs [B, S] int32, labels [B, S] int32,
        puzzle_identifiers [B] int32.
      loss: [T] float64, the reference's loss (scaled by 1 / batch); lr: [T] float64.
      metrics: name -> [T] float64 metric sums (count, exact_accuracy, accuracy, steps).
    """

    path: str
    config: dict[str, Any]
    steps: int
    init: dict[str, np.ndarray]
    final: dict[str, np.ndarray]
    batches: list[dict[str, np.ndarray]]
    loss: np.ndarray
    lr: np.ndarray
    metrics: dict[str, np.ndarray]


def load_curve(path: str | os.PathLike) -> Curve:
    """Reads and validates a curve file (never unpickling).

    Raises:
      ValueError: naming the file and the missing or malformed entry (not an .npz, no config, steps
        not 1..T, a batch of the wrong shape, ...).
    """
    path = os.fspath(path)
    data = read_npz(path, "training-curve file")
    if "config" not in data:
        raise ValueError(f"{path}: no 'config' entry (a training-curve file has config, init/*, final/*, step<t>/*)")
    try:
        config = json.loads(str(data["config"]))
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: 'config' is not JSON ({e})") from None
    if not isinstance(config, dict) or not isinstance(config.get("model"), dict):
        raise ValueError(f"{path}: 'config' must be a JSON object with a 'model' object")
    for key in ("lr", "warmup", "wd"):
        if not isinstance(config.get(key), (int, float)) or not math.isfinite(config[key]):
            raise ValueError(f"{path}: config.{key}={config.get(key)!r}: expected a finite number")
    steps = set()
    for k in data:
        if k.startswith("step"):
            head = k.split("/")[0][4:]
            if not head.isdigit():
                raise ValueError(f"{path}: key {k!r}: expected step<t>/<name>")
            steps.add(int(head))
    T = len(steps)
    if not T or steps != set(range(1, T + 1)):
        raise ValueError(f"{path}: steps are {sorted(steps)[:5]}...; expected step1..stepT")
    init = {k[5:]: v for k, v in data.items() if k.startswith("init/")}
    final = {k[6:]: v for k, v in data.items() if k.startswith("final/")}
    if not init:
        raise ValueError(f"{path}: no init/<name> weights")

    def need(key: str) -> np.ndarray:
        if key not in data:
            raise ValueError(f"{path}: missing {key!r}")
        return data[key]

    batches, loss, lr = [], [], []
    metrics: dict[str, list[float]] = {m: [] for m in METRICS}
    shape = None
    for t in range(1, T + 1):
        inputs, labels = need(f"step{t}/inputs"), need(f"step{t}/labels")
        if shape is None:
            shape = inputs.shape
        if inputs.ndim != 2 or inputs.shape != shape or labels.shape != shape:
            raise ValueError(f"{path}: step{t}/inputs {inputs.shape} and labels {labels.shape}: expected both "
                             f"{shape} (batch, seq_len)")
        pid = data.get(f"step{t}/puzzle_identifiers", np.zeros(shape[:1], np.int32))
        if pid.shape != shape[:1]:
            raise ValueError(f"{path}: step{t}/puzzle_identifiers {pid.shape}: expected ({shape[0]},)")
        batches.append({"inputs": inputs.astype(np.int32), "labels": labels.astype(np.int32),
                        "puzzle_identifiers": pid.astype(np.int32)})
        loss.append(float(need(f"step{t}/loss")))
        lr.append(float(need(f"step{t}/lr")))
        for m in METRICS:
            metrics[m].append(float(need(f"step{t}/{m}")))
    return Curve(path=path, config=config, steps=T, init=init, final=final, batches=batches,
                 loss=np.asarray(loss), lr=np.asarray(lr), metrics={m: np.asarray(v) for m, v in metrics.items()})


def train_config(curve: Curve, **overrides: Any) -> tuple[ml_collections.ConfigDict, ModelConfig]:
    """The recur_jax training config and model config that reproduce the curve file's run.

    Args:
      curve: a loaded curve.
      overrides: optimizer fields to change (`weight_decay`, `lr_warmup_steps`, `lr`, ...): a replay with a
        deliberately wrong setting, to see that the replay notices.
    Returns:
      (config, model_config): streaming ACT, batch B, no EMA, AdamATan2 (lr, betas, decoupled decay wd
      on every parameter), sparse SignSGD on the puzzle table (lr `puzzle_emb_lr` or lr, decay
      `puzzle_emb_wd` or wd), linear warmup over `warmup` steps then constant.
    Raises:
      ValueError: the model config cannot be replayed (halting exploration draws random numbers that a
        replay cannot reproduce) or an override names no optimizer field.
    """
    c = curve.config
    model_cfg = ModelConfig.from_reference(c["model"])
    if model_cfg.halt_exploration_prob != 0:
        raise ValueError(f"{curve.path}: model.halt_exploration_prob={model_cfg.halt_exploration_prob}: a replay "
                         f"needs 0 (exploration draws random numbers the replay cannot reproduce)")
    B = curve.batches[0]["inputs"].shape[0]
    betas = c.get("betas", [0.9, 0.95])
    cfg = ml_collections.ConfigDict({
        "seed": 0, "global_batch_size": B, "microbatches": 1, "act_mode": "streaming", "ema": False,
        "ema_rate": 0.999, "total_steps": int(c.get("steps", curve.steps)),
        "optim": {"lr": float(c["lr"]), "puzzle_emb_lr": float(c.get("puzzle_emb_lr", c["lr"])),
                  "weight_decay": float(c["wd"]), "puzzle_emb_weight_decay": float(c.get("puzzle_emb_wd", c["wd"])),
                  "lr_warmup_steps": int(c["warmup"]), "lr_min_ratio": 1.0,
                  "beta1": float(betas[0]), "beta2": float(betas[1])},
        "nonfinite": {"policy": "stop", "max_consecutive_skips": 10},
        "sharding": sharding.sharding_config().to_dict(),
    })
    for k, v in overrides.items():
        if k not in cfg.optim:
            raise ValueError(f"replay override {k}={v!r}: expected one of {sorted(cfg.optim.keys())}")
        cfg.optim[k] = v
    return cfg, model_cfg


def replay(curve: Curve, *, steps: int | None = None, x64: bool = False, **overrides: Any) -> dict[str, Any]:
    """Trains recur_jax on the curve's batches from its initial weights.

    Args:
      curve: a loaded curve.
      steps: replay steps 1..steps (default all T).
      x64: run in float64 (JAX's x64 mode; weights, activations, optimizer maths).
      overrides: optimizer settings to change (see `train_config`).
    Returns:
      {"loss": [steps] float64 (our loss, scaled by 1 / batch as the file's), "lr": [steps],
       "metrics": name -> [steps] sums, "final": reference name -> our array after the last step}.
    Raises:
      ValueError: as `train_config`, or when init/* does not fit the model (names the keys).
    """
    from recur_jax.run.state import init_train_state, make_optimizers
    from recur_jax.run.step import make_train_step

    T = curve.steps if steps is None else min(int(steps), curve.steps)
    with jax.enable_x64(x64):
        cfg, model_cfg = train_config(curve, **overrides)
        if x64:
            model_cfg = model_cfg.replace(forward_dtype="float64")
        model = build_model(model_cfg, nnx.Rngs(0))
        table = convert.load_state_dict(model, curve.init, source=f"{curve.path} init/")
        graphdef, params, buffers = nnx.split(model, nnx.Param, Buffer)
        _, state = init_train_state(cfg, model_cfg, curve.batches[0])
        tx, pe_opt, _ = make_optimizers(cfg)
        table = None if table is None else jnp.asarray(table)
        state = state.replace(params=params, buffers=buffers, opt_state=tx.init(params), puzzle_table=table,
                              puzzle_opt_state=None if table is None else pe_opt.init(table))
        step_fn = jax.jit(make_train_step(graphdef, cfg, model_cfg), donate_argnums=(0,))
        margin_fn = jax.jit(lambda st, batch: decision_margins(graphdef, st, batch))
        history: dict[str, list[float]] = {"loss": [], "lr": [], "halt_margin": [], "argmax_margin": [],
                                           **{m: [] for m in METRICS}}
        pending = None
        for t in range(T):
            batch = {k: jnp.asarray(v) for k, v in curve.batches[t].items()}
            margins = margin_fn(state, batch)  # before the step consumes (donates) the state
            state, metrics = step_fn(state, batch)
            if pending is not None:  # fetched one step late: the host never waits on the running step
                _record(history, pending, cfg.global_batch_size)
            pending = dict(metrics, **margins)
        if pending is not None:
            _record(history, pending, cfg.global_batch_size)
        final = convert.to_state_dict(nnx.merge(graphdef, state.params, state.buffers),
                                      None if state.puzzle_table is None else np.asarray(state.puzzle_table),
                                      prefix="")
    return {"loss": np.asarray(history["loss"]), "lr": np.asarray(history["lr"]),
            "metrics": {m: np.asarray(history[m]) for m in METRICS},
            "halt_margin": np.asarray(history["halt_margin"]), "argmax_margin": np.asarray(history["argmax_margin"]),
            "final": final}


def decision_margins(graphdef: nnx.GraphDef, state: Any, batch: act.Batch) -> dict[str, jax.Array]:
    """How close the step's discrete decisions are to flipping, relative to their quantities' size.

    Runs the step's forward pass (no gradient) and returns float scalars: `halt_margin`, the smallest
    |q_halt| (TRM: halt when q_halt > 0) or |q_halt - q_continue| (HRM) over rows that do not halt by the
    step budget anyway, divided by the largest |q| of the batch (inf when every row is at its budget); and
    `argmax_margin`, the smallest gap between the top two logits over labelled positions, divided by the
    largest |logit|. A decision whose margin is within the rounding floor may go either way in any correct
    float32 code (an exact tie, 0, is decided by rounding alone: HRM's Q head starts with equal columns).
    """
    model = nnx.merge(graphdef, state.params, state.buffers)
    carry = act.reset_carry(state.carry, batch, model.H_init[...], model.L_init[...])
    ids = carry.current_data["puzzle_identifiers"]
    rows = None if state.puzzle_table is None else jnp.take(state.puzzle_table, ids, axis=0)
    out = model(carry.z_H, carry.z_L, carry.current_data["inputs"], rows)
    c = model.config
    gap = out.q_halt if c.no_ACT_continue else out.q_halt - out.q_continue
    free = carry.steps + 1 < c.halt_max_steps
    q_scale = jnp.maximum(jnp.max(jnp.abs(out.q_halt)), jnp.max(jnp.abs(out.q_continue)))
    halt = jnp.min(jnp.where(free, jnp.abs(gap), jnp.inf)) / jnp.maximum(q_scale, 1e-30)
    top2 = jax.lax.top_k(out.logits.astype(jnp.float32), 2)[0]
    labelled = carry.current_data["labels"] != -100
    arg = jnp.min(jnp.where(labelled, top2[..., 0] - top2[..., 1], jnp.inf))
    arg = arg / jnp.maximum(jnp.max(jnp.abs(out.logits)), 1e-30)
    return {"halt_margin": halt, "argmax_margin": arg}


def _record(history: dict[str, list[float]], metrics: dict[str, jax.Array], batch: int) -> None:
    host = jax.device_get(metrics)
    history["loss"].append(float(host["loss"]) / batch)
    for k in ("lr", "halt_margin", "argmax_margin", *METRICS):
        history[k].append(float(host[k]))


def _rel_steps(ours: np.ndarray, ref: np.ndarray) -> np.ndarray:
    ours, ref = np.asarray(ours, np.float64), np.asarray(ref, np.float64)
    out = np.abs(ours - ref) / np.maximum(np.abs(ref), 1e-30)
    return np.where(np.isfinite(ours), out, np.inf)


def windows(T: int) -> dict[str, tuple[int, int]]:
    """The report's step windows (1-based, inclusive) that fit in T steps: 1-20, 1-100, 201-300, last 100."""
    out = {}
    for lo, hi in ((1, 20), (1, 100), (201, 300)):
        if hi <= T:
            out[f"{lo}-{hi}"] = (lo, hi)
    if T > 100 and (T - 99, T) not in out.values():
        out[f"{T - 99}-{T}"] = (T - 99, T)
    return out


def compare(curve: Curve, ours: dict[str, Any], floor: dict[str, Any] | None = None) -> dict[str, Any]:
    """The replay report (JSON-serialisable) of `ours` against the curve, judged with a float64 `floor`
    run (see the module docstring; without one, only the exact quantities and first divergence).

    Returns:
      steps, loss_ref, loss_ours (and loss_float64), rel_loss per step, first_divergence_step (first step
      whose relative loss difference exceeds DIVERGENCE; null if none), mean_rel_loss per window, lr
      agreement, the exact metrics' agreement per step (`agree` lists and the first step that differs),
      final-weight relative errors (worst, median, per parameter) when every step was replayed; with a
      floor run also its losses and distances, `first_divergence_step_float64` (the first step the float64
      replay drifts past DIVERGENCE) and `rounding_regime_until` (the last step before our float32 and
      float64 replays are DIVERGENCE apart), `window_check` and the float64 final-weight errors; `ok` and
      `failures`.
    """
    T = len(ours["loss"])
    ref_loss = curve.loss[:T]
    rel32 = _rel_steps(ours["loss"], ref_loss)
    diverged = np.nonzero(rel32 > DIVERGENCE)[0]
    report: dict[str, Any] = {
        "file": curve.path, "steps": T, "loss_ref": ref_loss.tolist(), "loss_ours": ours["loss"].tolist(),
        "rel_loss": rel32.tolist(),
        "first_divergence_step": int(diverged[0]) + 1 if diverged.size else None,
        "mean_rel_loss": {name: float(np.mean(rel32[lo - 1:hi])) for name, (lo, hi) in windows(T).items()},
        "lr_max_rel_error": float(np.max(_rel_steps(ours["lr"], curve.lr[:T]))),
    }
    failures: list[str] = []
    if report["lr_max_rel_error"] > 1e-6:
        failures.append(f"learning rate differs from the reference's by up to {report['lr_max_rel_error']:.3g} "
                        f"(relative): check warmup and lr")
    agree = {m: (ours["metrics"][m] == curve.metrics[m][:T]).tolist() for m in EXACT_METRICS}
    report["metrics_agree"] = agree
    report["metrics_agree_fraction"] = {m: float(np.mean(v)) for m, v in agree.items()}
    first_diff = [i for i in range(T) if not all(agree[m][i] for m in EXACT_METRICS)]
    report["first_metric_difference_step"] = first_diff[0] + 1 if first_diff else None
    if T == curve.steps and curve.final:
        errs = {}
        for name, ref in curve.final.items():
            key = convert.strip_prefix(name)
            if key in ours["final"]:
                errs[key] = parity._rel(ours["final"][key], ref)
        vals = np.asarray(list(errs.values()))
        report["final_weights"] = {"worst": float(vals.max()), "median": float(np.median(vals)),
                                   "worst_param": max(errs, key=errs.get),
                                   "per_param": {k: float(f"{v:.3e}") for k, v in sorted(errs.items())}}
    if floor is not None:
        failures += _judge(report, curve, ours, floor, agree, first_diff)
    report["ok"] = not failures
    report["failures"] = failures
    return report


def _judge(report: dict[str, Any], curve: Curve, ours: dict[str, Any], floor: dict[str, Any],
           agree: dict[str, list[bool]], first_diff: list[int]) -> list[str]:
    """The floor checks of `compare` (module docstring); adds their figures to `report`, returns failures."""
    T = len(ours["loss"])
    ref_loss = curve.loss[:T]
    rel32 = _rel_steps(ours["loss"], ref_loss)
    rel64 = _rel_steps(floor["loss"], ref_loss)
    own = np.abs(ours["loss"] - floor["loss"]) / np.maximum(np.abs(ref_loss), 1e-30)
    floor_ref = np.maximum(parity.MIN_FLOOR, np.maximum.accumulate(rel64))
    floor_own = np.maximum(parity.MIN_FLOOR, np.maximum.accumulate(own))
    # Steps 1..regime: our own float32 rounding (float32 vs float64, blind to defects of the maths, which
    # move both runs alike) is still below DIVERGENCE, so single steps' differences are rounding, not noise.
    amplified = np.nonzero(own > DIVERGENCE)[0]
    regime = int(amplified[0]) if amplified.size else T
    drift = np.nonzero(rel64 > DIVERGENCE)[0]
    report.update({"loss_float64": floor["loss"].tolist(), "rel_loss_float64": rel64.tolist(),
                   "rel_loss_own": own.tolist(),
                   "first_divergence_step_float64": int(drift[0]) + 1 if drift.size else None})
    failures = []
    if first_diff and first_diff[0] < regime:
        t = first_diff[0]
        what = ", ".join(f"{m} ours {ours['metrics'][m][t]:g} reference {curve.metrics[m][t]:g}"
                         for m in EXACT_METRICS if not agree[m][t])
        # A halting or argmax decision within rounding of its threshold may flip in either code; from that
        # step on the two runs work on different rows, so the per-step checks end there.
        halting = not (agree["count"][t] and agree["steps"][t])
        margin = ours["halt_margin"][t] if halting else ours["argmax_margin"][t]
        if margin <= parity.RATIO * floor_ref[t]:
            report["tie_at_step"] = {"step": t + 1, "what": what, "relative_margin": float(margin)}
            regime = t + 1  # this step's loss is still of the same rows; the next step's is not
        else:
            failures.append(f"step {t + 1}: {what}, while our float32 and float64 replays are within {DIVERGENCE:g} "
                            f"of each other and the decision's margin ({margin:.3g} of its scale) is beyond rounding")
    report["rounding_regime_until"] = regime
    bad32 = np.nonzero(~(rel32[:regime] <= parity.RATIO * floor_ref[:regime]))[0]
    bad64 = np.nonzero(~(rel64[:regime] <= parity.RATIO * floor_own[:regime]))[0]
    if bad32.size:
        t = int(bad32[0])
        failures.append(f"step {t + 1}: float32 loss differs from the reference by {rel32[t]:.3g} (relative), "
                        f"more than {parity.RATIO:g} x the rounding floor {floor_ref[t]:.3g}")
    if bad64.size:
        t = int(bad64[0])
        failures.append(f"step {t + 1}: the float64 replay's loss differs from the reference by {rel64[t]:.3g} "
                        f"(relative), more than {parity.RATIO:g} x our own rounding {floor_own[t]:.3g}: the "
                        f"training maths differs (optimizer, schedule, decay, carry, data replacement)")
    # After the rounding regime: window means, against the reference's own drift over the same window
    # (the float64 replay) and against the loss's own noise (its step-to-step scatter, which the batches
    # cause: std of successive differences / sqrt 2, relative to the window's mean).
    report["window_check"] = {}
    ref_mean = lambda lo, hi: float(np.mean(ref_loss[lo - 1:hi]))
    for name, (lo, hi) in windows(T).items():
        m32, m64 = float(np.mean(rel32[lo - 1:hi])), float(np.mean(rel64[lo - 1:hi]))
        limit = parity.RATIO * max(parity.MIN_FLOOR, m64)
        shift = abs(float(np.mean(ours["loss"][lo - 1:hi])) - ref_mean(lo, hi)) / ref_mean(lo, hi)
        noise = float(np.std(np.diff(ref_loss[lo - 1:hi]), ddof=1) / np.sqrt(2)) / ref_mean(lo, hi)
        report["window_check"][name] = {"float32": m32, "float64": m64, "limit": limit,
                                        "mean_shift": shift, "loss_noise": noise}
        if not m32 <= limit:
            failures.append(f"steps {lo}-{hi}: mean relative loss difference {m32:.3g}, more than {parity.RATIO:g} "
                            f"x the float64 replay's {m64:.3g} (the reference's own drift)")
        if hi > regime and not shift <= noise:
            failures.append(f"steps {lo}-{hi}: the mean loss differs from the reference's by {shift:.3g} (relative), "
                            f"more than the loss's step-to-step noise {noise:.3g}")
    if "final_weights" in report and floor.get("final"):
        errs64 = [parity._rel(floor["final"][convert.strip_prefix(k)], v) for k, v in curve.final.items()
                  if convert.strip_prefix(k) in floor["final"]]
        med64 = float(np.median(errs64))
        report["final_weights"]["median_float64"] = med64
        report["final_weights"]["worst_float64"] = float(np.max(errs64))
        if not report["final_weights"]["median"] <= parity.RATIO * max(parity.MIN_FLOOR, med64):
            failures.append(f"final weights: median relative error {report['final_weights']['median']:.3g}, more "
                            f"than {parity.RATIO:g} x the float64 replay's {med64:.3g}")
    return failures


def check_curve(path: str | os.PathLike, *, steps: int | None = None, x64: bool = False,
                floor: bool = True, **overrides: Any) -> dict[str, Any]:
    """Replays a curve file and compares (see `compare`).

    Args:
      path: the curve file.
      steps: replay only steps 1..steps.
      x64: report the float64 replay itself against the reference (no floor run then).
      floor: also replay in float64 and judge the float32 replay against that rounding floor.
      overrides: optimizer settings to change (a deliberately wrong replay).
    Returns:
      `compare`'s report, plus `precision` ("float32" or "float64") and the overrides.
    Raises:
      ValueError: a malformed file or config (`load_curve`, `train_config`).
    """
    curve = load_curve(path)
    ours = replay(curve, steps=steps, x64=x64, **overrides)
    ref64 = replay(curve, steps=steps, x64=True, **overrides) if (floor and not x64) else None
    report = compare(curve, ours, ref64)
    report["precision"] = "float64" if x64 else "float32"
    report["overrides"] = overrides
    report["_series"] = {"ours": ours, "float64": ref64}
    return report


__all__ = ["Curve", "check_curve", "compare", "load_curve", "replay", "train_config", "windows"]
