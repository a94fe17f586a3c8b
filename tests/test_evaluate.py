"""Evaluation with test-time early halting: one pass measures the budget rule and the Q head's rule, and
stopping a batch once every row has halted changes no figure."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from recur_jax.core import act
from recur_jax.core.layers import Buffer
from recur_jax.run import evaluate
from test_analysis import B, N, _setup
from test_train import tiny


def _with_live_q_head(arch, scale):
    """The tiny model with a random Q head (init is weight 0, bias -5: no row would ever halt)."""
    cfg, model, _, _, _, batch, table = _setup(arch)
    rng = np.random.default_rng(3)
    kernel, bias = model.q_head.kernel, model.q_head.bias
    kernel[...] = jnp.asarray(rng.standard_normal(kernel[...].shape) * scale, jnp.float32)
    bias[...] = jnp.zeros_like(bias[...])
    graphdef, params, buffers = nnx.split(model, nnx.Param, Buffer)
    return cfg, graphdef, params, buffers, batch, table


def _run(cfg, graphdef, params, buffers, table, batch, n, early_exit=False):
    return jax.device_get(evaluate.eval_batch(graphdef, params, buffers, table, batch,
                                              act.HaltingPolicy.for_evaluation(cfg, n), early_exit=early_exit))


def test_q_halt_rule_matches_budget_runs_step_by_step():
    """TRM (halt when q_halt > 0): the one-pass answer of each row is its step-k answer, k its first step
    with q_halt > 0; at budget n a row that has not halted answers with its step-n answer."""
    cfg, graphdef, params, buffers, batch, table = _with_live_q_head("trm", 3.0)
    per_n = [_run(cfg, graphdef, params, buffers, table, batch, n) for n in range(1, N + 1)]
    labels = jnp.where(jnp.arange(B)[:, None] % 2 == 0, per_n[1]["preds"], batch["labels"])  # step 2 is right
    batch = dict(batch, labels=labels)
    per_n = [_run(cfg, graphdef, params, buffers, table, batch, n) for n in range(1, N + 1)]
    q = np.stack([r["q_halt_logits"][-1] for r in per_n])  # [N, B]: the trajectory is the same for every budget
    assert 0 < (q > 0).sum() < q.size, q  # some rows halt, some do not
    first = np.where((q > 0).any(0), (q > 0).argmax(0) + 1, N + 1)
    ev = per_n[-1]
    np.testing.assert_array_equal(ev["halt_step"], first)
    for n in range(1, N + 1):
        answer = [per_n[min(first[b], n) - 1]["preds"][b] for b in range(B)]
        exact = sum(np.array_equal(a, np.asarray(labels)[b]) for b, a in enumerate(answer))
        assert ev["exact_halt_by_step"][n - 1] == exact, n
    want = np.stack([per_n[min(first[b], N) - 1]["preds"][b] for b in range(B)])
    np.testing.assert_array_equal(ev["preds_halt"], want)
    np.testing.assert_array_equal(ev["exact_by_step"], [r["exact_by_step"][-1] for r in per_n])  # budget rule


@pytest.mark.parametrize("arch,scale", [("trm", 3.0), ("hrm", 3.0), ("trm", 0.0)])
def test_stopping_once_all_rows_halted_changes_no_figure(arch, scale):
    """The lax.while_loop that exits once every row has halted gives the scan's halting figures; with a Q
    head whose q_halt is +1 for every row (weight 0, bias (1, -1)) it runs one step."""
    cfg, graphdef, params, buffers, batch, table = _with_live_q_head(arch, scale)
    if scale == 0.0:  # every row halts at step 1: q_halt = +1 > 0 (TRM)
        model = nnx.merge(graphdef, params, buffers)
        model.q_head.bias[...] = jnp.asarray([1.0, -1.0], jnp.float32)
        graphdef, params, buffers = nnx.split(model, nnx.Param, Buffer)
    full = _run(cfg, graphdef, params, buffers, table, batch, N)
    fast = _run(cfg, graphdef, params, buffers, table, batch, N, early_exit=True)
    for k in ("halt_step", "preds_halt", "exact_halt_by_step"):
        np.testing.assert_array_equal(fast[k], full[k], err_msg=k)
    halted_by = int(full["halt_step"].max()) if (full["halt_step"] <= N).all() else N
    assert int(fast["steps_run"]) == halted_by and int(full["steps_run"]) == N
    if scale == 0.0:
        assert int(fast["steps_run"]) == 1 and (full["halt_step"] == 1).all()


@pytest.mark.parametrize("arch", ["trm", "hrm"])
def test_continuous_batching_gives_each_example_its_answer_at_its_halt(arch):
    """`stream_halting` (a halted row takes the next example) answers every example as the scan does at
    its Q head's halt, with its halting step, in fewer row-steps than batches of N steps; the batch is
    smaller than the number of examples, so rows are refilled mid-stream."""
    cfg, graphdef, params, buffers, batch, table = _with_live_q_head(arch, 3.0)
    full = _run(cfg, graphdef, params, buffers, table, batch, N)
    assert 1 < int((full["halt_step"] <= N).sum()) < B  # some rows halt early, some never
    settings = evaluate.EvalSettings(halt_max_steps=N, global_batch_size=B, max_examples=None, halt="q_halt")
    fn = evaluate.jit_stream_step(graphdef, cfg, settings)
    rows = B // 2 + 1
    model = nnx.merge(graphdef, params, buffers)
    examples = {k: np.asarray(v) for k, v in batch.items()}
    carry = act.initial_carry(model, {k: v[:rows] for k, v in examples.items()})
    out = evaluate.stream_halting(fn, (params, buffers, table), examples, carry)
    np.testing.assert_array_equal(out["preds"], full["preds_halt"])
    np.testing.assert_array_equal(out["steps_used"], np.minimum(full["halt_step"], N))
    assert out["row_steps"] == rows * out["steps_run"]
    assert out["steps_run"] < N * -(-B // rows)  # fewer calls than ceil(B / rows) batches of N steps
    with pytest.raises(ValueError, match="batch_size=0"):
        no_rows = act.initial_carry(model, {k: v[:0] for k, v in examples.items()})
        evaluate.stream_halting(fn, (params, buffers, table), examples, no_rows)


def test_halting_summary_counts_steps_used_per_budget():
    # 4 rows: halt at step 1, step 2, step 2, never (N = 3)
    hist = np.array([1, 2, 0, 1], np.float64)
    s = evaluate.halting_summary(np.array([0.25, 0.5, 0.5]), hist, steps_run_mean=3.0)
    assert s["steps_histogram"] == [1, 2, 0, 1] and s["never_halted"] == 0.25
    assert s["steps_mean_by_budget"] == [1.0, (1 + 2 + 2 + 2) / 4, (1 + 2 + 2 + 3) / 4]
    assert s["steps_mean"] == 2.0 and s["exact_accuracy"] == 0.5


def test_evaluate_reports_both_rules_and_the_headline_follows_eval_halt():
    cfg, graphdef, params, buffers, batch, table = _with_live_q_head("trm", 3.0)
    host = {k: np.asarray(v) for k, v in batch.items()}
    for halt in ("budget", "q_halt"):
        settings = evaluate.EvalSettings(halt_max_steps=N, global_batch_size=B, max_examples=None, halt=halt)
        fn = evaluate.jit_eval_step(graphdef, cfg, settings)
        res = evaluate.evaluate(fn, params, buffers, table, [(host, B)], settings=settings)
        h = res["halting"]
        assert sum(h["steps_histogram"]) == B and len(h["exact_accuracy_by_budget"]) == N
        if halt == "q_halt":
            assert res["exact_accuracy"] == h["exact_accuracy"] and res["steps"] == h["steps_mean"]
            assert res["exact_accuracy_by_step"] == h["exact_accuracy_by_budget"]
        else:
            assert res["steps"] == N and h["steps_run_mean"] == N


def test_halt_mode_is_validated():
    from recur_jax.run import config as run_config

    c = tiny()
    c.eval.halt = "sometimes"
    with pytest.raises(ValueError, match=r"config\.eval\.halt='sometimes': expected 'budget'"):
        run_config.validate(c, 8)


# ------------------------------------------------------------------------------------------------
# launch.evaluate: a run's checkpoint at another budget, the run's files untouched


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    from recur_jax.run.train import train_and_evaluate

    workdir = tmp_path_factory.mktemp("run")
    train_and_evaluate(tiny(), str(workdir))
    return workdir


def _digests(workdir):
    import hashlib

    return {p.relative_to(workdir): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(workdir.rglob("*"))
            if p.is_file() and "evals" not in p.parts}


def test_evaluate_run_writes_only_under_evals_and_reports_every_budget(tiny_run):
    import json

    import ml_collections

    from recur_jax.study import evaluation

    before = _digests(tiny_run)
    config = ml_collections.ConfigDict(json.loads((tiny_run / "run.json").read_text())["config"])
    config.eval.halt_max_steps = 6  # twice the training budget
    s = evaluation.evaluate_run(str(tiny_run), config)
    assert _digests(tiny_run) == before  # checkpoints, run.json, metrics.jsonl, summary.json, tb/: byte-identical
    out = tiny_run / "evals" / "step6-ema,eval.halt_max_steps=6"
    assert s["overrides"] == {"eval.halt_max_steps": 6} and s["settings"]["halt_max_steps"] == 6
    assert len(s["eval"]["exact_accuracy_by_step"]) == 6 and s["eval"]["count"] == 16
    lines = [json.loads(ln) for ln in (out / "metrics.jsonl").read_text().splitlines()]
    assert [ln["step"] for ln in lines] == [1, 2, 3, 4, 5, 6]
    assert json.loads((out / "summary.json").read_text())["eval"] == s["eval"]
    assert (out / "accuracy_by_step.png").stat().st_size > 10_000
    train_summary = json.loads((tiny_run / "summary.json").read_text())  # the run's own budget-3 result
    assert s["eval"]["exact_accuracy_by_step"][:3] == pytest.approx(train_summary["eval"]["exact_accuracy_by_step"])


@pytest.mark.parametrize("key,value,message", [
    ("optim.lr", 0.5, r"config\.optim\.lr: a training field"),
    ("model.H_cycles", 1, r"config\.model\.H_cycles: a training field"),
    ("eval.halt_max_steps", -1, r"expected a budget of at least 1"),
])
def test_evaluate_run_refuses_training_fields_and_empty_budgets(tiny_run, key, value, message):
    import json

    import ml_collections

    from recur_jax.study import evaluation

    config = ml_collections.ConfigDict(json.loads((tiny_run / "run.json").read_text())["config"])
    group, field = key.split(".")
    config[group][field] = value
    listed = lambda: sorted((tiny_run / "evals").iterdir()) if (tiny_run / "evals").exists() else []  # noqa: E731
    before = listed()
    with pytest.raises(ValueError, match=message):
        evaluation.evaluate_run(str(tiny_run), config)
    assert listed() == before  # nothing written


def test_launch_evaluate_cli_one_line_errors(tiny_run):
    import pathlib
    import subprocess
    import sys

    repo = pathlib.Path(__file__).resolve().parents[1]
    for args, status, needle in [(["--config.optim.lr=0.5"], 2, "a training field"),
                                 (["--config.eval.halt_max_steps=0"], 2, "at least 1"),
                                 (["--config.eval.halt=q_halt", "--config.eval.halt_max_steps=4"], 0, "")]:
        res = subprocess.run([sys.executable, "-m", "launch.evaluate", f"--workdir={tiny_run}", *args], cwd=repo,
                             capture_output=True, text=True, timeout=300)
        assert res.returncode == status, res.stdout[-2000:] + res.stderr[-2000:]
        assert "Traceback" not in res.stderr and "checkpoint_manager" not in res.stderr  # Orbax is quiet
        if status:
            assert needle in res.stderr.strip().splitlines()[-1]
        else:
            assert "stop at the Q head's halt" in res.stdout and "halt=q_halt" in res.stdout


# ------------------------------------------------------------------------------------------------
# Sampled trajectories chosen by the Q head


def test_select_answers_rules():
    a, b, c = [1, 1], [2, 2], [3, 3]
    answers = np.array([[a, b, b, c], [a, b, c, c]])  # [P=2, K=4, S=2]
    conf = np.array([[9.0, 0.0, 1.0, 2.0], [0.0, 5.0, 1.0, 0.5]])
    assert evaluate.select_answers(answers, conf, "q_halt").tolist() == [0, 1]  # the most confident
    assert evaluate.select_answers(answers, conf, "vote").tolist() == [1, 2]  # b twice; c twice
    answers[1] = [a, a, c, c]  # a tie of two answers: vote keeps the first, q_halt_vote the more confident
    assert evaluate.select_answers(answers, conf, "vote").tolist()[1] == 0
    assert evaluate.select_answers(answers, conf, "q_halt_vote").tolist() == [2, 1]
    with pytest.raises(ValueError, match="expected one of"):
        evaluate.select_answers(answers, conf, "best")


def _sampled(cfg, graphdef, params, buffers, table, batch, **kw):
    settings = evaluate.EvalSettings(halt_max_steps=N, global_batch_size=B, max_examples=None, **kw)
    fn = evaluate.jit_eval_step(graphdef, cfg, settings)
    host = {k: np.asarray(v) for k, v in batch.items()}
    return evaluate.evaluate(fn, params, buffers, table, [(host, B)], settings=settings)


class _Recorder:
    def __init__(self, votes_over_samples):
        self.votes_over_samples, self.rows = votes_over_samples, []

    def begin(self):
        pass

    def update(self, batch, preds, q_halt_logits):
        assert len(batch["inputs"]) == len(preds) == len(q_halt_logits)
        self.rows.append(preds)

    def result(self):
        return {}


def test_sampled_answers_feed_a_voting_evaluator_all_k_rows():
    """With K samples an evaluator that votes (ARC) receives all B x K rows; any other the B selected."""
    cfg, graphdef, params, buffers, batch, table = _with_live_q_head("trm", 3.0)
    settings = evaluate.EvalSettings(halt_max_steps=N, global_batch_size=B, max_examples=None, samples=3,
                                     noise_scale=0.3)
    fn = evaluate.jit_eval_step(graphdef, cfg, settings)
    host = {k: np.asarray(v) for k, v in batch.items()}
    voting, selected = _Recorder(True), _Recorder(False)
    for ev in (voting, selected):
        evaluate.evaluate(fn, params, buffers, table, [(host, B)], evaluator=ev, settings=settings)
    assert voting.rows[0].shape[0] == 3 * B and selected.rows[0].shape[0] == B
    chosen = {r.tobytes() for r in selected.rows[0]}
    assert chosen <= {r.tobytes() for r in voting.rows[0]}  # the selected answers are among the samples


def test_sampling_is_deterministic_per_seed_and_noiseless_samples_equal_the_deterministic_run():
    cfg, graphdef, params, buffers, batch, table = _with_live_q_head("trm", 3.0)
    ref = _run(cfg, graphdef, params, buffers, table, batch, N)
    labels = jnp.where(jnp.arange(B)[:, None] % 2 == 0, ref["preds"], batch["labels"])  # half the rows exact
    batch = dict(batch, labels=labels)
    det = _sampled(cfg, graphdef, params, buffers, table, batch)
    same = _sampled(cfg, graphdef, params, buffers, table, batch, samples=3)  # K identical trajectories
    assert same["exact_accuracy"] == det["exact_accuracy"] == 0.5
    assert same["sampling"]["pass_at_k"] == same["sampling"]["exact_accuracy_per_sample"] == 0.5
    assert same["exact_accuracy_by_step"] == pytest.approx(det["exact_accuracy_by_step"])
    noisy = [_sampled(cfg, graphdef, params, buffers, table, batch, samples=4, noise_scale=1.0, seed=s)
             for s in (0, 0, 1)]
    assert noisy[0] == noisy[1]  # the same seed: the same figures
    s0 = noisy[0]["sampling"]
    assert s0["samples"] == 4 and set(s0["exact_accuracy_by_select"]) == set(evaluate.SELECT_RULES)
    assert all(v <= s0["pass_at_k"] + 1e-12 for v in s0["exact_accuracy_by_select"].values())
    assert noisy[0]["count"] == B and sum(noisy[0]["halting"]["steps_histogram"]) == B


def test_compute_report_puts_every_method_on_one_chart(tiny_run):
    import json

    import ml_collections

    from recur_jax.study import evaluation

    before = _digests(tiny_run)
    config = ml_collections.ConfigDict(evaluation.with_eval_defaults(
        json.loads((tiny_run / "run.json").read_text())["config"]))
    config.eval.noise_scale = 0.5
    report = evaluation.compute_report(str(tiny_run), config, [1, 2])
    assert _digests(tiny_run) == before
    methods = [r["method"] for r in report["table"]]
    assert methods.count("fixed budget") == 3 and "early halting (Q head)" in methods
    assert {m for m in methods if m.startswith("samples, ")} >= {"samples, q_halt", "samples, vote"}
    fixed = [r for r in report["table"] if r["method"] == "fixed budget"]
    assert [r["FLOPs / example"] for r in fixed] == pytest.approx([report["flops_per_step"] * n for n in (1, 2, 3)])
    two = [r for r in report["table"] if r["samples K"] == 2]
    assert all(r["FLOPs / example"] == pytest.approx(6 * report["flops_per_step"]) for r in two)
    out = tiny_run / "evals" / "compute-step6-ema"
    assert (out / "compute.png").stat().st_size > 10_000 and "early halting" in (out / "compute.html").read_text()
    assert json.loads((out / "compute.json").read_text())["reference"] == pytest.approx(report["reference"])


def test_solve_with_samples_and_early_halting_is_deterministic_per_seed(tiny_run):
    from recur_jax.inference.solve import solve_puzzles

    puzzle = "..3.2.6..9..3.5..1..18.64....81.29..7.......8..67.82....26.95..8..2.3..9..5.1.3.."
    (a,), (b,) = (solve_puzzles(str(tiny_run), puzzle, samples=3, noise_scale=0.5, seed=0, halt="q_halt")
                  for _ in range(2))
    assert (a.answer == b.answer).all() and a.confidence == b.confidence and a.halt_step == b.halt_step
    assert a.steps == 3 and 0.0 < a.confidence < 1.0
    with pytest.raises(ValueError, match="eval.select='best'"):
        evaluate.resolve_settings(tiny(), _setup("trm")[0], samples=2, select="best")


def test_a_lower_halt_threshold_halts_no_later():
    cfg, graphdef, params, buffers, batch, table = _with_live_q_head("trm", 3.0)
    policy = act.HaltingPolicy.for_evaluation(cfg, N)
    steps = [np.asarray(evaluate.eval_batch(graphdef, params, buffers, table, batch, policy,
                                            halt_threshold=t)["halt_step"]) for t in (2.0, 0.0, -2.0, -50.0)]
    for later, earlier in zip(steps, steps[1:]):
        assert (earlier <= later).all()
    assert (steps[-1] == 1).all()  # every logit exceeds -50: every row halts at step 1
