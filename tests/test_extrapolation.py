"""Length extrapolation: the prefix-sum task, the convolution mixer, a trained model rebuilt at another size
(`checkpoint.at_size`), the study's evaluation over sizes and its report."""

import dataclasses
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from experiments.ablations import extrapolation as study
from recur_jax.core import flops
from recur_jax.core.layers import DepthwiseConv
from recur_jax.core.models import ModelConfig, build_model
from recur_jax.run.checkpoint import at_size, load_for_inference
from recur_jax.study import extrapolation
from recur_jax.tasks import algorithmic
from test_train import tiny


def test_prefix_sum_targets_are_the_running_parity():
    s = algorithmic.generate("prefix_sum", 50, 3, 1, seq_len=20, min_len=5, max_len=20)
    assert algorithmic.vocab_size("prefix_sum") == 3
    for x, y, n in zip(s.inputs, s.targets, s.lengths):
        bits = x[:n].astype(int) - 1
        assert set(bits) <= {0, 1} and not x[n:].any() and not y[n:].any()
        np.testing.assert_array_equal(y[:n].astype(int) - 1, np.cumsum(bits) % 2)
    with pytest.raises(ValueError, match="seq_len >= 30"):
        algorithmic.generate("prefix_sum", 2, 0, 0, seq_len=20, min_len=5, max_len=30)


@pytest.mark.parametrize("grid_width", [0, 4])
def test_depthwise_conv_is_the_zero_padded_convolution_per_channel(grid_width):
    D, k = 3, 3
    conv = DepthwiseConv(D, k, grid_width, rngs=nnx.Rngs(params=0))
    h = jax.random.normal(jax.random.key(1), (2, 12, D))
    out = np.asarray(conv(h))
    w, x = np.asarray(conv.kernel[...]), np.asarray(h)
    want = np.zeros_like(x)
    if not grid_width:  # out[i] = sum_t w[t] * x[i + t - 1] (cross-correlation, zero outside)
        for i in range(12):
            for t in range(k):
                if 0 <= i + t - 1 < 12:
                    want[:, i] += w[t] * x[:, i + t - 1]
    else:
        g = x.reshape(2, 3, 4, D)
        wg = want.reshape(2, 3, 4, D)
        for r in range(3):
            for c in range(4):
                for a in range(k):
                    for b in range(k):
                        if 0 <= r + a - 1 < 3 and 0 <= c + b - 1 < 4:
                            wg[:, r, c] += w[a, b] * g[:, r + a - 1, c + b - 1]
    np.testing.assert_allclose(out, want, rtol=1e-5, atol=1e-5)
    if grid_width:  # the same as XLA's grouped convolution (what the shifted sum replaces for speed)
        lax = jax.lax.conv_general_dilated(h.reshape(2, 3, 4, D), conv.kernel[...][:, :, None, :], (1, 1), "SAME",
                                           dimension_numbers=("NHWC", "HWIO", "NHWC"), feature_group_count=D)
    else:
        lax = jax.lax.conv_general_dilated(h, conv.kernel[...][:, None, :], (1,), "SAME",
                                           dimension_numbers=("NWC", "WIO", "NWC"), feature_group_count=D)
    np.testing.assert_allclose(out, np.asarray(lax).reshape(out.shape), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("grid_width", [0, 4])
def test_circular_conv_wraps_around_and_commutes_with_rolls(grid_width):
    """conv_padding="circular": the convolution of a torus, i.e. zero padding of the input with its own
    ends attached; rolling the input (a translation on the torus) rolls the output the same way, so no
    position, edge or corner, can be told from another."""
    D, k = 3, 5
    conv = DepthwiseConv(D, k, grid_width, "circular", rngs=nnx.Rngs(params=0))
    zeros = DepthwiseConv(D, k, grid_width, rngs=nnx.Rngs(params=0))
    h = jax.random.normal(jax.random.key(1), (2, 12, D))
    out = np.asarray(conv(h))
    if not grid_width:  # wrap by hand: the zero-padded convolution of [h[-2:], h, h[:2]], middle 12
        ext = jnp.concatenate([h[:, -2:], h, h[:, :2]], axis=1)
        want = np.asarray(DepthwiseConv(D, k, 0, rngs=nnx.Rngs(params=0))(ext))[:, 2:14]
        np.testing.assert_allclose(out, want, rtol=1e-5, atol=1e-5)
        rolled = np.asarray(conv(jnp.roll(h, 5, axis=1)))
        np.testing.assert_allclose(rolled, np.roll(out, 5, axis=1), rtol=1e-5, atol=1e-5)
    else:
        g = h.reshape(2, 3, 4, D)
        rolled = np.asarray(conv(jnp.roll(g, (1, 3), axis=(1, 2)).reshape(2, 12, D)))
        np.testing.assert_allclose(rolled.reshape(2, 3, 4, D), np.roll(out.reshape(2, 3, 4, D), (1, 3), axis=(1, 2)),
                                   rtol=1e-5, atol=1e-5)
    # the interior (2 positions from every end) does not see the padding: the same as zero padding there
    inner = (slice(None), slice(2, 10)) if not grid_width else None
    if inner:
        np.testing.assert_allclose(out[inner], np.asarray(zeros(h))[inner], rtol=1e-5, atol=1e-5)
    assert not np.allclose(out, np.asarray(zeros(h)), atol=1e-3)
    with pytest.raises(ValueError, match="padding"):
        DepthwiseConv(D, k, grid_width, "reflect", rngs=nnx.Rngs(params=0))


@pytest.mark.parametrize("shape,kernel", [((2, 3, 4, 3), (5, 5, 3)), ((2, 1, 12, 3), (1, 3, 3)), ((1, 2, 3, 2), (5, 3, 2))])
def test_circular_conv_backward_is_the_derivative(shape, kernel):
    """The hand-written backward of the circular convolution (custom VJP, for speed) equals JAX's derivative
    of the plain wrap-padded shifted sum, including kernels wider than the grid (taps that wrap twice)."""
    from recur_jax.core.layers import _circular_conv, _shifted_sum, _wrap_pad

    x = jax.random.normal(jax.random.key(0), shape)
    w = jax.random.normal(jax.random.key(1), kernel)
    g = jax.random.normal(jax.random.key(2), shape)

    def plain(w, x):
        return _shifted_sum(w, _wrap_pad(x, kernel[0] // 2, kernel[1] // 2), shape[1], shape[2])

    np.testing.assert_allclose(np.asarray(_circular_conv(w, x)), np.asarray(plain(w, x)), rtol=1e-5, atol=1e-5)
    got = jax.vjp(_circular_conv, w, x)[1](g)
    want = jax.vjp(plain, w, x)[1](g)
    for a, b in zip(got, want):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-4, atol=1e-4)


def _conv_cfg(**kw):
    base = dict(arch="trm", vocab_size=3, seq_len=24, puzzle_emb_ndim=0, puzzle_emb_len=0, hidden_size=16,
                num_heads=2, H_cycles=1, L_cycles=2, L_layers=1, pos_encodings="none", conv_kernel=3,
                q_head_input="mean", halt_max_steps=2, forward_dtype="float32")
    return ModelConfig(**(base | kw))


@pytest.mark.parametrize("bad,match", [
    (dict(conv_kernel=2), "conv_kernel"), (dict(mlp_t=True), "conv_kernel"), (dict(pos_encodings="rope"), "RoPE"),
    (dict(conv_grid_width=5), "divisor"), (dict(conv_grid_width=4, puzzle_emb_ndim=16), "prefix"),
    (dict(conv_kernel=0, conv_grid_width=4, pos_encodings="rope"), "conv_grid_width"), (dict(q_head_input="max"), "q_head_input"),
    (dict(conv_padding="reflect"), "conv_padding")])
def test_conv_options_are_validated(bad, match):
    with pytest.raises(ValueError, match=match):
        _conv_cfg(**bad)


def test_conv_model_is_local_and_runs_at_any_length():
    """One supervision step of TRM (H_cycles 1, L_cycles 2: 3 calls of one conv layer of width 3) moves
    information 3 positions: on a longer input whose first 24 tokens are the same, the first 24 - 3
    positions' logits are unchanged; the same parameters serve both lengths."""
    cfg = _conv_cfg()
    model = build_model(cfg, nnx.Rngs(params=0))
    long_cfg = cfg.replace(seq_len=40)
    long = build_model(long_cfg, nnx.Rngs(params=0))
    nnx.update(long, nnx.state(model))
    x = jax.random.randint(jax.random.key(0), (2, 40), 1, 3)
    outs = []
    for m, inputs in ((model, x[:, :24]), (long, x)):
        z_H, z_L = m.initial_latents(2)
        outs.append(np.asarray(m(z_H, z_L, inputs, None).logits))
    radius = cfg.H_cycles * (cfg.L_cycles + 1) * cfg.L_layers * (cfg.conv_kernel // 2)
    np.testing.assert_allclose(outs[0][:, :24 - radius], outs[1][:, :24 - radius], rtol=1e-5, atol=1e-5)
    assert not np.allclose(outs[0][:, 24 - radius:], outs[1][:, 24 - radius:24], atol=1e-5)
    per_block = flops.block_flops(cfg, 1)
    inter = 256  # swiglu_intermediate_size(16, 4)
    assert per_block == 2 * 24 * 16 * 3 + 2 * 24 * (16 * 2 * inter + inter * 16)


def test_circular_conv_model_is_translation_equivariant():
    """With conv_padding="circular", no position encoding and the Q head on the mean of z_H, the whole TRM
    step commutes with rolling the input: rolled logits, the same q_halt."""
    model = build_model(_conv_cfg(conv_padding="circular"), nnx.Rngs(params=0))
    x = jax.random.randint(jax.random.key(0), (2, 24), 1, 3)
    outs = []
    for inputs in (x, jnp.roll(x, 7, axis=1)):
        z_H, z_L = model.initial_latents(2)
        outs.append(model(z_H, z_L, inputs, None))
    np.testing.assert_allclose(np.roll(np.asarray(outs[0].logits), 7, axis=1), np.asarray(outs[1].logits),
                               rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(np.asarray(outs[0].q_halt), np.asarray(outs[1].q_halt), rtol=1e-4, atol=1e-4)


@pytest.fixture(scope="module")
def prefix_run(tmp_path_factory):
    """A tiny TRM-conv run on 16-bit prefix sums (a few steps: the tests check the machinery, not skill)."""
    from recur_jax.run.train import train_and_evaluate

    c = tiny(study, "prefix_sum,cpu", **{"data.seq_len": 16, "data.train_lengths": (16, 16),
                                         "data.test_lengths": (16, 16), "model.seq_len": 16,
                                         "model.puzzle_emb_ndim": 0})
    workdir = str(tmp_path_factory.mktemp("prefix"))
    train_and_evaluate(c, workdir)
    return workdir


def test_at_size_shares_the_weights_and_refuses_length_bound_models(prefix_run):
    run = load_for_inference(prefix_run)
    big = at_size(run, 48, H_cycles=3)
    assert (big.model_cfg.seq_len, big.model_cfg.H_cycles) == (48, 3) and big.params is run.params
    assert at_size(run, run.model_cfg.seq_len) is run
    model = nnx.merge(big.graphdef, big.params, big.buffers)
    z_H, z_L = model.initial_latents(2)
    assert model(z_H, z_L, jnp.ones((2, 48), jnp.int32), None).logits.shape == (2, 48, 3)
    for field, value in (("pos_encodings", "learned"), ("mlp_t", True)):
        cfg = _conv_cfg(conv_kernel=0, **{field: value}, **({"pos_encodings": "none"} if field == "mlp_t" else {}))
        bound = dataclasses.replace(run, model_cfg=cfg)
        with pytest.raises(ValueError, match=field):
            at_size(bound, 48)


def test_curve_summary_reads_the_point_of_solution_and_the_overthinking_check():
    s = extrapolation.curve_summary([0.0, 0.5, 0.995, 1.0, 1.0, 1.0, 1.0, 1.0, 0.9, 0.8, 0.7, 0.6])
    assert (s["best"], s["best_step"], s["solved_step"], s["budget"], s["final"]) == (1.0, 4, 3, 12, 0.6)
    assert (s["overthink_step"], s["overthink"]) == (12, 0.6)
    assert extrapolation.curve_summary([0.1, 0.2])["overthink"] is None  # 4 x step 2 is beyond the budget
    with pytest.raises(ValueError):
        extrapolation.curve_summary([])


def test_sizes_are_evaluated_reused_and_reported(prefix_run, tmp_path):
    plan = [{"size": n, "overrides": {"data.seq_len": n, "data.test_lengths": (n, n), "data.num_test": 8,
                                      "eval.max_examples": 8, "eval.global_batch_size": 8,
                                      "eval.halt_max_steps": steps}} for n, steps in ((16, 3), (40, 6))]
    lines = []
    res = extrapolation.evaluate_sizes(prefix_run, plan, log=lines.append)
    assert [len(res["sizes"][n]["by_step"]) for n in ("16", "40")] == [3, 6]
    assert res["sizes"]["40"]["seq_len"] == 40 and len(lines) == 2
    summary = os.path.join(prefix_run, "evals", "size40", "summary.json")
    mtime = os.path.getmtime(summary)
    again = extrapolation.evaluate_sizes(prefix_run, plan, log=lines.append)  # reused, not recomputed
    assert os.path.getmtime(summary) == mtime and again["sizes"] == res["sizes"]
    paths = extrapolation.report(str(tmp_path), [res, res], ["a", "b"], train_size=16)
    md = open(paths["md"]).read()
    assert "| a |" in md and "n=40" in md and "overthinking" in md.lower()
    assert all(os.path.getsize(p) > 0 for p in [paths["png_sizes"], *paths["png_steps"], paths["png_train"]])
    assert json.load(open(paths["json"]))["labels"] == ["a", "b"]


def test_rows_over_seeds_are_grouped_and_summarised(tmp_path):
    def run(*finals, valid=None):
        sizes = {}
        for n, f in zip((6, 12), finals):
            sizes[str(n)] = {"by_step": [f / 2, f], "seq_len": n, "examples": 64, "token_accuracy": None,
                             **extrapolation.curve_summary([f / 2, f])}
            if valid is not None:
                sizes[str(n)]["path_valid"] = valid
        return {"workdir": str(tmp_path / "none"), "config": {}, "sizes": sizes}

    labels = ["trm_conv", "trm_conv_seed1", "trm_conv_seed2", "onepass", "x_seed"]
    assert extrapolation.seed_groups(labels) == {"trm_conv": [0, 1, 2], "onepass": [3], "x_seed": [4]}
    results = [run(1.0, 0.5, valid=0.5), run(0.8, 0.2, valid=0.25), run(0.9, 0.8, valid=0.75), run(0.0, 0.0),
               run(0.1, 0.1)]
    summary = extrapolation.seed_summary(results, labels)
    assert list(summary) == ["trm_conv"]  # rows with one run have no spread to report
    e = summary["trm_conv"]["12"]
    assert e["runs"] == 3 and e["values"] == [0.5, 0.2, 0.8] and (e["min"], e["max"]) == (0.2, 0.8)
    assert e["mean"] == pytest.approx(0.5) and e["std"] == pytest.approx(np.std([0.5, 0.2, 0.8]))
    assert e["path_valid_mean"] == pytest.approx(0.5)
    written = extrapolation.report(str(tmp_path), results, labels, train_size=6)
    md = open(written["md"]).read()
    assert "## Over seeds" in md and "| trm_conv: over seeds | 0.900 [0.800, 1.000] (3 runs, valid 0.500) | " \
        "0.500 [0.200, 0.800] (3 runs, valid 0.500) |" in md
    assert json.load(open(written["json"]))["over_seeds"]["trm_conv"]["6"]["mean"] == pytest.approx(0.9)
    assert "trm_conv: over seeds" in open(written["html"]).read()
    one = extrapolation.report(str(tmp_path / "one"), results[3:4], labels[3:4], train_size=6)
    assert "Over seeds" not in open(one["md"]).read()


def test_the_study_defines_its_rows_sizes_and_budgets():
    for task in ("prefix_sum", "addition", "maze"):
        runs = study.get_sweep(f"{task},cpu")
        assert [r["_name"] for r in runs] == study.row_labels(f"{task},cpu")
        plan = study.get_eval_plan(f"{task},cpu")
        assert [p["size"] for p in plan] == list(study.TEST_SIZES[task])
        N = study.get_config(task).model.halt_max_steps
        for p in plan:  # at least the training budget scaled with the distance to cover (a maze's area)
            scale = p["size"] / study.TRAIN_SIZE[task]
            assert p["overrides"]["eval.halt_max_steps"] >= N * (scale ** 2 if task == "maze" else scale)
    with pytest.raises(ValueError, match="one task"):
        study.get_config("prefix_sum,addition")
    runs = study.get_sweep("maze,cpu,seeds3")  # every row with seeds 0..2; seed 0 keeps the row's own name
    assert [(r["_name"], r["seed"]) for r in runs] == [
        ("trm_conv", 0), ("trm_conv_seed1", 1), ("trm_conv_seed2", 2),
        ("onepass_params", 0), ("onepass_params_seed1", 1), ("onepass_params_seed2", 2)]
    assert study.row_labels("maze,cpu,seeds3") == [r["_name"] for r in runs]
    with pytest.raises(ValueError, match="one of the seedsK args"):
        study.num_seeds("maze,seeds2,seeds3")
    with pytest.raises(ValueError, match="unknown args"):
        study.get_sweep("maze,seeds1")


@pytest.mark.parametrize("cells", [3, 9, 20])
def test_mazes_of_any_size_have_valid_optimal_answers(cells):
    from recur_jax.tasks import maze

    s = maze.generate(6, 1, min_path=2 * cells, cells=cells)
    side = 2 * cells
    assert s.questions.shape == (6, side * side) and maze.board_side(s.questions[0]) == side
    for q, a, length in zip(s.questions, s.answers, s.path_lengths):
        assert maze.path_validity(q, a) == (True, True) and length >= 2 * cells
        assert maze.shortest_path(q)[0] == length
        q8, a8 = maze.augment(q, a, 5)
        assert maze.path_validity(q8, a8) == (True, True)
    with pytest.raises(ValueError, match="square"):
        maze.board_side(np.zeros(10))


def test_a_maze_task_of_another_size_gives_the_board_to_the_2d_convolution(tmp_path):
    from recur_jax.tasks.registry import build_task

    c = study.get_config("maze,cpu")
    c.data.num_train, c.data.num_test, c.data.cells = 8, 4, 5
    task = build_task(c.data, str(tmp_path))
    assert (task.seq_len, task.grid_width) == (100, 10) and task.test[0]["question"].shape == (100,)
    assert c.model.conv_grid_width == 2 * study.TRAIN_SIZE["maze"]


def test_launch_extrapolate_errors_are_one_line(tmp_path):
    import subprocess
    import sys

    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    base = [sys.executable, "-m", "launch.extrapolate", "--config=experiments/ablations/extrapolation.py:prefix_sum,cpu",
            f"--root={tmp_path}"]
    env = dict(os.environ, XLA_FLAGS="")
    out = subprocess.run(base, cwd=repo, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 1 and out.stderr.strip().splitlines()[-1].startswith("error: no finished run")
    assert "trm_conv: not finished" in out.stdout
    out = subprocess.run(base + ["--only=trm_cnv"], cwd=repo, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 2 and "unknown rows ['trm_cnv']" in out.stderr


def test_without_halting_in_training_every_row_runs_the_budget():
    from recur_jax.core import act

    cfg = _conv_cfg(halt_max_steps=4, halt_in_training=False)
    policy = act.HaltingPolicy.for_training(cfg)
    assert policy.training and not policy.early_halt
    steps = jnp.array([1, 2, 3, 4])
    q_halt = jnp.full((4,), 5.0)  # the Q head says halt everywhere
    halted, is_last = act.halting(steps, q_halt, -q_halt, policy, jax.random.key(0))
    np.testing.assert_array_equal(halted, [False, False, False, True])
    halted, _ = act.halting(steps, q_halt, -q_halt, act.HaltingPolicy.for_training(cfg.replace(halt_in_training=True)),
                            jax.random.key(0))
    assert halted[:3].any()  # the reference's rule halts them early
