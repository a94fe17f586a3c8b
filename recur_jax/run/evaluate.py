"""Evaluation: every test batch runs `halt_max_steps` supervision steps from a fresh carry.

As in the reference (TRM.md 7.1, HRM.md 3.4): halting is by the step budget only, so every row runs
exactly N steps and predictions are read after step N; metrics are those of the last step, over rows
that have at least one label. The budget may exceed the training one (test-time compute scaling).
We also report the exact accuracy after each supervision step 1..N (`exact_accuracy_by_step`).

A task may add its own metrics through an evaluator (`Task.make_evaluator`): an object with
`begin()`, `update(batch, preds, q_halt_logits)` (host numpy arrays of the whole global batch) and
`result() -> dict`, e.g. ARC voting and pass@K (`recur_jax.tasks.arc.evaluator`) or the maze path validity
(`recur_jax.tasks.maze.evaluator`); its keys join the result.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from typing import Any, Callable, Protocol

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from flax import nnx

from recur_jax.core import act
from recur_jax.core.losses import IGNORE_LABEL_ID


HALT_MODES = ("budget", "q_halt")
SELECT_RULES = ("q_halt", "vote", "q_halt_vote")
# evaluation fields that older run records lack, with the values that reproduce those runs' evaluation
EVAL_DEFAULTS = {"halt": "budget", "samples": 1, "noise_scale": 0.0, "noise_seed": 0, "select": "q_halt",
                 "halt_threshold": 0.0, "H_cycles": 0}


@dataclasses.dataclass(frozen=True)
class EvalSettings:
    """How a run is evaluated, resolved once (`resolve_settings`) and passed to every evaluator.

    Attributes:
      halt_max_steps: N, supervision steps per test batch (the budget; may exceed training's).
      global_batch_size: rows per evaluation batch.
      max_examples: evaluate at most this many test examples (None: all).
      halt: "budget" (the reference: every row runs N steps, its answer read after step N) or "q_halt"
        (test-time early halting: a row's answer is the one of the first step whose Q head says halt,
        TRM q_halt > 0, HRM q_halt > q_continue; a batch stops once all its rows have halted).
      samples: K trajectories per test example, run as K adjacent rows of the batch (1: deterministic).
      noise_scale: sigma of the Gaussian noise added to z_H and z_L at the start of every supervision step
        (after the reset), in units of the latents' RMS (about 1 after the post-norm); 0: none.
      seed: the noise's PRNG seed, `eval.noise_seed` (a batch's key is fold_in(key(seed), batch index): deterministic).
      halt_threshold: the Q head says halt when q_halt (TRM) or q_halt - q_continue (HRM) exceeds this
        logit (0: the reference's rule; below 0 halts earlier: sigmoid(q_halt) > sigmoid(threshold)).
      select: the rule whose answer is the headline when samples > 1 (`SELECT_RULES`); every rule is
        measured in the same pass (`select_answers`).
    """

    halt_max_steps: int
    global_batch_size: int
    max_examples: int | None
    halt: str = "budget"
    samples: int = 1
    noise_scale: float = 0.0
    seed: int = 0
    select: str = "q_halt"
    halt_threshold: float = 0.0

    def halting(self, model_cfg) -> act.HaltingPolicy:
        """The halting policy of this evaluation (`act.HaltingPolicy.for_evaluation`)."""
        return act.HaltingPolicy.for_evaluation(model_cfg, self.halt_max_steps)


def resolve_settings(config: ml_collections.ConfigDict, model_cfg, **overrides: Any) -> EvalSettings:
    """The one rule for the evaluation settings: `config.eval.X`, where 0 means the default.

    halt_max_steps 0: the model's `halt_max_steps` (training's budget); global_batch_size 0: the training
    `global_batch_size`; max_examples 0: the whole test set; halt: "budget" (default) or "q_halt";
    samples (1), noise_scale (0), noise_seed (0), select ("q_halt"): sampled trajectories.

    Args:
      config: a training config (or a run's recorded one); model_cfg: its ModelConfig.
      overrides: values that replace the config's before the rule (e.g. `halt_max_steps=32`).
    Raises:
      ValueError: a negative value, an unknown halt mode, or an override that names no evaluation setting.
    """
    ev = config.eval
    kinds = {"halt_max_steps": int, "global_batch_size": int, "max_examples": int, "halt": str, "samples": int,
             "noise_scale": float, "noise_seed": int, "select": str, "halt_threshold": float}
    values: dict[str, Any] = {k: t(ev.get(k, EVAL_DEFAULTS.get(k))) for k, t in kinds.items()}
    for k, v in overrides.items():
        if k not in values:
            raise ValueError(f"evaluation setting {k!r}: expected one of {sorted(values)}")
        values[k] = kinds[k](v)
    for k in ("halt_max_steps", "global_batch_size", "max_examples", "noise_seed"):
        if values[k] < 0:
            raise ValueError(f"eval.{k}={values[k]}: expected an integer >= 0 (0: the default)")
    if values["halt"] not in HALT_MODES:
        raise ValueError(f"eval.halt={values['halt']!r}: expected one of {list(HALT_MODES)}")
    if values["select"] not in SELECT_RULES:
        raise ValueError(f"eval.select={values['select']!r}: expected one of {list(SELECT_RULES)}")
    if not np.isfinite(values["halt_threshold"]):
        raise ValueError(f"eval.halt_threshold={values['halt_threshold']}: expected a finite logit")
    if values["samples"] < 1 or not (np.isfinite(values["noise_scale"]) and values["noise_scale"] >= 0):
        raise ValueError(f"eval.samples={values['samples']}, eval.noise_scale={values['noise_scale']}: expected "
                         f"samples >= 1 and a finite noise_scale >= 0")
    return EvalSettings(halt_max_steps=values["halt_max_steps"] or int(model_cfg.halt_max_steps),
                        global_batch_size=values["global_batch_size"] or int(config.global_batch_size),
                        max_examples=values["max_examples"] or None, halt=values["halt"], samples=values["samples"],
                        noise_scale=values["noise_scale"], seed=values["noise_seed"], select=values["select"],
                        halt_threshold=values["halt_threshold"])


class Evaluator(Protocol):
    """A task's extra evaluation (see the module docstring)."""

    def begin(self) -> None: ...

    def update(self, batch: dict[str, np.ndarray], preds: np.ndarray, q_halt_logits: np.ndarray) -> None: ...

    def result(self) -> dict[str, Any]: ...


def to_host(x: jax.Array) -> np.ndarray:
    """The whole (global) array on the host: directly when this process addresses all of it, else
    gathered from every process (`multihost_utils.process_allgather`, tiled)."""
    if getattr(x, "is_fully_addressable", True):
        return np.asarray(x)
    from jax.experimental import multihost_utils

    return np.asarray(multihost_utils.process_allgather(x, tiled=True))


SUM_KEYS = ("count", "accuracy", "exact_accuracy", "q_halt_accuracy", "steps", "lm_loss", "q_halt_loss")


def says_halt(outputs: dict[str, jax.Array], policy: act.HaltingPolicy, threshold: float) -> jax.Array:
    """[B] bool: rows whose Q head says halt at test time, TRM q_halt > threshold, HRM (with the continue
    head) q_halt - q_continue > threshold; `outputs` has q_halt_logits / q_continue_logits [B] float32."""
    q = outputs["q_halt_logits"]
    if not policy.no_ACT_continue:
        q = q - outputs["q_continue_logits"]
    return q > threshold


def eval_batch(graphdef: nnx.GraphDef, params: Any, buffers: Any, puzzle_table: jax.Array | None,
               batch: act.Batch, policy: act.HaltingPolicy, early_exit: bool = False, noise_scale: float = 0.0,
               rng: jax.Array | None = None, halt_threshold: float = 0.0) -> dict[str, jax.Array]:
    """Runs `num_steps` evaluation ACT steps on one batch, pure and jittable, and measures both halting
    rules in the same pass: the budget (every row runs N steps) and the Q head's (a row's answer is the
    one of the first step whose Q head says halt: TRM q_halt > 0, HRM q_halt > q_continue; rows that never
    say so keep their step-N answer).

    Args:
      graphdef, params, buffers: the model split by `nnx.split(model, nnx.Param, Buffer)`
        (pass the EMA parameters to evaluate the EMA model).
      puzzle_table: [num_ids, ndim] float32 or None.
      batch: inputs/labels [B, S] int32, puzzle_identifiers [B] int32.
      policy: the evaluation halting policy (`EvalSettings.halting`): N = policy.halt_max_steps steps.
      early_exit: stop the batch once every row has halted by its Q head (`lax.while_loop`; the budget
        quantities of the steps not run are then those of the last step run). False: a `lax.scan` of N.
      noise_scale, rng: Gaussian noise of this sigma added to z_H and z_L at the start of every step
        (key fold_in(rng, step)); 0 (or no rng): the deterministic evaluation.
      halt_threshold: the Q head's rule halts when q_halt (HRM: q_halt - q_continue) > this logit.
    Returns:
      dict with the last step's metric sums (SUM_KEYS, float32 scalars), `exact_by_step` [N] float32
      (rows exactly correct after each step, among rows with labels), `preds` [B, S] int32 (argmax
      after step N), `q_halt_logits` [N, B] float32, `seq_correct` [B] bool; and for the Q head's rule
      `exact_halt_by_step` [N] float32 (exact rows when the budget is n = 1..N and a row stops at its
      halting step), `halt_step` [B] int32 (first step the Q head said halt; N + 1: never), `preds_halt`
      [B, S] int32, `steps_run` int32 (steps this batch ran).
    """
    num_steps = policy.halt_max_steps
    model = nnx.merge(graphdef, params, buffers)
    H_init, L_init = model.H_init[...], model.L_init[...]
    mask = batch["labels"] != IGNORE_LABEL_ID
    has_labels = jnp.any(mask, axis=-1)
    rows = None if puzzle_table is None else jnp.take(puzzle_table, batch["puzzle_identifiers"], axis=0)
    B = batch["labels"].shape[0]

    def step(state, t):
        carry, halt_step, preds_halt, correct_halt = state
        carry = act.reset_carry(carry, batch, H_init, L_init)
        if noise_scale and rng is not None:
            kh, kl = jax.random.split(jax.random.fold_in(rng, t))
            carry = carry.replace(
                z_H=carry.z_H + (noise_scale * jax.random.normal(kh, carry.z_H.shape)).astype(carry.z_H.dtype),
                z_L=carry.z_L + (noise_scale * jax.random.normal(kl, carry.z_L.shape)).astype(carry.z_L.dtype))
        _, (carry, outputs, metrics) = act.act_forward(model, carry, rows, policy)
        preds = jnp.argmax(outputs["logits"], axis=-1).astype(jnp.int32)
        correct = jnp.all(jnp.where(mask, preds == batch["labels"], True), axis=-1)
        q_halt = outputs["q_halt_logits"]
        first = says_halt(outputs, policy, halt_threshold) & (halt_step > num_steps)
        halt_step = jnp.where(first, t + 1, halt_step)
        preds_halt = jnp.where(first[:, None], preds, preds_halt)
        correct_halt = jnp.where(first, correct, correct_halt)
        stopped = halt_step <= num_steps
        exact = jnp.sum(correct & has_labels).astype(jnp.float32)
        exact_halt = jnp.sum(jnp.where(stopped, correct_halt, correct) & has_labels).astype(jnp.float32)
        return (carry, halt_step, preds_halt, correct_halt), (metrics, exact, exact_halt, preds, q_halt, correct)

    state0 = (act.initial_carry(model, batch), jnp.full((B,), num_steps + 1, jnp.int32),
              jnp.zeros_like(batch["labels"]), jnp.zeros((B,), bool))
    if not early_exit:
        (_, halt_step, preds_halt, _), ys = jax.lax.scan(step, state0, jnp.arange(num_steps, dtype=jnp.int32))
        metrics, exact, exact_halt, preds, q_halt, correct = ys
        out = {k: metrics[k][-1] for k in SUM_KEYS}
        steps_run = jnp.int32(num_steps)
        preds, correct = preds[-1], correct[-1]
    else:
        out, exact, exact_halt, preds, q_halt, correct, halt_step, preds_halt, steps_run = _run_until_halted(
            step, state0, num_steps, has_labels)
    preds_halt = jnp.where((halt_step <= num_steps)[:, None], preds_halt, preds)
    out.update(exact_by_step=exact, preds=preds, q_halt_logits=q_halt, seq_correct=correct,
               exact_halt_by_step=exact_halt, halt_step=halt_step, preds_halt=preds_halt, steps_run=steps_run)
    return out


def _run_until_halted(step, state0, num_steps: int, has_labels: jax.Array):
    """`step` under a `lax.while_loop` that stops when every row with labels has halted (or at N); the
    per-step outputs of steps not run repeat the last one run."""
    (_, (metrics0, *_rest)) = jax.eval_shape(step, state0, jnp.int32(0))
    B = has_labels.shape[0]
    bufs = (jnp.zeros((num_steps,), jnp.float32), jnp.zeros((num_steps,), jnp.float32),
            jnp.zeros((num_steps, B), jnp.float32))

    def cond(c):
        t, state, *_ = c
        return (t < num_steps) & jnp.any((state[1] > num_steps) & has_labels)

    def body(c):
        t, state, exact_b, exact_halt_b, q_b, _, _, _ = c
        state, (metrics, exact, exact_halt, preds, q_halt, correct) = step(state, t)
        return (t + 1, state, exact_b.at[t].set(exact), exact_halt_b.at[t].set(exact_halt), q_b.at[t].set(q_halt),
                {k: metrics[k] for k in SUM_KEYS}, preds, correct)

    zero_metrics = {k: jnp.zeros((), metrics0[k].dtype) for k in SUM_KEYS}
    init = (jnp.int32(0), state0, *bufs, zero_metrics, jnp.zeros_like(state0[2]), jnp.zeros((B,), bool))
    t, state, exact_b, exact_halt_b, q_b, metrics, preds, correct = jax.lax.while_loop(cond, body, init)
    idx = jnp.arange(num_steps)
    last = jnp.maximum(t - 1, 0)
    fill = lambda x: jnp.where((idx < t).reshape((-1,) + (1,) * (x.ndim - 1)), x, x[last])  # noqa: E731
    return (metrics, fill(exact_b), fill(exact_halt_b), preds, fill(q_b), correct, state[1], state[2], t)


def jit_eval_step(graphdef: nnx.GraphDef, model_cfg, settings: EvalSettings, compute_shardings: Any = None,
                  in_shardings: Any = None, out_shardings: Any = None) -> Callable[..., dict[str, jax.Array]]:
    """`eval_batch` jitted with the graph and policy bound: (params, buffers, puzzle_table, batch[, rng]) -> dict
    (`rng`: the noise key when `settings.noise_scale` > 0).

    Args:
      compute_shardings: the parameters are constrained to these inside (FSDP all-gather), or None.
      in_shardings, out_shardings: as `jax.jit` (None: placement by the inputs).
    """
    policy = settings.halting(model_cfg)
    early_exit = settings.halt == "q_halt"

    def step(params, buffers, table, batch, rng=None):
        if compute_shardings is not None:
            params = jax.lax.with_sharding_constraint(params, compute_shardings)
        return eval_batch(graphdef, params, buffers, table, batch, policy, early_exit=early_exit,
                          noise_scale=settings.noise_scale, rng=rng, halt_threshold=settings.halt_threshold)

    kw = {} if in_shardings is None else {"in_shardings": in_shardings, "out_shardings": out_shardings}
    return jax.jit(step, **kw)


def select_answers(answers: np.ndarray, confidence: np.ndarray, rule: str) -> np.ndarray:
    """Which of K sampled answers each example keeps (arXiv 2605.19943: the Q head picks among trajectories).

    Args:
      answers: [P, K, S] int answers of P examples; confidence: [P, K] float q_halt logits of each answer.
      rule: "q_halt" (the most confident answer), "vote" (the most frequent answer; ties: the first sample
        giving one of them), "q_halt_vote" (the most frequent; ties: the most confident).
    Returns:
      [P] int64 indices into K.
    Raises:
      ValueError: an unknown rule.
    """
    if rule not in SELECT_RULES:
        raise ValueError(f"select rule {rule!r}: expected one of {list(SELECT_RULES)}")
    if rule == "q_halt":
        return np.argmax(confidence, axis=1)
    P, K, _ = answers.shape
    out = np.zeros(P, np.int64)
    for p in range(P):
        _, first, inverse, counts = np.unique(answers[p], axis=0, return_index=True, return_inverse=True,
                                              return_counts=True)
        votes = counts[inverse.reshape(-1)]  # [K]: how many samples gave this sample's answer
        tied = votes == votes.max()
        if rule == "vote":
            out[p] = int(np.flatnonzero(tied)[0])
        else:
            out[p] = int(np.flatnonzero(tied)[np.argmax(confidence[p][tied])])
    return out


def evaluate(eval_fn: Callable[..., dict[str, jax.Array]], params: Any, buffers: Any,
             puzzle_table: jax.Array | None, batches: Iterable[tuple[dict, int]],
             put_batch: Callable[[dict], act.Batch] = lambda b: b,
             evaluator: Evaluator | None = None, settings: EvalSettings | None = None) -> dict[str, Any]:
    """Runs `eval_fn` (a jitted `eval_batch` with graphdef and num_steps bound) over all batches.

    Args:
      eval_fn: (params, buffers, puzzle_table, batch[, rng]) -> the dict of `eval_batch`.
      batches: yields (local batch of numpy arrays, real rows in the global batch).
      put_batch: places a local numpy batch on the devices (sharding).
      evaluator: a task evaluator; it sees every global batch (inputs, labels, puzzle_identifiers),
        the answers [B, S] (after step N, or at the halting step with halt="q_halt"; with samples > 1 the
        selected ones, or all B x K rows when the evaluator has `votes_over_samples = True`, as ARC's
        augmentation vote does) and the last step's q_halt logits [B], and its `result()` keys are added.
      settings: `halt` (which rule gives the headline figures: "budget", the reference, or "q_halt"),
        `samples` / `noise_scale` / `seed` / `select` (K noisy trajectories per example, run as K rows
        each); None: the reference's evaluation.
    Returns:
      {"count": examples with labels, "exact_accuracy", "accuracy", "q_halt_accuracy", "steps" (mean),
       "lm_loss" (mean per example), "exact_accuracy_by_step": [N] list, "halting": the Q head's rule
       (`exact_accuracy`, `exact_accuracy_by_budget` [N], `steps_mean`, `steps_mean_by_budget` [N],
       `steps_histogram` [N + 1]: rows first halting at step 1..N, then never, `steps_run_mean`: steps the
       batches ran)}, floats, plus the evaluator's keys. With halt="q_halt", `exact_accuracy`,
       `exact_accuracy_by_step` and `steps` are the Q head's; `accuracy` and the losses stay those of the
       last step run. With samples K > 1, the per-row figures are means over the K rows of an example,
       `exact_accuracy` is that of the answer `select` keeps, and `sampling` holds `samples`,
       `noise_scale`, `select`, `exact_accuracy_by_select` (every rule), `exact_accuracy_per_sample` and
       `pass_at_k` (any of the K answers exact: the ceiling of a selection rule).
    """
    settings = settings or EvalSettings(halt_max_steps=0, global_batch_size=0, max_examples=None)
    halt, K = settings.halt, settings.samples
    sums: dict[str, float] = {k: 0.0 for k in SUM_KEYS}
    by_step = by_step_halt = hist = None
    steps_run, n_batches = 0.0, 0
    chosen_exact = {r: 0.0 for r in SELECT_RULES}
    any_exact = 0.0
    if evaluator is not None:
        evaluator.begin()
    for i, (batch, _) in enumerate(batches):
        rows = {k: np.repeat(v, K, axis=0) for k, v in batch.items()} if K > 1 else batch
        device_batch = put_batch(rows)
        extra = (jax.random.fold_in(jax.random.key(settings.seed), i),) if settings.noise_scale else ()
        out = eval_fn(params, buffers, puzzle_table, device_batch, *extra)
        host = {k: to_host(v) for k, v in device_batch.items()}
        answers = to_host(out["preds_halt"] if halt == "q_halt" else out["preds"])
        q = to_host(out["q_halt_logits"])  # [N, rows]
        labelled = np.any(host["labels"] != IGNORE_LABEL_ID, axis=-1)
        if K > 1:
            answer_step = np.minimum(to_host(out["halt_step"]), q.shape[0]) if halt == "q_halt" else q.shape[0]
            conf = q[answer_step - 1, np.arange(q.shape[1])].reshape(-1, K)
            A = answers.reshape(-1, K, answers.shape[-1])
            labels = host["labels"].reshape(-1, K, answers.shape[-1])[:, 0]
            mask = labels != IGNORE_LABEL_ID
            ok = np.all(np.where(mask[:, None], A == labels[:, None], True), axis=-1) & mask.any(-1)[:, None]
            any_exact += float(ok.any(axis=1).sum())
            for rule in SELECT_RULES:
                idx = select_answers(A, conf, rule)
                chosen_exact[rule] += float(ok[np.arange(len(idx)), idx].sum())
                if rule == settings.select:
                    picked = A[np.arange(len(idx)), idx]
            if evaluator is not None and getattr(evaluator, "votes_over_samples", False):
                evaluator.update(host, answers, q[-1])  # every sample joins the evaluator's vote (ARC)
            elif evaluator is not None:
                evaluator.update({k: v[::K] for k, v in host.items()}, picked, q[-1][::K])
        elif evaluator is not None:
            evaluator.update(host, answers, q[-1])
        for k in SUM_KEYS:
            sums[k] += float(out[k]) / K
        e, eh = (np.asarray(out[k], np.float64) / K for k in ("exact_by_step", "exact_halt_by_step"))
        by_step = e if by_step is None else by_step + e
        by_step_halt = eh if by_step_halt is None else by_step_halt + eh
        h = np.bincount(to_host(out["halt_step"])[labelled] - 1, minlength=len(e) + 1).astype(np.float64) / K
        hist = h if hist is None else hist + h
        steps_run += float(out["steps_run"])
        n_batches += 1
    n = max(sums["count"], 1.0)
    result: dict[str, Any] = {"count": int(round(sums["count"]))}
    for k in ("exact_accuracy", "accuracy", "q_halt_accuracy", "steps", "lm_loss", "q_halt_loss"):
        result[k] = sums[k] / n
    result["exact_accuracy_by_step"] = [] if by_step is None else [float(x) / n for x in by_step]
    if by_step is not None:
        result["halting"] = halting_summary(by_step_halt / n, hist, steps_run / max(n_batches, 1))
        if halt == "q_halt":
            result.update(exact_accuracy=result["halting"]["exact_accuracy"], steps=result["halting"]["steps_mean"],
                          exact_accuracy_by_step=result["halting"]["exact_accuracy_by_budget"])
    if K > 1:
        per_sample = result["exact_accuracy"]
        result["sampling"] = {"samples": K, "noise_scale": settings.noise_scale, "select": settings.select,
                              "seed": settings.seed,
                              "exact_accuracy_by_select": {r: v / n for r, v in chosen_exact.items()},
                              "exact_accuracy_per_sample": per_sample, "pass_at_k": any_exact / n}
        result["exact_accuracy"] = chosen_exact[settings.select] / n
    if evaluator is not None:
        result.update(evaluator.result())
    return result


def halting_summary(exact_by_budget: np.ndarray, histogram: np.ndarray, steps_run_mean: float) -> dict[str, Any]:
    """The Q head's halting rule over a test set.

    Args:
      exact_by_budget: [N] exact accuracy when a row stops at its halting step or at budget n = 1..N.
      histogram: [N + 1] rows whose Q head first said halt at step 1..N, then rows that never did.
      steps_run_mean: supervision steps the batches ran on average (the compute spent).
    Returns:
      exact_accuracy (budget N), exact_accuracy_by_budget [N], steps_mean (steps used per row at budget
      N), steps_mean_by_budget [N], steps_histogram [N + 1] (counts), never_halted (fraction),
      steps_run_mean.
    """
    N = len(exact_by_budget)
    total = max(float(histogram.sum()), 1.0)
    first = np.arange(1, N + 2, dtype=np.float64)  # the halting step of each bin; N + 1: never
    by_budget = [float(np.sum(histogram * np.minimum(first, n)) / total) for n in range(1, N + 1)]
    return {"exact_accuracy": float(exact_by_budget[-1]), "exact_accuracy_by_budget": [float(x) for x in exact_by_budget],
            "steps_mean": by_budget[-1], "steps_mean_by_budget": by_budget,
            "steps_histogram": [float(x) for x in histogram], "never_halted": float(histogram[-1] / total),
            "steps_run_mean": float(steps_run_mean)}


def jit_stream_step(graphdef: nnx.GraphDef, model_cfg, settings: EvalSettings) -> Callable[..., tuple]:
    """One supervision step of continuous batching (`stream_halting`), jitted: halted rows take new examples.

    The returned function maps (params, buffers, puzzle_table, carry, batch, refill) to (carry, preds,
    done, steps): `refill` [B] bool marks the rows that restart from H_init/L_init with their row of
    `batch` (inputs/labels [B, S] int32, puzzle_identifiers [B] int32) before the step runs (the ACT
    carry's reset, `act.reset_carry`); `preds` [B, S] int32 is the argmax after the step; `done` [B] bool
    marks rows whose Q head says halt (TRM q_halt, HRM q_halt - q_continue, above
    `settings.halt_threshold`) or that reached `settings.halt_max_steps`; `steps` [B] int32 counts each
    row's steps on its current example. The carry argument is donated.
    """
    policy = settings.halting(model_cfg)
    N = policy.halt_max_steps

    def step(params, buffers, table, carry, batch, refill):
        model = nnx.merge(graphdef, params, buffers)
        carry = act.reset_carry(carry.replace(halted=refill), batch, model.H_init[...], model.L_init[...])
        ids = carry.current_data["puzzle_identifiers"]
        rows = None if table is None else jnp.take(table, ids, axis=0)
        _, (carry, outputs, _) = act.act_forward(model, carry, rows, policy)
        done = says_halt(outputs, policy, settings.halt_threshold) | (carry.steps >= N)
        preds = jnp.argmax(outputs["logits"], axis=-1).astype(jnp.int32)
        return carry.replace(halted=done), preds, done, carry.steps

    return jax.jit(step, donate_argnums=(3,))


def stream_halting(step_fn: Callable[..., tuple], run_args: tuple, examples: dict[str, np.ndarray],
                   initial_carry: act.ACTCarry) -> dict[str, Any]:
    """Early halting with compaction by continuous batching: the answer of every example at its Q head's
    halt, where a row that halts takes the next example at the next step (as training's ACT carry does),
    so halted rows stop costing compute; only the last examples leave empty rows behind.

    Args:
      step_fn: `jit_stream_step(...)`; run_args: its (params, buffers, puzzle_table).
      examples: inputs/labels [N, S] int32, puzzle_identifiers [N] int32 (host arrays).
      initial_carry: `act.initial_carry` of a batch of B rows (every row halted); B rows run per step.
    Returns:
      dict with `preds` [N, S] int32 (each example's answer at the step it halted), `steps_used` [N]
      int32, `row_steps` (B x steps run, the compute spent, in row-steps) and `steps_run` (calls).
    Raises:
      ValueError: a carry of no rows, or no examples.
    """
    n, batch_size = len(examples["inputs"]), int(initial_carry.halted.shape[0])
    if batch_size < 1 or n < 1:
        raise ValueError(f"stream_halting: batch_size={batch_size}, {n} examples; expected both >= 1")
    slot = np.full(batch_size, -1)  # example index held by each row (-1: empty)
    preds = np.zeros_like(examples["inputs"], dtype=np.int32)
    steps_used = np.zeros(n, np.int32)
    refill, carry, nxt, steps_run = np.ones(batch_size, bool), initial_carry, 0, 0
    batch = {k: np.zeros((batch_size,) + v.shape[1:], np.int32) for k, v in examples.items()}
    while True:
        for r in np.flatnonzero(refill):
            slot[r] = nxt if nxt < n else -1
            if nxt < n:
                for k, v in examples.items():
                    batch[k][r] = v[nxt]
                nxt += 1
        if not (slot >= 0).any():
            break
        carry, p, done, steps = step_fn(*run_args, carry, {k: jnp.asarray(v) for k, v in batch.items()},
                                        jnp.asarray(refill))
        steps_run += 1
        done, p, steps = np.asarray(done), np.asarray(p), np.asarray(steps)
        finished = done & (slot >= 0)
        preds[slot[finished]] = p[finished]
        steps_used[slot[finished]] = steps[finished]
        refill = done | (slot < 0)
    return {"preds": preds, "steps_used": steps_used, "row_steps": batch_size * steps_run, "steps_run": steps_run}
