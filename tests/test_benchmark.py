"""Benchmark harness: analytic FLOPs vs XLA's cost analysis, memory flat in recursion depth for the
truncated gradient modes, no recompilation after the first step, and the CLI. Nothing here is timed."""

import json
import os
import pathlib
import platform
import subprocess
import sys

import jax
import numpy as np
import pytest

from experiments import bench
from recur_jax.core import flops, recursion
from recur_jax.core.models import ModelConfig
from recur_jax.run import perf
from recur_jax.study import benchmark

REPO = pathlib.Path(__file__).resolve().parents[1]


def tiny(kind="trm_att", **model):
    """A benchmark config small enough to compile in a few seconds (batch 8: one row per fake device)."""
    c = bench.get_config(kind)
    c.global_batch_size = 8
    c.model.hidden_size = 32
    c.model.num_heads = 2
    c.model.puzzle_emb_ndim = 32
    c.model.puzzle_emb_len = 2
    c.model.seq_len = 16
    c.model.halt_max_steps = 2
    if kind == "hrm":
        c.model.H_layers = c.model.L_layers = 1
    else:
        c.model.L_layers = 1
    c.model.H_cycles = 2
    c.model.L_cycles = 2
    for k, v in model.items():
        c.model[k] = v
    return c


def _xla_flops(config):
    b = benchmark._build(config)
    return benchmark.unrolled_xla_flops(b["step"], (benchmark.state_like(b["state"]), b["batch"]), config)


@pytest.mark.parametrize("kind,mode", [("trm_att", "last_sweep"), ("trm_att", "full"), ("trm_att", "one_step"),
                                       ("trm_mlp", "last_sweep"), ("hrm", "one_step")])
def test_analytic_flops_match_xla_cost_analysis(kind, mode):
    """Matmul FLOPs are all but the elementwise few percent of XLA's count of the unrolled step."""
    c = tiny(kind, grad_mode=mode, hidden_size=64, num_heads=2, puzzle_emb_ndim=64)
    model_cfg = ModelConfig.from_dict(c.model.to_dict())
    analytic = flops.train_step_flops(model_cfg, c.global_batch_size)["total"]
    xla = _xla_flops(c)
    assert 0.85 <= analytic / xla <= 1.0, (analytic, xla)


def test_backward_counted_only_where_the_gradient_mode_allows():
    """XLA's extra FLOPs of `full` over `last_sweep` are the analytic backward of the extra sweeps."""
    counts = {}
    for mode in ("one_step", "last_sweep", "full"):
        c = tiny(grad_mode=mode, H_cycles=3, hidden_size=64, puzzle_emb_ndim=64)
        model_cfg = ModelConfig.from_dict(c.model.to_dict())
        counts[mode] = (flops.train_step_flops(model_cfg, 8)["total"], _xla_flops(c))
    assert counts["one_step"][1] < counts["last_sweep"][1] < counts["full"][1]
    for lo, hi in (("one_step", "last_sweep"), ("last_sweep", "full")):
        d_analytic = counts[hi][0] - counts[lo][0]
        d_xla = counts[hi][1] - counts[lo][1]
        assert 0.85 <= d_analytic / d_xla <= 1.0, (lo, hi, d_analytic, d_xla)


def test_flop_counts_by_hand():
    cfg = ModelConfig(arch="trm", hidden_size=128, num_heads=4, puzzle_emb_ndim=128, puzzle_emb_len=16,
                      L_layers=2, H_cycles=3, L_cycles=6, forward_dtype="float32")
    B, L, D = 32, 97, 128
    per_block = 2 * B * L * (128 * 384 + 128 * 128 + 128 * 1024 + 512 * 128) + 4 * B * L * L * D
    assert flops.block_flops(cfg, B) == per_block
    heads = 2 * B * 81 * D * 11 + 2 * B * D * 2
    got = flops.train_step_flops(cfg, B)
    assert got["forward"] == 21 * 2 * per_block + heads
    assert got["backward"] == 2 * (7 * 2 * per_block + heads)
    assert got["q_target"] == 0
    assert flops.call_counts(cfg, "one_step") == flops.CallCounts(18, 3, 1, 1)
    with pytest.raises(ValueError, match="grad_mode"):
        flops.call_counts(cfg, "sometimes")


def _temp_bytes(config):
    b = benchmark._build(config)
    return benchmark.memory_bytes(b["step_jit"].lower(b["state"], b["batch"]).compile())["temp_bytes"]


def test_temp_memory_flat_in_depth_for_truncated_modes_and_linear_for_full():
    """H_cycles 2 -> 8: temp_bytes grows <= 10% for one_step/last_sweep; with full it grows by the same
    amount per sweep (H_cycles 2, 3, 5)."""
    for mode in ("one_step", "last_sweep"):
        t2, t8 = (_temp_bytes(tiny(grad_mode=mode, H_cycles=h)) for h in (2, 8))
        assert t8 <= 1.10 * t2, (mode, t2, t8)
    t2, t3, t5 = (_temp_bytes(tiny(grad_mode="full", H_cycles=h)) for h in (2, 3, 5))
    assert t2 < t3 < t5
    per_sweep_lo, per_sweep_hi = (t3 - t2) / 1, (t5 - t3) / 2  # linear: equal increments per sweep
    assert 1 / 1.5 <= per_sweep_hi / per_sweep_lo <= 1.5, (t2, t3, t5)


def test_train_step_does_not_recompile_after_the_first_step():
    c = tiny()
    b = benchmark._build(c)
    step_jit, state = b["step_jit"], b["state"]
    model_cfg = ModelConfig.from_dict(c.model.to_dict())
    for i in range(3):  # a fresh host batch each step, as the loader gives
        host = benchmark.synthetic_batch(model_cfg, c.global_batch_size, seed=i)
        state, metrics = step_jit(state, host)
        jax.block_until_ready(state)
    assert step_jit._cache_size() == 1
    assert int(state.step) == 3


def test_unrolled_context_restores_scans_and_keeps_the_numbers():
    from flax import nnx

    from recur_jax.core.models import build_model

    cfg = ModelConfig.from_dict(tiny().model.to_dict())
    model = build_model(cfg, nnx.Rngs(params=0))
    host = benchmark.synthetic_batch(cfg, 2)
    z_H, z_L = model.initial_latents(2)
    rows = np.zeros((2, cfg.puzzle_emb_ndim), np.float32)
    scanned = model(z_H, z_L, host["inputs"], rows)
    with recursion.unrolled():
        assert recursion._UNROLL
        unrolled = model(z_H, z_L, host["inputs"], rows)
        text = jax.jit(lambda: model(z_H, z_L, host["inputs"], rows).logits).lower().as_text()
    assert not recursion._UNROLL
    assert "while" not in text
    np.testing.assert_allclose(np.asarray(scanned.logits), np.asarray(unrolled.logits), rtol=1e-5, atol=1e-5)


def test_run_benchmark_reports_every_figure():
    res = benchmark.run_benchmark(tiny(), warmup=1, iters=1, eval_iters=1, peak_size=256, xla_flops=False)
    for key in ("examples_per_s", "step_s", "cpu_s", "compile_s", "model_flops_per_step", "achieved_flops_per_s", "peak_flops_per_s", "mfu", "argument_bytes",
                "output_bytes", "temp_bytes", "eval_step_s", "eval_examples_per_s", "eval_mfu"):
        assert res[key] is not None and res[key] > 0, key
    assert res["batch"] == 8 and res["devices"] == jax.device_count()


def test_set_override_parses_to_the_field_type_and_names_unknown_keys():
    c = tiny()
    benchmark.set_override(c, "model.H_cycles", "4")
    benchmark.set_override(c, "model.remat", "true")
    benchmark.set_override(c, "model.grad_mode", "full")
    assert (c.model.H_cycles, c.model.remat, c.model.grad_mode) == (4, True, "full")
    with pytest.raises(KeyError, match="model.H_cylces"):
        benchmark.set_override(c, "model.H_cylces", "4")
    with pytest.raises(ValueError):
        benchmark.set_override(c, "model.H_cycles", "four")


def test_xla_flags_are_refused_once_a_backend_runs():
    jax.devices()  # the backend is up in this process
    assert perf.apply_xla_flags("") == os.environ.get("XLA_FLAGS", "")
    with pytest.raises(ValueError, match="before JAX"):
        perf.apply_xla_flags(perf.CPU_XLA_FLAGS)
    with pytest.raises(ValueError, match="--name=value"):
        perf.apply_xla_flags("xla_cpu_foo=1")


def test_per_core_device_count_divides_the_batch():
    flags = perf.CPU_PER_CORE_FLAGS
    assert perf.resolve_xla_flags(flags, 32, cores=2)[0] == "--xla_force_host_platform_device_count=2"
    assert perf.resolve_xla_flags(flags, 32, cores=3)[0] == "--xla_force_host_platform_device_count=2"
    assert perf.resolve_xla_flags(flags, 30, cores=4)[0] == "--xla_force_host_platform_device_count=3"
    assert perf.resolve_xla_flags(flags, 7, cores=4)[0] == "--xla_force_host_platform_device_count=1"
    assert perf.resolve_xla_flags(flags, None, cores=5)[0] == "--xla_force_host_platform_device_count=5"
    assert perf.resolve_xla_flags("--xla_force_host_platform_device_count=4", 3, cores=1) == [
        "--xla_force_host_platform_device_count=4"]  # an explicit count is the user's choice
    assert perf.resolve_xla_flags(flags, 32, cores=2)[1] == "--xla_cpu_multi_thread_eigen=false"
    with pytest.raises(ValueError, match="positive integer or 'cores'"):
        perf.resolve_xla_flags("--xla_force_host_platform_device_count=all", 32)
    with pytest.raises(ValueError, match="--name=value"):
        perf.resolve_xla_flags("xla_cpu_foo=1")


def test_host_hugepages_reexecutes_once_with_the_tunable_added(monkeypatch):
    calls = []

    def execve(path, argv, env):
        calls.append((path, argv, env))

    monkeypatch.setattr(perf.platform, "system", lambda: "Linux")
    monkeypatch.setattr(perf.platform, "libc_ver", lambda: ("glibc", "2.36"))
    monkeypatch.setattr(perf.sys, "orig_argv", ["python3", "-m", "launch.main", "--config=x.py"])
    assert perf.ensure_host_hugepages(False, environ={}, execve=execve) is False and not calls
    env = {"GLIBC_TUNABLES": "glibc.malloc.hugetlb=1:glibc.pthread.rseq=0"}
    assert perf.ensure_host_hugepages(True, environ=env, execve=execve) is True and not calls
    env = {"GLIBC_TUNABLES": "glibc.pthread.rseq=0:glibc.malloc.hugetlb=0", "KEEP": "1"}
    assert perf.ensure_host_hugepages(True, environ=env, execve=execve) is False
    (path, argv, new_env), = calls
    assert path == sys.executable and argv == [sys.executable, "-m", "launch.main", "--config=x.py"]
    assert new_env["GLIBC_TUNABLES"] == "glibc.pthread.rseq=0:glibc.malloc.hugetlb=1"
    assert new_env["KEEP"] == "1" and env == {"GLIBC_TUNABLES": "glibc.pthread.rseq=0:glibc.malloc.hugetlb=0",
                                              "KEEP": "1"}  # the caller's mapping is not modified
    # Already re-executed once and still not in effect: no loop.
    assert perf.ensure_host_hugepages(True, environ={perf._REEXEC_MARKER: "1"}, execve=execve) is False
    assert len(calls) == 1
    monkeypatch.setattr(perf.platform, "libc_ver", lambda: ("", ""))  # e.g. musl: ignored, no exec
    assert perf.ensure_host_hugepages(True, environ={}, execve=execve) is False and len(calls) == 1


def test_bench_config_requires_one_model():
    with pytest.raises(ValueError, match="exactly one"):
        bench.get_config("trm_att,hrm")
    assert bench.get_config("hrm").model.H_layers == 4


def test_cli_sweep_prints_one_json_line_per_value():
    env = dict(os.environ, JAX_PLATFORMS="cpu", XLA_FLAGS="")  # one CPU device
    cmd = [sys.executable, "-m", "launch.benchmark", "--config=experiments/bench.py:trm_mlp",
           "--config.global_batch_size=4", "--config.model.hidden_size=32", "--config.model.puzzle_emb_ndim=32",
           "--config.model.puzzle_emb_len=1", "--config.model.L_layers=1", "--config.model.L_cycles=2",
           "--sweep=model.H_cycles=1,3", "--compile_only"]
    out = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    lines = [json.loads(ln) for ln in out.stdout.splitlines() if ln.startswith("{")]
    assert [ln["value"] for ln in lines] == ["1", "3"]
    assert [ln["H_cycles"] for ln in lines] == [1, 3]
    assert all(ln["compile_s"] > 0 and ln["temp_bytes"] > 0 for ln in lines)
    # bench.py sets config.host_hugepages: on Linux/glibc the command re-executed itself with the tunable.
    if platform.system() == "Linux" and platform.libc_ver()[0] == "glibc":
        assert all(ln["host_hugepages"] is True for ln in lines)
    bad = subprocess.run(cmd[:-2] + ["--sweep=model.H_cylces=1"], cwd=REPO, env=env, capture_output=True,
                         text=True, timeout=300)
    assert bad.returncode == 2 and "H_cylces" in bad.stderr


@pytest.mark.parametrize("change", [{"attention_impl": "einsum"}, {"unroll_grad_sweep": True}])
def test_performance_options_keep_the_numbers(change):
    """Forward and parameter gradients of the last_sweep model agree with the default formulation."""
    from flax import nnx

    from recur_jax.core.layers import Buffer
    from recur_jax.core.models import build_model

    base = ModelConfig.from_dict(tiny(H_cycles=2, L_cycles=3).model.to_dict())
    host = benchmark.synthetic_batch(base, 2)
    rows = np.random.default_rng(0).normal(size=(2, base.puzzle_emb_ndim)).astype(np.float32)
    out = []
    for cfg in (base, base.replace(**change)):
        graphdef, params, buffers = nnx.split(build_model(cfg, nnx.Rngs(params=0)), nnx.Param, Buffer)

        def loss(p, graphdef=graphdef, buffers=buffers):
            model = nnx.merge(graphdef, p, buffers)
            z_H, z_L = model.initial_latents(2)
            o = model(z_H, z_L, host["inputs"], rows)
            return jax.numpy.sum(o.logits ** 2) + jax.numpy.sum(o.q_halt), o.logits

        (_, logits), grads = jax.value_and_grad(loss, has_aux=True)(params)
        out.append((logits, jax.tree_util.tree_leaves(grads)))
    np.testing.assert_allclose(np.asarray(out[1][0]), np.asarray(out[0][0]), rtol=1e-4, atol=1e-5)
    for a, b in zip(out[1][1], out[0][1]):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-4, atol=1e-4 * float(np.abs(b).max()) + 1e-6)
