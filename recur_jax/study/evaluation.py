"""Evaluating a run's checkpoint at any budget without touching the run (`launch.evaluate`).

With `eval.halt=budget` (default) one pass gives the exact accuracy at every budget 1..N under both
rules: every row running n steps, and each row stopping at its Q head's halt. `eval.halt=q_halt` stops
each batch once all its rows have halted (compute saved) and reports the Q head's rule only.

The run's recorded config (run.json) is the starting point; only `eval.*` and `data.*` fields may be
overridden (another test set, tier, seed or size; another budget; early halting with `eval.halt=q_halt`).
Test data of another size (`data.seq_len`, `data.test_lengths`: length extrapolation) or `eval.H_cycles`
rebuilds the model around the same weights (`run.checkpoint.at_size`).
Results go to `<workdir>/evals/<name>/`: `summary.json` (settings, the evaluation with both halting
rules, `exact_accuracy_by_step` 1..N from one pass), `metrics.jsonl` (one line per supervision step) and
`accuracy_by_step.png`. The run's own files (checkpoints, run.json, metrics.jsonl, summary.json, tb/)
are only read; data for a test set other than the run's is built under the evaluation's folder.
"""

from __future__ import annotations

import json
import re
import time
from typing import Any, Sequence

import jax
import ml_collections

from recur_jax.io import paths
from recur_jax.io.safe_io import write_json_atomic
from recur_jax.run import evaluate
from recur_jax.run.checkpoint import at_size, load_for_inference
from recur_jax.study.results import flatten
from recur_jax.tasks.loader import eval_batches
from recur_jax.tasks.registry import build_task

OVERRIDABLE = ("eval", "data")  # config groups an evaluation may change


def with_eval_defaults(config: dict[str, Any]) -> dict[str, Any]:
    """`config` (a run record's dict) with the evaluation fields it predates (`evaluate.EVAL_DEFAULTS`)."""
    out = json.loads(json.dumps(config, default=str))
    out["eval"] = {**evaluate.EVAL_DEFAULTS, **out.get("eval", {})}
    return out


def config_overrides(recorded: dict[str, Any], now: dict[str, Any]) -> dict[str, Any]:
    """The dotted fields of `now` that differ from the run's `recorded` config.

    Raises:
      ValueError: a changed field outside `eval.*` / `data.*` (one line naming it), or
        `eval.halt_max_steps` set to 0 or less explicitly (a budget of no steps).
    """
    old, new = (flatten(with_eval_defaults(d)) for d in (recorded, now))
    changed = {k: new[k] for k in new if old.get(k, object()) != new[k]}
    for k in changed:
        if k.split(".")[0] not in OVERRIDABLE:
            raise ValueError(f"config.{k}: a training field; an evaluation takes only eval.* and data.* overrides "
                             f"(the run's config is in its run.json)")
    if int(changed.get("eval.H_cycles", 0)) < 0:
        raise ValueError(f"config.eval.H_cycles={changed['eval.H_cycles']}: expected 0 (the run's) or a count >= 1")
    if "eval.halt_max_steps" in changed and int(changed["eval.halt_max_steps"]) < 1:
        raise ValueError(f"config.eval.halt_max_steps={changed['eval.halt_max_steps']}: expected a budget of at "
                         f"least 1 supervision step")
    return changed


def default_name(step: int, weights: str, overrides: dict[str, Any]) -> str:
    """`step<S>-<weights>` plus the overrides as `,key=value` (characters outside [A-Za-z0-9._=,-] as _)."""
    text = f"step{step}-{weights}" + "".join(f",{k}={v}" for k, v in sorted(overrides.items()))
    return re.sub(r"[^A-Za-z0-9._=,-]", "_", text)[:200]


def evaluate_run(workdir: str, config: ml_collections.ConfigDict | None = None, *, step: int | None = None,
                 weights: str = "ema", name: str | None = None) -> dict[str, Any]:
    """Evaluates checkpoint `step` (newest by default) of the run in `workdir` and writes the results.

    Args:
      workdir: a training run's directory (run.json + checkpoints/).
      config: the run's config with `eval.*` / `data.*` overrides (None: the run's own).
      step: the checkpoint step; weights: "ema" (when the run has EMA) or "raw".
      name: the folder under `<workdir>/evals/` (default `default_name`).
    Returns:
      The summary written to `<workdir>/evals/<name>/summary.json`: `workdir`, `step`, `weights`,
      `overrides`, `settings` (halt_max_steps N, global_batch_size, max_examples, halt), `eval` (as
      `run.evaluate.evaluate`, with `halting`), `data`, `wall_s`, `eval_s`.
    Raises:
      FileNotFoundError / ValueError / CheckpointError: as `load_for_inference`; ValueError for an override
        of a training field or a budget below 1 (`config_overrides`), and for data that fails validation.
    """
    t0 = time.time()
    run = load_for_inference(workdir, step, weights)
    recorded = run.config.to_dict()
    config = run.config if config is None else config
    overrides = config_overrides(recorded, config.to_dict())
    name = name or default_name(run.step, run.weights, overrides)
    if not re.fullmatch(r"[A-Za-z0-9._=,-]+", name) or name in (".", ".."):
        raise ValueError(f"--name={name!r}: expected letters, digits and . _ = , - only")
    out_dir = paths.join(paths.absolute(workdir), "evals", name)
    data = ml_collections.ConfigDict(config.data.to_dict())
    if any(k.startswith("data.") for k in overrides) and "data.data_dir" not in overrides:
        data.data_dir = paths.local_data_dir(out_dir)  # another test set: beside the results (local), not in the run
    task = build_task(data, workdir)
    run = at_size(run, task.seq_len, task.grid_width, int(config.eval.get("H_cycles", 0)))
    settings = evaluate.resolve_settings(config, run.model_cfg)
    fn = evaluate.jit_eval_step(run.graphdef, run.model_cfg, settings)
    batches = eval_batches(task.test, global_batch_size=settings.global_batch_size, to_example=task.test_transform,
                           process_index=0, process_count=1, max_examples=settings.max_examples)
    paths.makedirs(out_dir)
    evaluator = task.make_evaluator(out_dir, True) if task.make_evaluator else None
    t_eval = time.time()
    result = evaluate.evaluate(fn, run.params, run.buffers, run.puzzle_table, batches, evaluator=evaluator,
                               settings=settings)
    summary = {"workdir": paths.absolute(workdir), "step": run.step, "weights": run.weights,
               "overrides": overrides, "settings": {"halt_max_steps": settings.halt_max_steps,
                                                    "global_batch_size": settings.global_batch_size,
                                                    "max_examples": settings.max_examples, "halt": settings.halt,
                                                    "samples": settings.samples, "noise_scale": settings.noise_scale,
                                                    "select": settings.select, "seed": settings.seed,
                                                    "seq_len": run.model_cfg.seq_len, "H_cycles": run.model_cfg.H_cycles},
               "eval": result, "data": task.describe, "eval_s": time.time() - t_eval, "wall_s": time.time() - t0,
               "devices": jax.device_count()}
    _write(out_dir, summary)
    return summary


def _write(out_dir: str, summary: dict[str, Any]) -> None:
    """summary.json, metrics.jsonl (one line per supervision step) and the accuracy-by-step plot."""
    ev = summary["eval"]
    h = ev["halting"]
    budget = ev["exact_accuracy_by_step"] if summary["settings"]["halt"] == "budget" else None
    lines = [json.dumps({"kind": "eval_step", "step": n + 1,
                         **({"exact_accuracy": budget[n]} if budget is not None else {}),
                         "exact_accuracy_q_halt": acc, "steps_mean_q_halt": h["steps_mean_by_budget"][n],
                         "halted_at_this_step": h["steps_histogram"][n]})
             for n, acc in enumerate(h["exact_accuracy_by_budget"])]
    paths.write_text_atomic(paths.join(out_dir, "metrics.jsonl"), "\n".join(lines) + "\n")
    from recur_jax.study import plots

    summary["plot"] = plots.eval_by_step(budget, h, summary["settings"], paths.join(out_dir, "accuracy_by_step.png"))
    write_json_atomic(paths.join(out_dir, "summary.json"), summary, indent=2)


def compute_report(workdir: str, config: ml_collections.ConfigDict, samples: Sequence[int], *,
                   step: int | None = None, weights: str = "ema", name: str | None = None) -> dict[str, Any]:
    """Exact accuracy against test-time compute for one checkpoint: every method on one chart.

    One evaluation per K in `samples` (K = 1: deterministic, noise off; it gives the fixed-budget curve
    n = 1..N and the Q head's early-halting curve in one pass; K > 1: `config.eval.noise_scale` noise,
    one point per selection rule). FLOPs per example are the analytic forward FLOPs of a supervision step
    (`core.flops.forward_flops`, as the benchmark counts them) x supervision steps x samples.

    Returns:
      The report written to `<workdir>/evals/<name>/compute.json` (with `compute.png` and `compute.html`
      beside it): `table` (rows of method, samples, budget, mean steps used, FLOPs per example, exact
      accuracy), `curves`, `reference` (the deterministic full budget), the per-K evaluation folders.
    Raises:
      ValueError: a K below 1, or as `evaluate_run`.
    """
    from recur_jax.core import flops
    from recur_jax.study import plots

    if not samples or min(samples) < 1:
        raise ValueError(f"samples={list(samples)}: expected integers >= 1")
    base = config.to_dict()
    runs = {}
    for K in sorted(set(int(k) for k in samples)):
        cfg = ml_collections.ConfigDict(base)
        cfg.eval.samples = K
        if K == 1:
            cfg.eval.noise_scale = 0.0
        runs[K] = evaluate_run(workdir, cfg, step=step, weights=weights)
    first = next(iter(runs.values()))
    model_cfg = load_model_config(workdir)
    per_step = float(flops.forward_flops(model_cfg, 1))
    N = first["settings"]["halt_max_steps"]
    table, curves = [], {}
    if 1 in runs:
        ev = runs[1]["eval"]
        h = ev["halting"]
        curves["fixed budget n (K = 1)"] = [(n * per_step, a) for n, a in enumerate(ev["exact_accuracy_by_step"], 1)]
        curves["early halting at the Q head (K = 1)"] = [
            (u * per_step, a) for u, a in zip(h["steps_mean_by_budget"], h["exact_accuracy_by_budget"])]
        table += [("fixed budget", 1, n, n, n * per_step, a) for n, a in enumerate(ev["exact_accuracy_by_step"], 1)]
        table.append(("early halting (Q head)", 1, N, h["steps_mean"], h["steps_mean"] * per_step, h["exact_accuracy"]))
    for rule in evaluate.SELECT_RULES:
        pts = []
        for K, r in runs.items():
            sm = r["eval"].get("sampling")
            acc = sm["exact_accuracy_by_select"][rule] if sm else r["eval"]["exact_accuracy"]
            pts.append((N * K * per_step, acc))
            if sm:
                table.append((f"samples, {rule}", K, N, N, N * K * per_step, acc))
        curves[f"K samples (noise {base['eval']['noise_scale']:g}), chosen by {rule}"] = pts
    for K, r in runs.items():
        if "sampling" in r["eval"]:
            table.append(("samples, any correct (pass@K)", K, N, N, N * K * per_step, r["eval"]["sampling"]["pass_at_k"]))
    reference = (N * per_step, runs[min(runs)]["eval"]["exact_accuracy_by_step"][-1])
    name = name or f"compute-step{first['step']}-{first['weights']}"
    out_dir = paths.join(paths.absolute(workdir), "evals", name)
    paths.makedirs(out_dir)
    png = plots.test_time_compute_report(curves, reference, paths.join(out_dir, "compute.png"))
    columns = ["method", "samples K", "budget N", "mean steps used", "FLOPs / example", "exact accuracy"]
    rows = [(m, k, n, f"{u:.2f}", f"{f:.3g}", f"{a:.4f}") for m, k, n, u, f, a in table]
    hist_png = first["plot"]
    page = plots.html_page(f"Test-time compute, {workdir} step {first['step']}", columns, rows, [png, hist_png],
                           notes=[f"FLOPs per supervision step per example: {per_step:.3g} (analytic forward FLOPs). "
                                  f"The star is the reference's evaluation: deterministic, every row runs N = {N} "
                                  f"steps."])
    paths.write_text_atomic(paths.join(out_dir, "compute.html"), page)
    if paths.dirname(hist_png) != out_dir:
        paths.copy(hist_png, paths.join(out_dir, paths.basename(hist_png)))
    report = {"table": [dict(zip(columns, r)) for r in table], "curves": {k: list(map(list, v)) for k, v in curves.items()},
              "reference": list(reference), "flops_per_step": per_step,
              "evaluations": {str(K): paths.dirname(r["plot"]) for K, r in runs.items()}, "png": png}
    write_json_atomic(paths.join(out_dir, "compute.json"), report, indent=2)
    return report


def load_model_config(workdir: str):
    """The ModelConfig of the run in `workdir` (from run.json)."""
    from recur_jax.core.models import ModelConfig
    from recur_jax.run.checkpoint import read_run_record

    return ModelConfig.from_dict(read_run_record(workdir)["config"]["model"])


__all__ = ["OVERRIDABLE", "compute_report", "config_overrides", "default_name", "evaluate_run", "with_eval_defaults"]
