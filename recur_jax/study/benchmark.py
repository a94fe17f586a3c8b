"""Benchmark of the training and evaluation steps: throughput, MFU, compile time, XLA memory.

`run_benchmark(config)` builds the model, optimizer state and ACT carry exactly as training does
(`state.init_train_state`, `step.make_train_step`), feeds a fixed synthetic batch of the configured
shapes (token ids in [1, V), no data pipeline), compiles the jitted step ahead of time (state
donated, as in training) and times it. Reported per config (one dict, printed as one JSON line by
`launch.benchmark`):

  examples_per_s        global batch / step_s (training examples per second)
  step_s                median over `iters` timed training steps, seconds (warm-up excluded);
                        each timed step is dispatched and waited for on its own
  cpu_s                 median process CPU seconds per training step (all threads; on a shared
                        machine a steadier figure of the work done than wall time)
  compile_s             lowering + XLA compilation of the training step, seconds
  model_flops_per_step  analytic FLOPs of one training step (`recur_jax.core.flops`)
  xla_flops_per_step    FLOPs of the same step by XLA's HLO cost analysis of the step lowered with
                        the recursion unrolled (XLA counts a while-loop body once, so the scanned
                        program would undercount); `flops_ratio` = model / XLA
  achieved_flops_per_s  model_flops_per_step / step_s
  peak_flops_per_s      a [n, n] x [n, n] matmul of the compute dtype on the same devices, sampled
                        between the timed training steps (median), FLOP/s
  mfu                   achieved / peak
  argument_bytes, output_bytes, temp_bytes   `compiled.memory_analysis()` of the training step
  eval_*                the same for one evaluation batch (halt_max_steps forward ACT steps), with its
                        own peak samples taken around the timed evaluation batches

Timings are wall-clock on whatever else the machine runs; judge small changes by A/B runs
interleaved in one session, and by MFU against the peak measured in the same run.
"""

from __future__ import annotations

import statistics
import time
from typing import Any, Callable

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from recur_jax.core import flops
from recur_jax.core.models import ModelConfig
from recur_jax.run import config as run_config, evaluate, sharding
from recur_jax.run.state import TrainState, init_train_state
from recur_jax.run.step import make_train_step


def synthetic_batch(model_cfg: ModelConfig, batch_size: int, seed: int = 0) -> dict[str, np.ndarray]:
    """A fixed batch of the configured shapes: inputs/labels [B, S] int32 in [1, V), puzzle ids [B] int32."""
    rng = np.random.default_rng(seed)
    V, S = model_cfg.vocab_size, model_cfg.seq_len
    low = 1 if V > 1 else 0
    return {"inputs": rng.integers(low, V, (batch_size, S), dtype=np.int32),
            "labels": rng.integers(low, V, (batch_size, S), dtype=np.int32),
            "puzzle_identifiers": rng.integers(0, model_cfg.num_puzzle_identifiers, (batch_size,), dtype=np.int32)}


def _cost(compiled_or_lowered) -> dict[str, float]:
    """XLA's cost analysis as one dict (older JAX returns a list with one dict per program)."""
    cost = compiled_or_lowered.cost_analysis()
    if isinstance(cost, (list, tuple)):
        cost = cost[0] if cost else {}
    return dict(cost or {})


def memory_bytes(compiled) -> dict[str, int]:
    """argument/output/temp/generated-code bytes of a compiled executable (`memory_analysis()`), or {} if absent."""
    mem = compiled.memory_analysis()
    if mem is None:
        return {}
    out = {}
    for key, attr in (("argument_bytes", "argument_size_in_bytes"), ("output_bytes", "output_size_in_bytes"),
                      ("temp_bytes", "temp_size_in_bytes"), ("alias_bytes", "alias_size_in_bytes"),
                      ("code_bytes", "generated_code_size_in_bytes")):
        if hasattr(mem, attr):
            out[key] = int(getattr(mem, attr))
    return out


def _peak_sampler(dtype: str | jnp.dtype, size: int | None, devices: list) -> tuple[Callable[[], float], int]:
    """(sample, n): `sample()` runs one [n, n] @ [n, n] matmul per device in `dtype` and returns its
    throughput in FLOP/s (aggregate over devices). Compiled and warmed up here."""
    n = size or (2048 if devices[0].platform == "cpu" else 8192)
    k = len(devices)
    sh = NamedSharding(Mesh(np.asarray(devices), ("d",)), P("d"))
    a = jax.device_put(jax.random.normal(jax.random.key(0), (k, n, n), jnp.float32).astype(dtype), sh)
    b = jax.device_put(jax.random.normal(jax.random.key(1), (k, n, n), jnp.float32).astype(dtype), sh)
    mm = jax.jit(lambda x, y: jnp.einsum("kij,kjl->kil", x, y, preferred_element_type=x.dtype), out_shardings=sh)
    mm(a, b).block_until_ready()
    f = 2.0 * n ** 3 * k

    def sample() -> float:
        t0 = time.perf_counter()
        mm(a, b).block_until_ready()
        return f / (time.perf_counter() - t0)

    return sample, n


def measure_peak_flops(dtype: str | jnp.dtype, size: int | None = None, repeats: int = 7,
                       devices: list | None = None) -> dict[str, float]:
    """Measured matmul throughput of the devices: FLOP/s of a [n, n] @ [n, n] product in `dtype`.

    With several devices each multiplies its own pair (a batch sharded over them), so the figure is
    the aggregate. `size` defaults to 2048 on CPU and 8192 on accelerators.

    Returns:
      {"peak_flops_per_s": median over `repeats` (FLOP/s), "peak_flops_per_s_best": the best,
       "peak_matmul_n": n}.
    """
    sample, n = _peak_sampler(dtype, size, devices or jax.devices())
    got = [sample() for _ in range(repeats)]
    return {"peak_flops_per_s": statistics.median(got), "peak_flops_per_s_best": max(got), "peak_matmul_n": n}


def unrolled_xla_flops(step: Callable, args: tuple, config: ml_collections.ConfigDict) -> float | None:
    """XLA's FLOP count of `step(*args)` traced with every recursion scan unrolled (no compile).

    Returns None when the cost analysis reports no `flops`.
    """
    from recur_jax.core import recursion

    with recursion.unrolled():
        lowered = jax.jit(step).lower(*args)
    return _cost(lowered).get("flops")


def _build(config: ml_collections.ConfigDict) -> dict[str, Any]:
    """Model, state (placed), synthetic batch and the jitted (donating) train step of `config`."""
    devices = jax.devices()
    run_config.validate(config, len(devices))
    model_cfg = ModelConfig.from_dict(config.model.to_dict())
    B = int(config.global_batch_size)
    mesh = sharding.make_mesh(config)  # the mesh and placement of training (config.mesh, config.sharding)
    replicated, by_row = NamedSharding(mesh, P()), sharding.batch_sharding(mesh, config)
    host_batch = synthetic_batch(model_cfg, B, int(config.seed))
    graphdef, shardings, state = sharding.init_sharded(
        lambda: init_train_state(config, model_cfg, host_batch), mesh, config)
    batch = {k: jax.device_put(v, by_row) for k, v in host_batch.items()}
    step = make_train_step(graphdef, config, model_cfg, sharding.compute_shardings(shardings.params))
    step_jit = jax.jit(step, in_shardings=(shardings, by_row), out_shardings=(shardings, replicated),
                       donate_argnums=(0,))
    return {"model_cfg": model_cfg, "batch_size": B, "devices": devices, "graphdef": graphdef, "state": state,
            "batch": batch, "step": step, "step_jit": step_jit}


def _describe(model_cfg: ModelConfig, B: int, devices: list) -> dict[str, Any]:
    return {"arch": model_cfg.arch, "mlp_t": model_cfg.mlp_t, "hidden_size": model_cfg.hidden_size,
            "H_cycles": model_cfg.H_cycles, "L_cycles": model_cfg.L_cycles, "grad_mode": model_cfg.grad_mode,
            "forward_dtype": model_cfg.forward_dtype, "remat": model_cfg.remat, "batch": B,
            "platform": devices[0].platform, "devices": len(devices)}


def compile_only(config: ml_collections.ConfigDict) -> dict[str, Any]:
    """Lowers and compiles the training step of `config` without running it.

    Returns:
      {..., "compile_s": seconds of lowering + compilation, "model_flops_per_step",
       "xla_flops_compiled" (XLA's count of the scanned program: loop bodies once), memory bytes}.
    """
    b = _build(config)
    t0 = time.perf_counter()
    compiled = b["step_jit"].lower(b["state"], b["batch"]).compile()
    res = _describe(b["model_cfg"], b["batch_size"], b["devices"])
    res["compile_s"] = time.perf_counter() - t0
    res["model_flops_per_step"] = flops.train_step_flops(b["model_cfg"], b["batch_size"])["total"]
    res["xla_flops_compiled"] = _cost(compiled).get("flops")
    res.update(memory_bytes(compiled))
    return res


def run_benchmark(config: ml_collections.ConfigDict, *, warmup: int = 2, iters: int = 10, eval_iters: int = 3,
                  run_eval: bool = True, peak: bool = True, xla_flops: bool = True,
                  peak_size: int | None = None) -> dict[str, Any]:
    """Compiles and times the training step (and the evaluation step) of `config`.

    Args:
      config: an experiment config (experiments/*.py); uses model, global_batch_size, microbatches,
        act_mode, optim, ema, seed, eval.halt_max_steps. No data is read.
      warmup: untimed training steps after compilation (>= 1 recommended).
      iters: timed training steps; step_s is their median.
      eval_iters: timed evaluation batches (after one untimed one).
      run_eval: also compile and time the evaluation step.
      peak: measure the matmul peak (else peak/mfu are omitted).
      xla_flops: also compute XLA's FLOP count of the unrolled step (a second trace and lowering).
      peak_size: n of the peak matmul (default by platform).
    Returns:
      A flat dict of figures (see the module docstring); seconds, FLOPs, FLOP/s, bytes.
    Raises:
      ValueError: an invalid config field (as training raises it).
    """
    if iters < 1 or warmup < 0:
        raise ValueError(f"iters={iters} must be >= 1 and warmup={warmup} >= 0")
    b = _build(config)
    model_cfg, B, devices, graphdef, state, batch = b["model_cfg"], b["batch_size"], b["devices"], b["graphdef"], b["state"], b["batch"]
    step = b["step"]
    t0 = time.perf_counter()
    compiled = b["step_jit"].lower(state, batch).compile()
    compile_s = time.perf_counter() - t0

    holder = {"state": state}

    def train_once():
        s, m = compiled(holder["state"], batch)
        jax.block_until_ready((s, m))
        holder["state"] = s

    # The peak matmul is sampled between the timed steps, so both see the same machine load.
    sampler, peak_n = _peak_sampler(model_cfg.dtype, peak_size, devices) if peak else (None, 0)
    for _ in range(warmup):
        train_once()
    times, cpu, peaks = [], [], []
    for _ in range(iters):
        if sampler is not None:
            peaks.append(sampler())
        c0, t0 = time.process_time(), time.perf_counter()
        train_once()
        times.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    if sampler is not None:
        peaks.append(sampler())
    step_s = statistics.median(times)
    fl = flops.train_step_flops(model_cfg, B)
    res: dict[str, Any] = _describe(model_cfg, B, devices)
    res.update({
        "examples_per_s": B / step_s, "step_s": step_s, "step_s_min": min(times), "iters": iters,
        "cpu_s": statistics.median(cpu),
        "compile_s": compile_s, "model_flops_per_step": fl["total"],
        "achieved_flops_per_s": fl["total"] / step_s,
    })
    res["xla_flops_compiled"] = _cost(compiled).get("flops")
    if xla_flops:
        xf = unrolled_xla_flops(step, (state_like(holder["state"]), batch), config)
        res["xla_flops_per_step"] = xf
        res["flops_ratio"] = fl["total"] / xf if xf else None
    res.update(memory_bytes(compiled))

    if run_eval:
        n_eval = evaluate.resolve_settings(config, model_cfg).halt_max_steps
        eval_jit = evaluate.jit_eval_step(graphdef, model_cfg, evaluate.resolve_settings(config, model_cfg))
        st = holder["state"]
        t0 = time.perf_counter()
        eval_c = eval_jit.lower(st.params, st.buffers, st.puzzle_table, batch).compile()
        res["eval_compile_s"] = time.perf_counter() - t0
        def eval_once():
            jax.block_until_ready(eval_c(st.params, st.buffers, st.puzzle_table, batch))

        eval_once()  # warm-up
        et, eval_peaks = [], []
        for _ in range(max(1, eval_iters)):  # peak samples around each timed batch, as for training
            if sampler is not None:
                eval_peaks.append(sampler())
            t0 = time.perf_counter()
            eval_once()
            et.append(time.perf_counter() - t0)
        if sampler is not None:
            eval_peaks.append(sampler())
        res["eval_step_s"] = statistics.median(et)
        res["eval_examples_per_s"] = B / res["eval_step_s"]
        res["eval_model_flops"] = flops.eval_step_flops(model_cfg, B, n_eval)
        res["eval_achieved_flops_per_s"] = res["eval_model_flops"] / res["eval_step_s"]
        res["eval_temp_bytes"] = memory_bytes(eval_c).get("temp_bytes")

    if peaks:
        res.update(peak_flops_per_s=statistics.median(peaks), peak_flops_per_s_best=max(peaks), peak_matmul_n=peak_n)
        res["mfu"] = res["achieved_flops_per_s"] / res["peak_flops_per_s"]
        if run_eval:
            res["eval_peak_flops_per_s"] = statistics.median(eval_peaks)
            res["eval_mfu"] = res["eval_achieved_flops_per_s"] / res["eval_peak_flops_per_s"]
    return res


def state_like(state: TrainState) -> TrainState:
    """Abstract shapes of a state (for tracing without touching donated buffers)."""
    return jax.tree_util.tree_map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), state)


def set_override(config: ml_collections.ConfigDict, key: str, value: str) -> None:
    """Sets `config.<dotted key>` from a string, parsed to the existing field's type.

    Raises:
      KeyError: naming an unknown key; ValueError: a value that does not parse.
    """
    node = config
    *path, last = key.split(".")
    for p in path:
        if p not in node:
            raise KeyError(f"--sweep: unknown config key {key!r}")
        node = node[p]
    if last not in node:
        raise KeyError(f"--sweep: unknown config key {key!r}")
    old = node[last]
    if isinstance(old, bool):
        if value.lower() not in ("true", "false", "1", "0"):
            raise ValueError(f"--sweep {key}={value!r}: expected a boolean")
        node[last] = value.lower() in ("true", "1")
    elif isinstance(old, int):
        node[last] = int(value)
    elif isinstance(old, float):
        node[last] = float(value)
    else:
        node[last] = value


__all__ = ["compile_only", "measure_peak_flops", "memory_bytes", "run_benchmark", "set_override", "synthetic_batch",
           "unrolled_xla_flops"]
