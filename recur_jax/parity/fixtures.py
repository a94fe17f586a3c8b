"""Numerical parity with the official PyTorch code on golden-value files (`tests/fixtures/reference`).

A golden file (`.npz`) holds the reference model config (`config`, JSON), its state_dict
(`param/<name>`), and for each ACT step t the batch offered (`step{t}/batch/*`), the data each row
worked on (`step{t}/current_data/*`), the outputs, the carry after the step, the loss, the metrics and
the gradient of the loss w.r.t. every parameter (`step{t}/grad/<name>`, the puzzle table densely).

`run_fixture` loads the weights into a recur_jax model, runs the same ACT steps from a fresh carry
with our own streaming semantics (the carry, data replacement and halting are ours, not copied from
the file), and measures every quantity at every step, relative to the reference tensor's max |value|.

Tolerances come from the rounding floor, measured on the file itself (`check_file`, `floor_table`):

- the reference's floor: our float64 run against the reference's float32 numbers. Our float64 maths is
  exact to ~1e-15, so this is how far the reference's own float32 rounding carried it from the exact
  maths of the model, per quantity and ACT step (it grows with the step: the recursion amplifies
  rounding). Pooled per family (the latents and every forward output of a step share one floor; the
  gradients another), for a loss term raised to what the measured output errors propagate into it
  (first order, |d term / d output| . |error|, no cancellation), the largest so far over the steps,
  never below MIN_FLOOR (16 float32 ulps: a single scalar can land on the exact value by chance).
- float32 check: our float32 run within RATIO x that floor of the reference, quantity by quantity and
  step by step.
- maths check: our float64 run within RATIO x our *own* floor (the same construction from our float32
  vs our float64 run) of the reference. A defect moves our float32 and float64 runs alike, so it cannot
  hide in our own rounding the way it would hide in a floor measured against the reference.
- RATIO = 10: two correct float32 codes differ by about the sum of their rounding errors. Measured
  worst ratios: 2.6 (float32 check) and 2.3 (maths check) on the four shipped fixtures, 5.1 and 3.1 on
  eight more made with the official code for other seeds and 5 steps (WORKSPACE.md, "Parity").
- absolute bound on the float64 run (FLOAT64_BOUNDS, the fixtures README's: forward outputs, carries
  and losses 5e-3, gradients 2e-2, which the reference's own float64-vs-float32 difference of 1.4e-3
  stays within): an order-1 defect fails here whatever the floors say.
- halted, steps, current data and the integer-valued metrics: exactly, in both runs.
"""

from __future__ import annotations

import json
import os
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from recur_jax.core import act, convert, losses
from recur_jax.core.layers import Buffer
from recur_jax.core.models import ModelConfig, build_model
from recur_jax.io.safe_io import read_npz

RATIO = 10.0  # error / rounding floor allowed (measured at most 5.1, module docstring)
MIN_FLOOR = 2.0 ** -20  # 16 float32 ulps, relative
FLOAT64_BOUNDS = {"forward": 5e-3, "carry": 5e-3, "loss": 5e-3, "grad": 2e-2}
FORWARD_KEYS = ("logits", "q_halt_logits", "q_continue_logits", "target_q_continue")
METRIC_KEYS = ("count", "exact_accuracy", "steps")  # integer-valued sums: must agree exactly
KINDS = {"logits": "forward", "q_halt_logits": "forward", "q_continue_logits": "forward",
         "target_q_continue": "forward", "z_H": "carry", "z_L": "carry", "grad": "grad", "grad_puzzle_emb": "grad"}


def kind_of(quantity: str) -> str:
    """The bound family of a quantity: "forward", "carry", "grad" or "loss" (losses and float metrics)."""
    return KINDS.get(quantity, "loss")


def floor_family(quantity: str) -> str:
    """Quantities whose rounding floors are pooled: the forward outputs and carries of a step all derive
    from its latents (one floor), the gradients likewise; every other quantity has its own."""
    kind = kind_of(quantity)
    return "latents" if kind in ("forward", "carry") else ("grad" if kind == "grad" else quantity)


def _rel(ours: np.ndarray, ref: np.ndarray, scale_of: np.ndarray | None = None) -> float:
    """max |ours - ref| / max |scale_of| (scale_of defaults to ref); inf when anything is not finite."""
    ours, ref = np.asarray(ours, np.float64), np.asarray(ref, np.float64)
    scale_of = ref if scale_of is None else np.asarray(scale_of, np.float64)
    if ours.shape != ref.shape:
        raise ValueError(f"shape mismatch: ours {ours.shape} vs reference {ref.shape}")
    if not (np.all(np.isfinite(ours)) and np.all(np.isfinite(ref))):
        return float("inf")  # NaN/Inf anywhere is a failure, never a small error
    scale = float(np.max(np.abs(scale_of))) if ref.size else 0.0
    err = float(np.max(np.abs(ours - ref))) if ref.size else 0.0
    return err / scale if scale > 0 else err


def _num_steps(data: dict[str, np.ndarray]) -> int:
    try:
        steps = {int(k.split("/")[0][4:]) for k in data if k.startswith("step")}
    except ValueError:
        raise ValueError("keys starting with 'step' must be step<t>/...") from None
    if not steps:
        raise ValueError("no step<t>/... entries")
    if steps != set(range(len(steps))):
        raise ValueError(f"steps in file are {sorted(steps)}, expected 0..{len(steps) - 1}")
    return len(steps)


def run_fixture(path: str | os.PathLike, *, x64: bool = False) -> dict[str, Any]:
    """Runs recur_jax on a golden file's weights and batches and measures every quantity at every step.

    Args:
      path: a `.npz` in the fixtures' format (any seed, batch size or number of steps).
      x64: run the model in float64 (weights, activations, losses, gradients; JAX's x64 mode is entered
        for the run). Our float64 result against the reference's float32 numbers measures how far the
        reference's own float32 rounding carries it from the exact maths: the rounding floor.
    Returns:
      `arch`, `steps`, `errors` (one dict per ACT step: quantity -> relative error, the max-abs error
      over the tensor divided by the reference tensor's max |value|; `grad` is the worst parameter),
      `values` (one dict per step: tensor name -> (ours, reference) numpy arrays), `exact` (halted / steps / current_data / integer metrics agree at every step: bool each) and
      `mismatches` (strings naming each exact quantity that differs).
    Raises:
      ValueError / KeyError: naming the file and the key when the file is not in the expected format.
    """
    path = os.fspath(path)
    data, steps = _load(path)
    try:
        ref_cfg = json.loads(str(data["config"]))
    except KeyError as e:
        raise KeyError(f"{path}: no 'config' entry") from e
    if not isinstance(ref_cfg, dict):
        raise ValueError(f"{path}: 'config' is not a JSON object")
    with jax.enable_x64(x64):
        cfg = ModelConfig.from_reference(ref_cfg)
        if x64:
            cfg = cfg.replace(forward_dtype="float64")
        return _run(path, data, steps, cfg)


def _load(path: str) -> tuple[dict[str, np.ndarray], int]:
    """Reads a fixture (never unpickling); errors name the file and say what was expected."""
    data = read_npz(path, "golden-value fixture")
    try:
        steps = _num_steps(data)
    except ValueError as e:
        raise ValueError(f"{path}: {e}") from None
    return data, steps


def _batch(path: str, data: dict[str, np.ndarray], t: int, cfg: ModelConfig) -> dict[str, np.ndarray]:
    """Step t's batch of a fixture, checked: integer `inputs` / `labels` [B, seq_len] and
    `puzzle_identifiers` [B]. Raises ValueError naming the file, the entry, its shape and the expected one."""
    batch = {}
    for k in act.BATCH_KEYS:
        name = f"step{t}/batch/{k}"
        if name not in data:
            raise ValueError(f"{path}: no '{name}' entry; expected a golden-value fixture")
        batch[k] = data[name]
    rows = batch["inputs"].shape[0] if batch["inputs"].ndim else 0
    want = {"inputs": (rows, cfg.seq_len), "labels": (rows, cfg.seq_len), "puzzle_identifiers": (rows,)}
    for k, shape in want.items():
        v = batch.get(k)
        if v is not None and (v.shape != shape or not np.issubdtype(v.dtype, np.integer)):
            raise ValueError(f"{path}: 'step{t}/batch/{k}' is {v.dtype} {list(v.shape)}; expected integers of shape "
                             f"{list(shape)} (batch rows, the config's seq_len={cfg.seq_len})")
    return batch


def _run(path: str, data: dict[str, np.ndarray], steps: int, cfg: ModelConfig) -> dict[str, Any]:
    model = build_model(cfg, nnx.Rngs(0))
    state_dict = {k[len("param/"):]: v for k, v in data.items() if k.startswith("param/")}
    table = convert.load_state_dict(model, state_dict, source=path)
    graphdef, params, buffers = nnx.split(model, nnx.Param, Buffer)
    table = None if table is None else jnp.asarray(table)
    policy = act.HaltingPolicy.for_training(cfg)

    @jax.jit
    def step_fn(params, carry, batch):
        loss, carry, outputs, metrics, grads, pz = act.act_train_grads(graphdef, params, buffers, table, carry,
                                                                       batch, None, policy)
        dense = None
        if pz is not None:
            dense = jax.ops.segment_sum(pz[1], pz[0], num_segments=table.shape[0])
        return loss, carry, outputs, metrics, grads, dense, _sensitivities(outputs, carry.current_data["labels"],
                                                                            cfg.loss_type)

    values: list[dict[str, tuple[np.ndarray, np.ndarray]]] = []  # per step: name -> (ours, reference)
    sensitivities: list[dict[str, dict[str, np.ndarray]]] = []  # per step: loss term -> output -> |d term / d output|
    exact = {"halted": True, "steps": True, "current_data": True, "metrics": True}
    mismatches: list[str] = []
    carry = None
    for t in range(steps):
        val: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        values.append(val)
        batch = {k: jnp.asarray(v) for k, v in _batch(path, data, t, cfg).items()}
        if carry is None:
            carry = act.initial_carry(model, batch)
        loss, carry, outputs, metrics, grads, dense, sens = step_fn(params, carry, batch)
        sensitivities.append(jax.tree_util.tree_map(np.asarray, sens))

        for k in act.BATCH_KEYS:
            if not np.array_equal(np.asarray(carry.current_data[k]), data[f"step{t}/current_data/{k}"]):
                exact["current_data"] = False
                mismatches.append(f"step{t} current_data/{k} differs")
        for k in ("halted", "steps"):
            if not np.array_equal(np.asarray(getattr(carry, k)), data[f"step{t}/carry/{k}"]):
                exact[k] = False
                mismatches.append(f"step{t} carry/{k}: ours {np.asarray(getattr(carry, k))} "
                                  f"reference {data[f'step{t}/carry/{k}']}")
        for k in FORWARD_KEYS:
            ref_key = f"step{t}/out/{k}"
            if ref_key in data:
                if k not in outputs:
                    mismatches.append(f"step{t} {k}: reference has it, recur_jax produced none")
                    continue
                val[k] = (np.asarray(outputs[k]), data[ref_key])
        val["z_H"] = (np.asarray(carry.z_H), data[f"step{t}/carry/z_H"])
        val["z_L"] = (np.asarray(carry.z_L), data[f"step{t}/carry/z_L"])
        val["loss"] = (np.asarray(loss), data[f"step{t}/loss"])
        for k in ("lm_loss", "q_halt_loss", "q_continue_loss"):
            ref_key = f"step{t}/metric/{k}"
            if ref_key in data:
                val[k] = (np.asarray(metrics[k]), data[ref_key])
        for k in METRIC_KEYS:
            if float(metrics[k]) != float(data[f"step{t}/metric/{k}"]):
                exact["metrics"] = False
                mismatches.append(f"step{t} metric {k}: ours {float(metrics[k])} "
                                  f"reference {float(data[f'step{t}/metric/{k}'])}")
        for k in ("accuracy", "q_halt_accuracy"):
            val[f"metric_{k}"] = (np.asarray(metrics[k]), data[f"step{t}/metric/{k}"])

        ours_sd = convert.to_state_dict(nnx.merge(graphdef, grads, buffers), dense, prefix="")
        prefix = f"step{t}/grad/"
        for name, value in data.items():
            if not name.startswith(prefix):
                continue
            key = convert.strip_prefix(name[len(prefix):])
            if key not in ours_sd:
                mismatches.append(f"step{t} grad {key}: no such gradient in recur_jax")
                continue
            val[f"grad/{key}"] = (np.asarray(ours_sd[key]), value)
    errors = [_group({n: _rel(o, r) for n, (o, r) in val.items()}) for val in values]
    return {"arch": cfg.arch, "steps": steps, "errors": errors, "values": values,
            "sensitivities": sensitivities, "exact": exact, "mismatches": mismatches}


LOSS_TERMS = ("loss", "lm_loss", "q_halt_loss", "q_continue_loss")


def _sensitivities(outputs: dict[str, jax.Array], labels: jax.Array, loss_type: str) -> dict[str, dict[str, jax.Array]]:
    """|d term / d output| of each loss term (LOSS_TERMS) w.r.t. the step's outputs (logits [B, S, V],
    q_halt_logits / q_continue_logits [B], HRM's target_q_continue [B]), at this run's outputs."""
    ins = {k: outputs[k] for k in FORWARD_KEYS if k in outputs}

    def terms(x):
        t = losses.loss_terms(x["logits"], labels, x["q_halt_logits"], x["q_continue_logits"],
                              x.get("target_q_continue"), loss_type)
        t["loss"] = t["lm_loss"] + 0.5 * (t["q_halt_loss"] + t.get("q_continue_loss", 0.0))
        return t

    return jax.tree_util.tree_map(jnp.abs, jax.jacrev(terms)(ins))


def _quantity(name: str) -> str:
    """The reported quantity of a measured tensor: every parameter gradient is "grad", except the table's."""
    if not name.startswith("grad/"):
        return name
    return "grad_puzzle_emb" if name == f"grad/{convert.PUZZLE_KEY}" else "grad"


def _group(errs: dict[str, float]) -> dict[str, float]:
    """Per-tensor errors -> per-quantity errors (the worst tensor of each quantity)."""
    out: dict[str, float] = {}
    for name, e in errs.items():
        q = _quantity(name)
        out[q] = max(out.get(q, 0.0), e)
    return out


def _propagated(sens: dict[str, np.ndarray], values_a: dict, values_b: dict, scale: float) -> float:
    """sum over the outputs of |d term / d output| . |output_a - output_b|, relative to |scale|: the first-
    order change of a loss term that the outputs' differences can make, without cancellation."""
    total = 0.0
    for k, g in sens.items():
        if k not in values_a or k not in values_b:
            return float("inf")
        diff = np.abs(np.asarray(values_a[k][0], np.float64) - np.asarray(values_b[k][0], np.float64))
        total += float(np.sum(np.asarray(g, np.float64) * diff))
    return total / abs(scale) if scale else total


def floor_table(run32: dict[str, Any], run64: dict[str, Any]) -> list[dict[str, dict[str, float]]]:
    """Per step and quantity: the three distances, the two floors, and the two checks' ratios.

    The floor of a quantity at step t is the largest of MIN_FLOOR and, over steps <= t: the float64 run's
    error of every quantity of its `floor_family` (one floor for the latents and all forward outputs, one
    for the gradients) and, for a loss term, what the reference's measured output errors propagate into
    that term (`_propagated`, first order, with |d term / d output| of the float64 run). `own_floor` is
    the same with our own float32-vs-float64 differences in place of the reference's.

    Args:
      run32, run64: `run_fixture` results of the same file in float32 and float64.
    Returns:
      One dict per ACT step: quantity -> {"float32": ours32 vs reference, "float64": ours64 vs
      reference, "own": ours32 vs ours64 (all relative to the reference tensor's max |value|),
      "floor", "own_floor", "ratio": float32 / floor, "maths_ratio": float64 / own_floor}. The float32
      check is ratio <= RATIO, the maths check maths_ratio <= RATIO (see the module docstring).
    """
    table = []
    envelope: dict[str, float] = {}  # floor family -> largest float64 error so far
    own_envelope: dict[str, float] = {}
    for v32, v64, sens in zip(run32["values"], run64["values"], run64["sensitivities"]):
        e32 = _group({n: _rel(o, r) for n, (o, r) in v32.items()})
        e64 = _group({n: _rel(v64[n][0], r) if n in v64 else float("inf") for n, (_, r) in v32.items()})
        own = _group({n: _rel(o, v64[n][0], scale_of=r) if n in v64 else float("inf")
                      for n, (o, r) in v32.items()})
        for q in e32:
            fam = floor_family(q)
            ref_part, own_part = e64[q], own[q]
            if q in sens:
                scale = float(np.asarray(v32[q][1]))
                ref_part = max(ref_part, _propagated(sens[q], v64, {k: (r, r) for k, (_, r) in v32.items()}, scale))
                own_part = max(own_part, _propagated(sens[q], v32, v64, scale))
            envelope[fam] = max(envelope.get(fam, 0.0), ref_part)
            own_envelope[fam] = max(own_envelope.get(fam, 0.0), own_part)
        row = {}
        for q in sorted(e32):
            floor = max(MIN_FLOOR, envelope[floor_family(q)])
            own_floor = max(MIN_FLOOR, own_envelope[floor_family(q)])
            row[q] = {"float32": e32[q], "float64": e64[q], "own": own[q], "floor": floor, "own_floor": own_floor,
                      "ratio": e32[q] / floor, "maths_ratio": e64[q] / own_floor}
        table.append(row)
    return table


def check_file(path: str | os.PathLike) -> dict[str, Any]:
    """Runs recur_jax on a golden file in float32 and in float64 and judges parity against the floors.

    Args:
      path: a `.npz` in the fixtures' format (any seed, variant, batch size or number of steps).
    Returns:
      A JSON-serialisable report: `file`, `arch`, `steps`, `worst` (quantity -> worst float32 error
      over the steps), `worst_float64`, `worst_own` (the same for the float64 run and for float32 vs
      float64), `worst_ratio` and `worst_maths_ratio` (the two checks' worst ratios), `by_step`
      (`floor_table`), `exact` (halted / steps / current data / integer metrics agree at every step in
      both runs), `tolerances`, `ok` and `failures` (strings, the first 20).
    Raises:
      ValueError / KeyError: naming the file and the key when the file is not in the expected format.
    """
    path = os.fspath(path)
    run32 = run_fixture(path)
    run64 = run_fixture(path, x64=True)
    table = floor_table(run32, run64)
    failures = [*run32["mismatches"], *(f"float64 run: {m}" for m in run64["mismatches"])]
    for t, row in enumerate(table):
        for q, v in row.items():
            if not v["ratio"] <= RATIO:
                failures.append(f"step{t} {q}: float32 error {v['float32']:.3g} > {RATIO:g} x the reference's "
                                f"rounding floor {v['floor']:.3g}")
            if not v["maths_ratio"] <= RATIO:
                failures.append(f"step{t} {q}: float64 error {v['float64']:.3g} > {RATIO:g} x our own rounding "
                                f"{v['own_floor']:.3g} (the maths differs from the reference's)")
            bound = FLOAT64_BOUNDS[kind_of(q)]
            if not v["float64"] <= bound:
                failures.append(f"step{t} {q}: float64 error {v['float64']:.3g} > {bound:g}")
    exact = {k: run32["exact"][k] and run64["exact"][k] for k in run32["exact"]}

    def worst(key: str) -> dict[str, float]:
        out: dict[str, float] = {}
        for row in table:
            for q, v in row.items():
                out[q] = max(out.get(q, 0.0), v[key])
        return {q: float(f"{x:.3e}") for q, x in sorted(out.items())}

    return {
        "file": path,
        "arch": run32["arch"],
        "steps": run32["steps"],
        "worst": worst("float32"),
        "worst_float64": worst("float64"),
        "worst_own": worst("own"),
        "worst_ratio": worst("ratio"),
        "worst_maths_ratio": worst("maths_ratio"),
        "by_step": [{q: {k: float(f"{x:.3e}") for k, x in v.items()} for q, v in row.items()} for row in table],
        "exact": exact,
        "tolerances": {"ratio": RATIO, "min_floor": MIN_FLOOR, "float64_bounds": FLOAT64_BOUNDS},
        "ok": not failures,
        "failures": failures[:20],
    }
