"""Numerical parity with the official PyTorch code on golden-value files (../shared/fixtures/reference).

A golden file (`.npz`) holds the reference model config (`config`, JSON), its state_dict
(`param/<name>`), and for each ACT step t the batch offered (`step{t}/batch/*`), the data each row
worked on (`step{t}/current_data/*`), the outputs, the carry after the step, the loss, the metrics and
the gradient of the loss w.r.t. every parameter (`step{t}/grad/<name>`, the puzzle table densely).

`check_file` loads the weights into a recur_jax model, runs the same ACT steps from a fresh carry
with our own streaming semantics (the carry, data replacement and halting are ours, not copied from
the file), and reports the worst error per quantity, relative to the reference tensor's max |value|.
Tolerances are those of the fixtures' README: forward outputs and carries 5e-3, gradients 2e-2,
losses 1e-4 (relative), halted/steps/current data exactly.
"""

from __future__ import annotations

import json
import os
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from recur_jax import act, convert
from recur_jax.layers import Buffer
from recur_jax.models import ModelConfig, build_model

TOLERANCES = {"forward": 5e-3, "carry": 5e-3, "grad": 2e-2, "loss": 1e-4}
FORWARD_KEYS = ("logits", "q_halt_logits", "q_continue_logits", "target_q_continue")
METRIC_KEYS = ("count", "exact_accuracy", "steps")  # integer-valued sums: must agree exactly


def _rel(ours: np.ndarray, ref: np.ndarray) -> float:
    ours, ref = np.asarray(ours, np.float64), np.asarray(ref, np.float64)
    if ours.shape != ref.shape:
        raise ValueError(f"shape mismatch: ours {ours.shape} vs reference {ref.shape}")
    if not (np.all(np.isfinite(ours)) and np.all(np.isfinite(ref))):
        return float("inf")  # NaN/Inf anywhere is a failure, never a small error
    scale = float(np.max(np.abs(ref))) if ref.size else 0.0
    err = float(np.max(np.abs(ours - ref))) if ref.size else 0.0
    return err / scale if scale > 0 else err


def _num_steps(data: Any) -> int:
    steps = {int(k.split("/")[0][4:]) for k in data.files if k.startswith("step")}
    if steps != set(range(len(steps))):
        raise ValueError(f"steps in file are {sorted(steps)}, expected 0..{len(steps) - 1}")
    return len(steps)


def check_file(path: str | os.PathLike) -> dict[str, Any]:
    """Runs recur_jax on a golden file and compares every quantity.

    Args:
      path: a `.npz` in the fixtures' format (any seed, batch size or number of steps).
    Returns:
      A JSON-serialisable report: `file`, `arch`, `steps`, `worst` (quantity -> worst relative
      error over all steps), `exact` (halted / steps / current_data / integer metrics agree at every
      step: bool each), `tolerances`, `ok` (everything within tolerance) and `failures` (strings).
    Raises:
      ValueError / KeyError: naming the file and the key when the file is not in the expected format.
    """
    path = os.fspath(path)
    with np.load(path, allow_pickle=False) as npz:
        data = {k: npz[k] for k in npz.files}
        steps = _num_steps(npz)
    try:
        ref_cfg = json.loads(str(data["config"]))
    except KeyError as e:
        raise KeyError(f"{path}: no 'config' entry") from e
    cfg = ModelConfig.from_reference(ref_cfg)
    model = build_model(cfg, nnx.Rngs(0))
    state_dict = {k[len("param/"):]: v for k, v in data.items() if k.startswith("param/")}
    table = convert.load_state_dict(model, state_dict, source=path)
    graphdef, params, buffers = nnx.split(model, nnx.Param, Buffer)
    table = None if table is None else jnp.asarray(table)

    @jax.jit
    def step_fn(params, carry, batch):
        loss, carry, outputs, metrics, grads, pz = act.act_train_grads(graphdef, params, buffers, table, carry,
                                                                       batch, None)
        dense = None
        if pz is not None:
            dense = jax.ops.segment_sum(pz[1], pz[0], num_segments=table.shape[0])
        return loss, carry, outputs, metrics, grads, dense

    worst: dict[str, float] = {}
    exact = {"halted": True, "steps": True, "current_data": True, "metrics": True}
    failures: list[str] = []

    def record(name: str, value: float, kind: str, t: int):
        worst[name] = max(worst.get(name, 0.0), value)
        if not value <= TOLERANCES[kind]:
            failures.append(f"step{t} {name}: relative error {value:.3g} > {TOLERANCES[kind]}")

    carry = None
    for t in range(steps):
        batch = {k: jnp.asarray(data[f"step{t}/batch/{k}"]) for k in act.BATCH_KEYS}
        if carry is None:
            carry = act.initial_carry(model, batch)
        loss, carry, outputs, metrics, grads, dense = step_fn(params, carry, batch)

        for k in act.BATCH_KEYS:
            if not np.array_equal(np.asarray(carry.current_data[k]), data[f"step{t}/current_data/{k}"]):
                exact["current_data"] = False
                failures.append(f"step{t} current_data/{k} differs")
        for k in ("halted", "steps"):
            if not np.array_equal(np.asarray(getattr(carry, k)), data[f"step{t}/carry/{k}"]):
                exact[k] = False
                failures.append(f"step{t} carry/{k}: ours {np.asarray(getattr(carry, k))} "
                                f"reference {data[f'step{t}/carry/{k}']}")
        for k in FORWARD_KEYS:
            ref_key = f"step{t}/out/{k}"
            if ref_key in data:
                if k not in outputs:
                    failures.append(f"step{t} {k}: reference has it, recur_jax produced none")
                    continue
                record(k, _rel(outputs[k], data[ref_key]), "forward", t)
        record("z_H", _rel(carry.z_H, data[f"step{t}/carry/z_H"]), "carry", t)
        record("z_L", _rel(carry.z_L, data[f"step{t}/carry/z_L"]), "carry", t)
        record("loss", _rel(loss, data[f"step{t}/loss"]), "loss", t)
        for k in ("lm_loss", "q_halt_loss", "q_continue_loss"):
            ref_key = f"step{t}/metric/{k}"
            if ref_key in data:
                record(k, _rel(metrics[k], data[ref_key]), "loss", t)
        for k in METRIC_KEYS:
            if float(metrics[k]) != float(data[f"step{t}/metric/{k}"]):
                exact["metrics"] = False
                failures.append(f"step{t} metric {k}: ours {float(metrics[k])} reference {float(data[f'step{t}/metric/{k}'])}")
        for k in ("accuracy", "q_halt_accuracy"):
            record(f"metric_{k}", _rel(metrics[k], data[f"step{t}/metric/{k}"]), "loss", t)

        ours_sd = convert.to_state_dict(nnx.merge(graphdef, grads, buffers), dense, prefix="")
        for name, value in data.items():
            prefix = f"step{t}/grad/"
            if not name.startswith(prefix):
                continue
            key = convert.strip_prefix(name[len(prefix):])
            if key not in ours_sd:
                failures.append(f"step{t} grad {key}: no such gradient in recur_jax")
                continue
            err = _rel(ours_sd[key], value)
            if key == convert.PUZZLE_KEY:
                record("grad_puzzle_emb", err, "grad", t)
            else:
                record("grad", err, "grad", t)

    return {
        "file": path,
        "arch": cfg.arch,
        "steps": steps,
        "worst": {k: float(f"{v:.3e}") for k, v in sorted(worst.items())},
        "exact": exact,
        "tolerances": TOLERANCES,
        "ok": not failures,
        "failures": failures[:20],
    }
