"""The streaming ACT carry: reset and replacement, halting rules, exploration, HRM's Q target."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from recur_jax.core import act
from recur_jax.core.layers import Buffer
from recur_jax.core.models import ModelConfig, build_model

B, S, D, P = 6, 8, 16, 2


def _cfg(**kw):
    base = dict(vocab_size=6, seq_len=S, hidden_size=D, num_heads=2, puzzle_emb_ndim=D, puzzle_emb_len=P,
                num_puzzle_identifiers=4, H_cycles=2, L_cycles=2, halt_max_steps=4, forward_dtype="float32",
                halt_exploration_prob=0.0)
    base.update(kw)
    return ModelConfig(**base)


def _batch(rng, offset=0):
    return {"inputs": jnp.asarray(rng.integers(1, 6, (B, S)), jnp.int32),
            "labels": jnp.asarray(rng.integers(1, 6, (B, S)), jnp.int32),
            "puzzle_identifiers": jnp.asarray(rng.integers(0, 4, (B,)), jnp.int32)}


def test_reset_carry_matches_numpy_restatement():
    rng = np.random.default_rng(0)
    H_init = rng.standard_normal(D).astype(np.float32)
    L_init = rng.standard_normal(D).astype(np.float32)
    halted = np.array([True, False, True, False, False, True])
    carry = act.ACTCarry(
        z_H=jnp.asarray(rng.standard_normal((B, P + S, D)), jnp.float32),
        z_L=jnp.asarray(rng.standard_normal((B, P + S, D)), jnp.float32),
        steps=jnp.asarray(rng.integers(1, 4, B), jnp.int32), halted=jnp.asarray(halted),
        current_data=_batch(rng))
    new = _batch(rng)
    got = act.reset_carry(carry, new, jnp.asarray(H_init), jnp.asarray(L_init))

    want_zH, want_zL = np.array(carry.z_H), np.array(carry.z_L)
    want_steps = np.array(carry.steps)
    want_data = {k: np.array(v) for k, v in carry.current_data.items()}
    for b in range(B):
        if halted[b]:
            want_zH[b] = H_init
            want_zL[b] = L_init
            want_steps[b] = 0
            for k in want_data:
                want_data[k][b] = np.asarray(new[k])[b]
    np.testing.assert_array_equal(np.asarray(got.z_H), want_zH)
    np.testing.assert_array_equal(np.asarray(got.z_L), want_zL)
    np.testing.assert_array_equal(np.asarray(got.steps), want_steps)
    for k in want_data:
        np.testing.assert_array_equal(np.asarray(got.current_data[k]), want_data[k])
    np.testing.assert_array_equal(np.asarray(got.halted), halted)


def test_reset_carry_names_missing_batch_key():
    rng = np.random.default_rng(0)
    model = build_model(_cfg(), nnx.Rngs(0))
    batch = _batch(rng)
    carry = act.initial_carry(model, batch)
    del batch["labels"]
    with pytest.raises(KeyError, match="labels"):
        act.reset_carry(carry, batch, model.H_init[...], model.L_init[...])


def test_halting_rules():
    steps = jnp.array([1, 2, 3, 4, 1, 2], jnp.int32)
    q_halt = jnp.array([0.5, -0.5, -1.0, -1.0, 0.1, -0.2])
    q_cont = jnp.array([1.0, -1.0, -2.0, 0.0, -1.0, 0.5])
    P = act.HaltingPolicy
    trm, last = act.halting(steps, q_halt, q_cont, P(4, training=True, no_ACT_continue=True), None)
    np.testing.assert_array_equal(np.asarray(trm), [True, False, False, True, True, False])
    np.testing.assert_array_equal(np.asarray(last), [False, False, False, True, False, False])
    hrm, _ = act.halting(steps, q_halt, q_cont, P(4, training=True, no_ACT_continue=False), None)
    np.testing.assert_array_equal(np.asarray(hrm), [False, True, True, True, True, False])
    ev, _ = act.halting(steps, q_halt, q_cont, P(4, training=False, no_ACT_continue=True), None)
    np.testing.assert_array_equal(np.asarray(ev), [False, False, False, True, False, False])


def test_exploration_only_delays_halting_and_respects_drawn_minimum():
    n, max_steps = 20000, 8
    q_halt = jnp.full((n,), 3.0)  # every row wants to halt
    policy = act.HaltingPolicy(max_steps, training=True, no_ACT_continue=True, exploration_prob=0.3)
    for step in range(1, max_steps + 1):
        steps = jnp.full((n,), step, jnp.int32)
        key = jax.random.key(step)
        halted, _ = act.halting(steps, q_halt, q_halt, policy, key)
        # Re-derive the draws: a row is vetoed exactly when it explored and its minimum exceeds step.
        k_explore, k_min = jax.random.split(key)
        explore = np.asarray(jax.random.uniform(k_explore, (n,)) < 0.3)
        m = np.where(explore, np.asarray(jax.random.randint(k_min, (n,), 2, max_steps + 1)), 0)
        np.testing.assert_array_equal(np.asarray(halted), step >= m)
        assert m[explore].min() == 2 and m[explore].max() == max_steps
        if step == max_steps:
            assert bool(jnp.all(halted))  # the budget always halts
        frac_vetoed = 1 - float(jnp.mean(halted))
        expected = 0.3 * max(0, max_steps - step) / (max_steps - 1)
        assert abs(frac_vetoed - expected) < 0.02
    with pytest.raises(ValueError, match="rng"):
        act.halting(steps, q_halt, q_halt, policy, None)


def _run(cfg, steps, training=True, halt_max_steps=None, seed=0):
    model = build_model(cfg, nnx.Rngs(seed))
    graphdef, params, buffers = nnx.split(model, nnx.Param, Buffer)
    rng = np.random.default_rng(seed)
    table = jnp.asarray(rng.standard_normal((4, D)), jnp.float32)
    batches = [_batch(rng) for _ in range(steps)]
    carry = act.initial_carry(model, batches[0])
    history = []
    for t, batch in enumerate(batches):
        m = nnx.merge(graphdef, params, buffers)
        reset = act.reset_carry(carry, batch, m.H_init[...], m.L_init[...])
        rows = jnp.take(table, reset.current_data["puzzle_identifiers"], axis=0)
        policy = (act.HaltingPolicy.for_training(cfg) if training else
                  act.HaltingPolicy.for_evaluation(cfg, halt_max_steps or cfg.halt_max_steps))
        loss, (carry, outputs, metrics) = act.act_forward(m, reset, rows, policy, rng=jax.random.key(t))
        history.append((reset, carry, outputs, metrics))
    return model, history, batches, table


def test_forced_low_q_runs_every_row_to_the_budget_and_refreshes_data_only_on_halt():
    cfg = _cfg(halt_max_steps=3)
    model, history, batches, _ = _run(cfg, 7)
    # q_head starts at bias -5 (weight 0): no row halts before the budget.
    for t, (reset, carry, outputs, _) in enumerate(history):
        assert np.all(np.asarray(outputs["q_halt_logits"]) == -5.0)
        np.testing.assert_array_equal(np.asarray(carry.steps), np.full(B, t % 3 + 1))
        np.testing.assert_array_equal(np.asarray(carry.halted), np.full(B, t % 3 == 2))
        source = batches[3 * (t // 3)]  # data taken at the step after the last halt
        for k in act.BATCH_KEYS:
            np.testing.assert_array_equal(np.asarray(reset.current_data[k]), np.asarray(source[k]))


def test_evaluation_halts_only_at_the_given_budget():
    cfg = _cfg(halt_max_steps=2)
    model = build_model(cfg, nnx.Rngs(0))
    model.q_head.bias[...] = jnp.array([5.0, -5.0])  # would halt at once in training
    graphdef, params, buffers = nnx.split(model, nnx.Param, Buffer)
    rng = np.random.default_rng(1)
    batch = _batch(rng)
    table = jnp.zeros((4, D))
    carry = act.initial_carry(model, batch)
    for t in range(5):
        m = nnx.merge(graphdef, params, buffers)
        reset = act.reset_carry(carry, batch, m.H_init[...], m.L_init[...])
        rows = jnp.take(table, reset.current_data["puzzle_identifiers"], axis=0)
        _, (carry, _, _) = act.act_forward(m, reset, rows, act.HaltingPolicy.for_evaluation(cfg, 5))
        assert bool(jnp.all(carry.halted)) == (t == 4)
    _, (carry_train, _, _) = act.act_forward(m, act.reset_carry(act.initial_carry(m, batch), batch, m.H_init[...],
                                                                  m.L_init[...]), rows,
                                       act.HaltingPolicy.for_training(cfg))
    assert bool(jnp.all(carry_train.halted))


def test_hrm_target_q_continue_is_a_second_pass_from_the_new_carry():
    cfg = _cfg(arch="hrm", H_layers=1, L_layers=1, puzzle_emb_len=0, no_ACT_continue=False, grad_mode="one_step",
               halt_max_steps=2)
    model, history, _, table = _run(cfg, 2)
    for reset, carry, outputs, metrics in history:
        rows = jnp.take(table, reset.current_data["puzzle_identifiers"], axis=0)
        nxt = model(carry.z_H, carry.z_L, reset.current_data["inputs"], rows)
        is_last = np.asarray(carry.steps) >= 2
        want = jax.nn.sigmoid(np.where(is_last, nxt.q_halt, np.maximum(nxt.q_halt, nxt.q_continue)))
        np.testing.assert_allclose(np.asarray(outputs["target_q_continue"]), np.asarray(want), rtol=1e-6)
        assert "q_continue_loss" in metrics


def test_trm_has_no_continue_target():
    _, history, _, _ = _run(_cfg(), 1)
    assert "target_q_continue" not in history[0][2]
    assert "q_continue_loss" not in history[0][3]


def test_train_grads_scale_and_puzzle_rows():
    cfg = _cfg()
    model = build_model(cfg, nnx.Rngs(0))
    graphdef, params, buffers = nnx.split(model, nnx.Param, Buffer)
    rng = np.random.default_rng(2)
    batch = _batch(rng)
    table = jnp.asarray(rng.standard_normal((4, D)), jnp.float32)
    carry = act.initial_carry(model, batch)
    fn = jax.jit(act.act_train_grads, static_argnums=(0, 7), static_argnames=("loss_scale",))
    policy = act.HaltingPolicy.for_training(cfg)
    loss1, _, _, _, g1, (ids, pg1) = fn(graphdef, params, buffers, table, carry, batch, None, policy, loss_scale=1.0)
    loss2, _, _, _, g2, (_, pg2) = fn(graphdef, params, buffers, table, carry, batch, None, policy,
                                      loss_scale=1.0 / B)
    np.testing.assert_allclose(float(loss1), float(loss2), rtol=1e-6)  # the reported loss is unscaled
    for a, b in zip(jax.tree_util.tree_leaves(g1), jax.tree_util.tree_leaves(g2)):
        np.testing.assert_allclose(np.asarray(a) / B, np.asarray(b), rtol=1e-5, atol=1e-7)
    np.testing.assert_array_equal(np.asarray(ids), np.asarray(batch["puzzle_identifiers"]))
    assert pg1.shape == (B, D) and float(jnp.max(jnp.abs(pg1))) > 0


def test_warm_up_advances_only_the_reset_rows_by_the_drawn_steps_without_gradient():
    """Progressive loss (`model.warmup_max_steps`): the reset rows take r ~ U{0..R} detached inner steps, then
    the supervised step runs as without warm-up from there; rows mid-example are untouched."""
    # float64: the two orders of computation differ by a few ulps (measured at most 3e-16 absolute in the
    # gradients); the tolerances are ~100x that, far below any change of the maths
    with jax.enable_x64(True):
        _warm_up_check()


def _warm_up_check():
    R = 3
    cfg = _cfg(warmup_max_steps=R, forward_dtype="float64")
    model = build_model(cfg, nnx.Rngs(0))
    graphdef, params, buffers = nnx.split(model, nnx.Param, Buffer)
    rng = np.random.default_rng(3)
    table = jnp.asarray(rng.standard_normal((4, D)), jnp.float64)
    first, batch = _batch(rng), _batch(rng)
    off = act.HaltingPolicy.for_training(cfg.replace(warmup_max_steps=0))
    # a carry with rows mid-example: one step from a fresh start, then half the rows marked halted
    carry = act.act_train_grads(graphdef, params, buffers, table, act.initial_carry(model, first), first,
                                jax.random.key(0), off)[1]
    carry = carry.replace(halted=jnp.arange(B) % 2 == 0)
    fn = jax.jit(act.act_train_grads, static_argnums=(0, 7))
    draws = {}
    for seed in range(40):  # keys whose draws cover 0..R
        draws.setdefault(int(act.warmup_draw(jax.random.key(seed), R)), jax.random.key(seed))
    assert sorted(draws) == list(range(R + 1))

    def manual(r):
        m = nnx.merge(graphdef, params, buffers)
        c = act.reset_carry(carry, batch, m.H_init[...], m.L_init[...])
        rows = jnp.take(table, c.current_data["puzzle_identifiers"], axis=0)
        z_H, z_L = c.z_H, c.z_L
        for _ in range(r):
            out = m(z_H, z_L, c.current_data["inputs"], rows)
            z_H = jnp.where(c.halted[:, None, None], out.z_H, z_H)
            z_L = jnp.where(c.halted[:, None, None], out.z_L, z_L)
        return z_H, z_L

    policy = act.HaltingPolicy.for_training(cfg)
    plain = fn(graphdef, params, buffers, table, carry, batch, draws[0], off)

    @jax.jit
    def supervised(z_H, z_L, key):  # the supervised step from a hand-warmed carry: act_forward, warm-up off
        m = nnx.merge(graphdef, params, buffers)
        c = act.reset_carry(carry, batch, m.H_init[...], m.L_init[...]).replace(z_H=z_H, z_L=z_L)
        rows = jnp.take(table, c.current_data["puzzle_identifiers"], axis=0)

        def loss_fn(p):
            return act.act_forward(nnx.merge(graphdef, p, buffers), c, rows, off, rng=key)

        return jax.value_and_grad(loss_fn, has_aux=True)(params)

    for r, key in draws.items():
        loss, new, _, _, grads, _ = fn(graphdef, params, buffers, table, carry, batch, key, policy)
        (want_loss, (want_new, _, _)), want_grads = supervised(*manual(r), key)
        np.testing.assert_array_equal(np.asarray(new.steps), np.asarray(want_new.steps))
        np.testing.assert_allclose(float(loss), float(want_loss), rtol=1e-12)
        np.testing.assert_allclose(np.asarray(new.z_H), np.asarray(want_new.z_H), rtol=1e-12, atol=1e-13)
        for a, b in zip(jax.tree_util.tree_leaves(grads), jax.tree_util.tree_leaves(want_grads)):
            np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-12, atol=1e-13)
        odd = np.arange(B) % 2 == 1  # rows mid-example: as without warm-up, bitwise
        np.testing.assert_array_equal(np.asarray(new.z_H)[odd], np.asarray(plain[1].z_H)[odd])
        if r == 0:
            np.testing.assert_array_equal(np.asarray(new.z_H), np.asarray(plain[1].z_H))
            np.testing.assert_array_equal(float(loss), float(plain[0]))
        else:
            assert not np.allclose(np.asarray(new.z_H)[~odd], np.asarray(plain[1].z_H)[~odd])


def test_warm_up_is_training_only_and_checked():
    with pytest.raises(ValueError, match="model.warmup_max_steps=-1"):
        _cfg(warmup_max_steps=-1)
    with pytest.raises(ValueError, match="0 outside training"):
        act.HaltingPolicy(4, training=False, no_ACT_continue=True, warmup_max_steps=2)
    cfg = _cfg(warmup_max_steps=2)
    assert act.HaltingPolicy.for_training(cfg).warmup_max_steps == 2
    assert act.HaltingPolicy.for_evaluation(cfg, 8).warmup_max_steps == 0
    model = build_model(cfg, nnx.Rngs(0))
    graphdef, params, buffers = nnx.split(model, nnx.Param, Buffer)
    batch = _batch(np.random.default_rng(0))
    table = jnp.zeros((4, D), jnp.float32)
    with pytest.raises(ValueError, match="rng key is required with warmup_max_steps"):
        act.act_train_grads(graphdef, params, buffers, table, act.initial_carry(model, batch), batch, None,
                            act.HaltingPolicy.for_training(cfg))
