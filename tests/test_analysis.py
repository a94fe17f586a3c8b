"""Sweep-by-sweep analysis equals evaluation; residuals and halting steps as defined."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from recur_jax.core import act
from recur_jax.core.layers import Buffer
from recur_jax.core.models import ModelConfig, build_model
from recur_jax.run import evaluate
from recur_jax.study import analysis

B, S, D, P, N = 6, 8, 16, 2, 3


def _setup(arch, **kw):
    cfg = ModelConfig(arch=arch, vocab_size=6, seq_len=S, hidden_size=D, num_heads=2, puzzle_emb_ndim=D,
                      puzzle_emb_len=P, num_puzzle_identifiers=4, H_cycles=3, L_cycles=2, H_layers=1, L_layers=1,
                      halt_max_steps=N, forward_dtype="float32", halt_exploration_prob=0.0,
                      no_ACT_continue=(arch == "trm"), **kw)
    model = build_model(cfg, rngs=nnx.Rngs(0))
    graphdef, params, buffers = nnx.split(model, nnx.Param, Buffer)
    rng = np.random.default_rng(1)
    batch = {"inputs": jnp.asarray(rng.integers(1, 6, (B, S)), jnp.int32),
             "labels": jnp.asarray(rng.integers(1, 6, (B, S)), jnp.int32),
             "puzzle_identifiers": jnp.asarray(rng.integers(0, 4, (B,)), jnp.int32)}
    table = jnp.asarray(rng.standard_normal((4, D)), jnp.float32)
    return cfg, model, graphdef, params, buffers, batch, table


@pytest.mark.parametrize("arch", ["trm", "hrm"])
def test_sweeps_compose_to_the_full_step(arch):
    """T calls with H_cycles=1 give the latents of one call with H_cycles=T (forward pass).

    Both sides are jitted, as the analysis runs them: an op-by-op (eager) side would differ from
    the compiled one by float32 rounding alone (fused vs unfused elementwise ops), up to ~1e-5 here.
    """
    cfg, model, graphdef, params, buffers, batch, table = _setup(arch)
    one = nnx.merge(analysis.sweep_graphdef(cfg), params, buffers)
    rows = table[batch["puzzle_identifiers"]]
    full_step = jax.jit(lambda z_H, z_L: model(z_H, z_L, batch["inputs"], rows))
    one_sweep = jax.jit(lambda z_H, z_L: one(z_H, z_L, batch["inputs"], rows))
    z_H, z_L = model.initial_latents(B)
    a_H, a_L = z_H, z_L
    for _ in range(2):
        full = full_step(z_H, z_L)
        z_H, z_L = full.z_H, full.z_L
        for _ in range(cfg.H_cycles):
            out = one_sweep(a_H, a_L)
            a_H, a_L = out.z_H, out.z_L
        np.testing.assert_allclose(np.asarray(a_H), np.asarray(z_H), rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(np.asarray(a_L), np.asarray(z_L), rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(np.asarray(out.logits), np.asarray(full.logits), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("arch", ["trm", "hrm"])
def test_trajectory_matches_eval_batch(arch):
    cfg, model, graphdef, params, buffers, batch, table = _setup(arch)
    ev = evaluate.eval_batch(graphdef, params, buffers, table, batch, act.HaltingPolicy.for_evaluation(cfg, N))
    # labels = the model's own final predictions for half the rows: exact accuracy is non-trivial
    labels = jnp.where(jnp.arange(B)[:, None] < B // 2, ev["preds"], batch["labels"])
    batch = dict(batch, labels=labels)
    ev = evaluate.eval_batch(graphdef, params, buffers, table, batch, act.HaltingPolicy.for_evaluation(cfg, N))
    tr = jax.jit(analysis.latent_trajectory, static_argnums=(0, 5, 6))(
        analysis.sweep_graphdef(cfg), params, buffers, table, batch, N, cfg.H_cycles)
    assert float(ev["exact_by_step"][-1]) >= B // 2
    np.testing.assert_array_equal(np.asarray(tr["exact_by_step"]), np.asarray(ev["exact_by_step"]))
    assert tr["residual_H"].shape == (N * cfg.H_cycles,)
    # residual of the first sweep by its definition
    one = nnx.merge(analysis.sweep_graphdef(cfg), params, buffers)
    z_H, z_L = model.initial_latents(B)
    out = one(z_H, z_L, batch["inputs"], table[batch["puzzle_identifiers"]])
    want = np.mean(np.linalg.norm(np.asarray(out.z_H - z_H).reshape(B, -1), axis=1)
                   / np.linalg.norm(np.asarray(z_H).reshape(B, -1), axis=1))
    np.testing.assert_allclose(float(tr["residual_H"][0]), want, rtol=1e-5)
    # the initial q_head bias (-5) never halts: every row runs to the budget
    np.testing.assert_array_equal(np.asarray(tr["halt_step"]), np.full(B, N))
    np.testing.assert_array_equal(np.asarray(tr["correct_at_halt"]), np.asarray(ev["seq_correct"]) & True)


def test_halting_step_follows_the_q_head():
    cfg, model, graphdef, params, buffers, batch, table = _setup("trm")
    params = jax.tree_util.tree_map(lambda x: x, params)
    params["q_head"]["bias"] = nnx.Param(jnp.array([5.0, -5.0]))  # q_halt = +5 > 0: halt after step 1
    tr = analysis.latent_trajectory(analysis.sweep_graphdef(cfg), params, buffers, table, batch, N, cfg.H_cycles)
    np.testing.assert_array_equal(np.asarray(tr["halt_step"]), np.ones(B))
