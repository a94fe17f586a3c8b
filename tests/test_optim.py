"""Tests of recur_jax.core.optim against NumPy implementations of the reference formulas (TRM.md 4.1-4.6)."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from recur_jax.core.optim import (
    AdamATan2State,
    SignSGDState,
    adam_atan2,
    ema_update,
    scheduled_lr,
    sparse_signsgd,
    sparse_signsgd_update,
    warmup_cosine_schedule,
)

# --------------------------------------------------------------------------------------------------
# NumPy references
# --------------------------------------------------------------------------------------------------


def ref_schedule(t, base, warmup, total, r):
    """`cosine_schedule_with_warmup_lr_lambda` of the reference pretrain.py, in float64."""
    if t < warmup:
        return base * float(t) / float(max(1, warmup))
    progress = float(t - warmup) / float(max(1, total - warmup))
    return base * (r + max(0.0, (1 - r) * 0.5 * (1.0 + math.cos(math.pi * progress))))


def np_adam_atan2_step(p, g, m, v, t, lr, b1, b2, wd, dtype):
    """One AdamATan2 step (imoneoi/adam-atan2) in `dtype`, scalars computed in float64 as the CUDA functor."""
    p, g, m, v = (np.asarray(x, dtype) for x in (p, g, m, v))
    step_size = dtype(lr / (1.0 - b1**t))
    wd_alpha = dtype(1.0 - lr * wd)
    bc2_sqrt = dtype(math.sqrt(1.0 - b2**t))
    p = p * wd_alpha
    m = m + dtype(1.0 - b1) * (g - m)
    v = v + dtype(1.0 - b2) * (g * g - v)
    p = p - step_size * np.arctan2(m, np.sqrt(v) / bc2_sqrt)
    return p, m, v


def make_params(rng):
    return {
        "w": rng.normal(size=(4, 6)).astype(np.float32),
        "b": rng.normal(size=(6,)).astype(np.float32),
        "never_used": rng.normal(size=(3,)).astype(np.float32),  # like TRM's q_continue row
    }


def make_grads(rng, params):
    g = {k: (rng.normal(size=v.shape) * rng.uniform(0.01, 3.0)).astype(np.float32) for k, v in params.items()}
    g["never_used"] = np.zeros_like(params["never_used"])
    return g


# --------------------------------------------------------------------------------------------------
# AdamATan2
# --------------------------------------------------------------------------------------------------

STEPS = 100


def _run_trace(opt, params0, grads_seq, jit):
    params = jax.tree.map(jnp.asarray, params0)
    state = opt.init(params)

    def step(params, state, grads):
        updates, state = opt.update(grads, state, params)
        return optax.apply_updates(params, updates), state

    if jit:
        step = jax.jit(step)
    trace = []
    for grads in grads_seq:
        params, state = step(params, state, jax.tree.map(jnp.asarray, grads))
        trace.append((jax.tree.map(np.asarray, params), jax.tree.map(np.asarray, state.mu), jax.tree.map(np.asarray, state.nu), int(state.count)))
    return trace


@pytest.mark.parametrize("wd", [0.1, 1.0])
@pytest.mark.parametrize("lr", [1e-3, 1e-4, 5e-4, "schedule"])
def test_adam_atan2_trace_matches_numpy(lr, wd):
    """100 steps on random grads vs the exact formula in float64 (and float32), plus one-step checks.

    Free-running, float32 rounding of p (about 1 ulp of |p| per step, partly systematic because
    p * (1 - lr wd) rounds the same way step after step) accumulates to a few 1e-6 of |p| over 100
    steps: a NumPy float32 implementation of the same formula drifts from float64 by up to 1.3e-5 here.
    So the trace is checked at 1e-5 of the param scale, and each step is also checked from the
    float64 state (teacher-forced) at 1e-6 of the param scale, which isolates the update formula.
    """
    rng = np.random.default_rng(0)
    params0 = make_params(rng)
    grads_seq = [make_grads(rng, params0) for _ in range(STEPS)]
    if lr == "schedule":
        base, warmup, total, r = 1e-3, 10, 80, 0.1  # warmup, cosine, then held at base*r past total
        sched = warmup_cosine_schedule(base, warmup, total, r)
        lr_at = lambda t: ref_schedule(min(t, total), base, warmup, total, r)
        opt = adam_atan2(sched, weight_decay=wd)
    else:
        lr_at = lambda t: lr
        opt = adam_atan2(lr, weight_decay=wd)

    trace = _run_trace(opt, params0, grads_seq, jit=True)
    one_step = jax.jit(opt.update)

    p64 = {k: v.astype(np.float64) for k, v in params0.items()}
    m64 = {k: np.zeros_like(v) for k, v in p64.items()}
    v64 = {k: np.zeros_like(v) for k, v in p64.items()}
    p32 = dict(params0)
    m32 = {k: np.zeros_like(v) for k, v in p32.items()}
    v32 = {k: np.zeros_like(v) for k, v in p32.items()}
    decay_prod = 1.0
    for i, grads in enumerate(grads_seq):
        t = i + 1
        eta = lr_at(t)
        decay_prod *= 1.0 - eta * wd
        # Teacher-forced single step from the float64 state.
        f32 = lambda tree: {k: jnp.asarray(v, jnp.float32) for k, v in tree.items()}
        state_in = AdamATan2State(count=jnp.int32(i), mu=f32(m64), nu=f32(v64))
        params_in = f32(p64)
        updates, state_out = one_step(f32(grads), state_in, params_in)
        step_params = optax.apply_updates(params_in, updates)
        assert int(state_out.count) == t
        p_prev = dict(p64)
        for k in p64:
            p64[k], m64[k], v64[k] = np_adam_atan2_step(p64[k], grads[k], m64[k], v64[k], t, eta, 0.9, 0.95, wd, np.float64)
            p32[k], m32[k], v32[k] = np_adam_atan2_step(p32[k], grads[k], m32[k], v32[k], t, eta, 0.9, 0.95, wd, np.float32)
            scale = max(1.0, np.abs(p64[k]).max())
            np.testing.assert_allclose(np.asarray(step_params[k]), p64[k], rtol=0, atol=1e-6 * scale, err_msg=f"{k} one step {t}")
            # The update itself (new - old) to 1e-3 relative to lr: catches a wrong bias correction or lr(t-1).
            np.testing.assert_allclose(np.asarray(step_params[k]) - p_prev[k], p64[k] - p_prev[k], rtol=0, atol=1e-3 * eta + 2e-7 * scale)
            np.testing.assert_allclose(np.asarray(state_out.mu[k]), m64[k], rtol=1e-6, atol=1e-7)
            np.testing.assert_allclose(np.asarray(state_out.nu[k]), v64[k], rtol=1e-6, atol=1e-7)
        params, mu, nu, count = trace[i]
        assert count == t
        for k in p64:
            scale = max(1.0, np.abs(p64[k]).max())
            np.testing.assert_allclose(params[k], p64[k], rtol=0, atol=1e-5 * scale, err_msg=f"{k} step {t} vs f64")
            np.testing.assert_allclose(params[k], p32[k], rtol=0, atol=1e-5 * scale, err_msg=f"{k} step {t} vs f32")
            np.testing.assert_allclose(mu[k], m64[k], rtol=1e-5, atol=1e-6)
            np.testing.assert_allclose(nu[k], v64[k], rtol=1e-5, atol=1e-6)
        assert params["w"].dtype == np.float32 and mu["w"].dtype == np.float32

    # The zero-gradient leaf got decay only: atan2(0, 0) = 0.
    final_params, final_mu, final_nu, _ = trace[-1]
    np.testing.assert_array_equal(final_mu["never_used"], 0.0)
    np.testing.assert_array_equal(final_nu["never_used"], 0.0)
    np.testing.assert_allclose(final_params["never_used"], p32["never_used"], rtol=1e-6)
    np.testing.assert_allclose(final_params["never_used"], params0["never_used"] * decay_prod, rtol=1e-5)
    # Sanity: the trace moved the other leaves (beyond the decay) far more than the tolerance.
    assert np.abs(final_params["w"] - params0["w"] * decay_prod).max() > 1e-3


def test_adam_atan2_jit_equals_eager():
    rng = np.random.default_rng(1)
    params0 = make_params(rng)
    grads_seq = [make_grads(rng, params0) for _ in range(10)]
    opt = adam_atan2(warmup_cosine_schedule(5e-4, 3, 8, 0.0), weight_decay=1.0)
    eager = _run_trace(opt, params0, grads_seq, jit=False)
    jitted = _run_trace(opt, params0, grads_seq, jit=True)
    for (pe, me, ve, ce), (pj, mj, vj, cj) in zip(eager, jitted):
        assert ce == cj
        for k in pe:
            np.testing.assert_allclose(pj[k], pe[k], rtol=0, atol=1e-6)  # XLA fusion (FMA): a few ulp over 10 steps
            np.testing.assert_allclose(mj[k], me[k], rtol=1e-6, atol=1e-7)
            np.testing.assert_allclose(vj[k], ve[k], rtol=1e-6, atol=1e-7)


def test_adam_atan2_first_step_and_state():
    # At t = 1: m = 0.1 g, v = 0.05 g^2, so sqrt(v)/sqrt(1 - 0.95) = |g| and the step is
    # lr / (1 - 0.9) * atan2(0.1 g, |g|) = 10 lr sign(g) atan(0.1). (With the bias correction inside atan2,
    # as in the reverted commit / lucidrains, it would be lr sign(g) pi/4.)
    # The step is scale-invariant in g (no epsilon): a 1e-10 gradient moves the param as much as a 7.0 one.
    params = {"a": jnp.array([1.0, -2.0, 0.5, 3.0, 0.25], jnp.float32)}
    grads = {"a": jnp.array([0.3, -7.0, 0.0, 1e-3, -1e-10], jnp.float32)}
    lr, wd = 1e-3, 0.1
    opt = adam_atan2(lr, weight_decay=wd)
    state = opt.init(params)
    assert isinstance(state, AdamATan2State)
    assert state.count.dtype == jnp.int32 and int(state.count) == 0
    updates, state = opt.update(grads, state, params)
    new = optax.apply_updates(params, updates)
    expected = np.array([1.0, -2.0, 0.5, 3.0, 0.25]) * (1 - lr * wd) - 10 * lr * np.sign([0.3, -7.0, 0.0, 1e-3, -1e-10]) * math.atan(0.1)
    np.testing.assert_allclose(np.asarray(new["a"]), expected, rtol=0, atol=1e-6)
    assert int(state.count) == 1
    np.testing.assert_allclose(float(scheduled_lr(lr, state.count)), lr, rtol=1e-7)


def test_adam_atan2_requires_params_and_validates():
    opt = adam_atan2(1e-3)
    params = {"a": jnp.ones(3)}
    state = opt.init(params)
    with pytest.raises(ValueError, match="params"):
        opt.update(params, state)
    with pytest.raises(ValueError):
        adam_atan2(1e-3, b1=1.0)
    with pytest.raises(ValueError):
        adam_atan2(1e-3, b2=-0.1)
    with pytest.raises(ValueError):
        adam_atan2(1e-3, weight_decay=-1.0)


def test_adam_atan2_schedule_uses_one_based_step():
    # A schedule that is 0 at t = 0: if it were evaluated at t-1 the first update would be a no-op.
    sched = lambda t: 1e-2 * t.astype(jnp.float32)
    opt = adam_atan2(sched, weight_decay=0.0)
    params = {"a": jnp.array([1.0], jnp.float32)}
    state = opt.init(params)
    updates, state = opt.update({"a": jnp.array([1.0], jnp.float32)}, state, params)
    np.testing.assert_allclose(np.asarray(updates["a"]), -1e-2 / 0.1 * math.atan(0.1), rtol=0, atol=1.2e-7)  # 1 ulp of p = 1
    np.testing.assert_allclose(float(scheduled_lr(sched, state.count)), 1e-2, rtol=1e-6)


# --------------------------------------------------------------------------------------------------
# LR schedule
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("r", [0.0, 0.1, 1.0])
def test_warmup_cosine_schedule_matches_formula(r):
    base, warmup, total = 1e-4, 2000, 26041
    sched = warmup_cosine_schedule(base, warmup, total, r)
    jsched = jax.jit(sched)
    for t in [1, 2, 500, warmup - 1, warmup, warmup + 1, 10000, (warmup + total) // 2, total - 1, total]:
        want = ref_schedule(t, base, warmup, total, r)
        got = float(sched(t))
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-12, err_msg=f"t={t}")
        np.testing.assert_allclose(float(jsched(jnp.int32(t))), want, rtol=1e-6, atol=1e-12, err_msg=f"jit t={t}")
    assert sched(1).dtype == jnp.float32
    np.testing.assert_allclose(float(sched(warmup - 1)), base * (warmup - 1) / warmup, rtol=1e-6)
    np.testing.assert_allclose(float(sched(warmup)), base, rtol=1e-6)
    np.testing.assert_allclose(float(sched(total)), base * r, rtol=1e-6, atol=1e-12)
    # Past the end: held at base * r.
    np.testing.assert_allclose(float(sched(total + 1000)), base * r, rtol=1e-6, atol=1e-12)


def test_warmup_cosine_schedule_edge_cases():
    # W = 0: cosine from the first step.
    sched = warmup_cosine_schedule(1e-3, 0, 100, 0.1)
    for t in [0, 1, 50, 99, 100]:
        np.testing.assert_allclose(float(sched(t)), ref_schedule(t, 1e-3, 0, 100, 0.1), rtol=1e-6)
    # T <= W: equals the reference at every step it trains (t <= T), and stays finite.
    for total in [5, 10]:
        sched = warmup_cosine_schedule(1e-3, 10, total, 0.1)
        for t in range(1, total + 1):
            np.testing.assert_allclose(float(sched(t)), ref_schedule(t, 1e-3, 10, total, 0.1), rtol=1e-6)
        np.testing.assert_allclose(float(sched(10)), 1e-3, rtol=1e-6)
        np.testing.assert_allclose(float(sched(11)), 1e-4, rtol=1e-6)
        assert np.isfinite(float(sched(1000)))
    # T = W + 1 is the regular formula.
    sched = warmup_cosine_schedule(1e-3, 10, 11, 0.1)
    for t in [1, 9, 10, 11]:
        np.testing.assert_allclose(float(sched(t)), ref_schedule(t, 1e-3, 10, 11, 0.1), rtol=1e-6)
    # Default r = 1: constant after warmup.
    sched = warmup_cosine_schedule(1e-2, 4, 100, 1.0)
    np.testing.assert_allclose([float(sched(t)) for t in [1, 2, 3, 4, 50, 100]], [2.5e-3, 5e-3, 7.5e-3, 1e-2, 1e-2, 1e-2], rtol=1e-6)
    # A large step count (ARC-1 run length) does not overflow.
    sched = warmup_cosine_schedule(1e-4, 2000, 414456, 0.0)
    for t in [414455, 414456]:
        np.testing.assert_allclose(float(jax.jit(sched)(jnp.int32(t))), ref_schedule(t, 1e-4, 2000, 414456, 0.0), rtol=1e-4, atol=1e-13)
    with pytest.raises(ValueError):
        warmup_cosine_schedule(1e-3, -1, 10, 0.1)
    with pytest.raises(ValueError):
        warmup_cosine_schedule(1e-3, 1, 10, 1.5)


# --------------------------------------------------------------------------------------------------
# Sparse SignSGD
# --------------------------------------------------------------------------------------------------


def _signsgd_case():
    rng = np.random.default_rng(2)
    n, d = 10, 5
    table = rng.normal(size=(n, d)).astype(np.float32)
    ids = np.array([2, 5, 2, 7, 5, 2, 9], np.int32)
    grads = np.zeros((len(ids), d), np.float32)
    # id 2 (rows 0, 2, 5): col 0: +0.5 and -2.0 -> sum -1.5 (sign differs from the first);
    # col 1: -1.0 and +0.25 -> -0.75 (differs from the second); col 2: +1 and -1 -> exactly 0 (decay only);
    # col 3: all zero; col 4: +3, +1e-3, -4 -> -0.999.
    grads[0] = [0.5, -1.0, 1.0, 0.0, 3.0]
    grads[2] = [-2.0, 0.25, -1.0, 0.0, 1e-3]
    grads[5] = [0.0, 0.0, 0.0, 0.0, -4.0]
    # id 5 (rows 1, 4): col 0: -0.1 + 0.3 -> +; others random.
    grads[1] = [-0.1, 2.0, -3.0, 0.5, 0.0]
    grads[4] = [0.3, -1.0, 1.0, -0.25, 0.0]
    # id 7, id 9: single rows, one with a zero entry.
    grads[3] = [1.0, -1.0, 0.0, 2.0, -2.0]
    grads[6] = rng.normal(size=d).astype(np.float32)
    expected_sign = {
        2: np.array([-1, -1, 0, 0, -1], np.float32),
        5: np.array([1, 1, -1, 1, 0], np.float32),
        7: np.array([1, -1, 0, 1, -1], np.float32),
        9: np.sign(grads[6]),
    }
    return table, ids, grads, expected_sign


@pytest.mark.parametrize("jit", [False, True])
def test_sparse_signsgd_duplicates_and_untouched_rows(jit):
    table, ids, grads, expected_sign = _signsgd_case()
    lr, wd = 0.05, 0.5
    fn = jax.jit(sparse_signsgd_update) if jit else sparse_signsgd_update
    new = np.asarray(fn(jnp.asarray(table), jnp.asarray(ids), jnp.asarray(grads), jnp.float32(lr), wd))
    assert new.dtype == np.float32 and new.shape == table.shape
    touched = sorted(set(ids.tolist()))
    for row in range(table.shape[0]):
        if row not in touched:
            np.testing.assert_array_equal(new[row], table[row], err_msg=f"untouched row {row} changed")
    decay = np.float32(1.0) - np.float32(lr) * np.float32(wd)
    for row in touched:
        decayed = table[row] * decay
        want = decayed - np.float32(lr) * expected_sign[row]
        np.testing.assert_allclose(new[row], want, rtol=1e-6, atol=1e-7, err_msg=f"row {row}")
        # The step on top of the decay is exactly -lr * sign(sum): sign(0) leaves the decay only.
        np.testing.assert_allclose((new[row] - decayed) / lr, -expected_sign[row], rtol=0, atol=1e-4)
    # The summed sign differs from a single duplicate's sign (the construction is meaningful).
    assert np.sign(grads[0, 0]) != expected_sign[2][0] and np.sign(grads[2, 1]) != expected_sign[2][1]
    # A zero-sum entry is decay only, and the decay is visible.
    np.testing.assert_allclose(new[2, 2], table[2, 2] * decay, rtol=1e-7)
    assert abs(new[2, 2] - table[2, 2]) > 1e-3


def test_sparse_signsgd_jit_matches_eager_and_batched_ids():
    table, ids, grads, _ = _signsgd_case()
    eager = np.asarray(sparse_signsgd_update(jnp.asarray(table), jnp.asarray(ids), jnp.asarray(grads), 0.01, 0.1))
    jitted = np.asarray(jax.jit(sparse_signsgd_update)(jnp.asarray(table), jnp.asarray(ids), jnp.asarray(grads), 0.01, 0.1))
    np.testing.assert_allclose(jitted, eager, rtol=2.5e-7, atol=0)  # XLA may fuse into an FMA: 1 ulp
    # Ids of shape [1, K] with grads [1, K, d] (flattened) give the same result.
    batched = np.asarray(sparse_signsgd_update(jnp.asarray(table), jnp.asarray(ids[None]), jnp.asarray(grads[None]), 0.01, 0.1))
    np.testing.assert_array_equal(eager, batched)
    with pytest.raises(ValueError):
        sparse_signsgd_update(jnp.asarray(table), jnp.asarray(ids), jnp.asarray(grads[:, :2]), 0.01, 0.1)


def test_sparse_signsgd_single_row_table():
    # Sudoku/Maze: every example has identifier 0; one row, updated every step.
    table = jnp.full((1, 3), 0.5, jnp.float32)
    ids = jnp.zeros((6,), jnp.int32)
    grads = jnp.tile(jnp.array([[1.0, -1.0, 0.0]], jnp.float32), (6, 1))
    new = np.asarray(jax.jit(sparse_signsgd_update)(table, ids, grads, 0.1, 0.1))
    np.testing.assert_allclose(new[0], [0.5 * 0.99 - 0.1, 0.5 * 0.99 + 0.1, 0.5 * 0.99], rtol=1e-6)


def test_sparse_signsgd_is_o_k_memory():
    # A ~1M-row table: the compiled step must not build an [N, d] temporary (only the output).
    n, d, k = 1_000_000, 16, 64
    fn = jax.jit(sparse_signsgd_update, donate_argnums=0)
    table = jax.ShapeDtypeStruct((n, d), jnp.float32)
    ids = jax.ShapeDtypeStruct((k,), jnp.int32)
    grads = jax.ShapeDtypeStruct((k, d), jnp.float32)
    compiled = fn.lower(table, ids, grads, jax.ShapeDtypeStruct((), jnp.float32), 0.1).compile()
    mem = compiled.memory_analysis()
    if mem is None:
        pytest.skip("memory_analysis unavailable on this backend")
    assert mem.temp_size_in_bytes < n * d * 4 // 10, mem


def test_sparse_signsgd_stateful_wrapper_uses_one_based_schedule():
    table, ids, grads, expected_sign = _signsgd_case()
    sched = warmup_cosine_schedule(1e-2, 4, 100, 1.0)
    opt = sparse_signsgd(sched, weight_decay=0.1)
    state = opt.init(jnp.asarray(table))
    assert isinstance(state, SignSGDState) and state.count.dtype == jnp.int32 and int(state.count) == 0
    step = jax.jit(opt.update)
    tbl = jnp.asarray(table)
    expected = table.copy()
    for t in range(1, 4):
        tbl, state = step(tbl, jnp.asarray(ids), jnp.asarray(grads), state)
        assert int(state.count) == t
        lr = 1e-2 * t / 4  # warmup: t/W, first step uses t = 1
        for row, s in expected_sign.items():
            expected[row] = expected[row] * np.float32(1 - lr * 0.1) - np.float32(lr) * s
        np.testing.assert_allclose(np.asarray(tbl), expected, rtol=1e-6, atol=1e-7)
    np.testing.assert_array_equal(np.asarray(tbl)[[0, 1, 3, 4, 6, 8]], table[[0, 1, 3, 4, 6, 8]])


# --------------------------------------------------------------------------------------------------
# EMA
# --------------------------------------------------------------------------------------------------


def test_ema_update_matches_formula():
    rng = np.random.default_rng(3)
    params0 = {"a": rng.normal(size=(3, 4)).astype(np.float32), "b": {"c": rng.normal(size=(5,)).astype(np.float32)}}
    ema = jax.tree.map(jnp.asarray, params0)  # the reference starts the shadow as a copy
    ema64 = jax.tree.map(lambda x: x.astype(np.float64), params0)
    step = jax.jit(ema_update, static_argnums=2)
    for i in range(20):
        params = jax.tree.map(lambda x: (x + rng.normal(size=x.shape)).astype(np.float32), params0)
        ema = step(ema, jax.tree.map(jnp.asarray, params), 0.999)
        ema64 = jax.tree.map(lambda e, p: 0.999 * e + 0.001 * p.astype(np.float64), ema64, params)
    jax.tree.map(lambda got, want: np.testing.assert_allclose(np.asarray(got), want, rtol=1e-6, atol=1e-6), ema, ema64)
    assert ema["a"].dtype == jnp.float32
    # One step, exact weights, other rates.
    e = {"x": jnp.array([1.0, 2.0], jnp.float32)}
    p = {"x": jnp.array([3.0, -2.0], jnp.float32)}
    np.testing.assert_allclose(np.asarray(ema_update(e, p, 0.9)["x"]), [1.2, 1.6], rtol=1e-6)
    np.testing.assert_allclose(np.asarray(ema_update(e, p, 0.0)["x"]), [3.0, -2.0], rtol=1e-7)
    np.testing.assert_allclose(np.asarray(ema_update(e, p, 1.0)["x"]), [1.0, 2.0], rtol=1e-7)
    with pytest.raises(ValueError):
        ema_update(e, p, 1.5)


def test_atan2_nonneg_x_is_within_3_ulp_of_float64_and_keeps_the_edge_cases():
    """AdamATan2's CPU atan2 (a vectorisable polynomial) against float64 atan2 over normal float32 inputs
    spanning the exponent range (x >= 0, as sqrt(v) always is), and the edge cases of jnp.arctan2."""
    from recur_jax.core.optim import atan2_nonneg_x

    rng = np.random.default_rng(0)
    n = 200_000
    y = (rng.standard_normal(n) * 10.0 ** rng.uniform(-37, 37, n)).astype(np.float32)
    x = (np.abs(rng.standard_normal(n)) * 10.0 ** rng.uniform(-37, 37, n)).astype(np.float32)
    ref = np.arctan2(y.astype(np.float64), x.astype(np.float64))
    tiny = np.finfo(np.float32).tiny  # XLA:CPU flushes subnormal inputs and results to zero
    keep = (np.abs(y) >= tiny) & (x >= tiny) & (np.abs(ref) >= 1e-30)
    got = np.asarray(jax.jit(atan2_nonneg_x)(y[keep], x[keep])).astype(np.float64)
    ulp = np.abs(got - ref[keep]) / np.spacing(np.abs(ref[keep]).astype(np.float32)).astype(np.float64)
    assert keep.sum() > 0.8 * n and ulp.max() <= 3.0, ulp.max()
    # |y| / x on both sides of the range-reduction points tan(pi/8) and tan(3pi/8), and near 1
    t = np.float32([0.41421354, 0.41421357, 0.4142136, 2.4142134, 2.4142137, 2.414214, 0.99999994, 1.0, 1.0000001])
    got = np.asarray(atan2_nonneg_x(jnp.asarray(t), jnp.ones_like(jnp.asarray(t)))).astype(np.float64)
    np.testing.assert_allclose(got, np.arctan(t.astype(np.float64)), rtol=3 * 2.0 ** -23, atol=0)
    inf, nan = np.float32(np.inf), np.float32(np.nan)
    ys = jnp.float32([0.0, -0.0, 1.0, -1.0, inf, -inf, 5.0, inf, -inf, 1.0, nan, 1.0, 0.0, nan])
    xs = jnp.float32([0.0, 0.0, 0.0, 0.0, 1.0, 1.0, inf, inf, inf, -0.0, 1.0, nan, nan, nan])
    got = np.asarray(atan2_nonneg_x(ys, xs))
    want = np.arctan2(np.asarray(ys, np.float64), np.asarray(xs, np.float64))
    np.testing.assert_allclose(got, want, rtol=1e-7, atol=0)  # NaN where NumPy's atan2 gives NaN
    assert np.isnan(got[10:]).all()
