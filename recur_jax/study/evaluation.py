"""Evaluating a run's checkpoint at any budget without touching the run (`launch.evaluate`).

With `eval.halt=budget` (default) one pass gives the exact accuracy at every budget 1..N under both
rules: every row running n steps, and each row stopping at its Q head's halt. `eval.halt=q_halt` stops
each batch once all its rows have halted (compute saved) and reports the Q head's rule only.

The run's recorded config (run.json) is the starting point; only `eval.*` and `data.*` fields may be
overridden (another test set, tier, seed or size; another budget; early halting with `eval.halt=q_halt`).
Results go to `<workdir>/evals/<name>/`: `summary.json` (settings, the evaluation with both halting
rules, `exact_accuracy_by_step` 1..N from one pass), `metrics.jsonl` (one line per supervision step) and
`accuracy_by_step.png`. The run's own files (checkpoints, run.json, metrics.jsonl, summary.json, tb/)
are only read; data for a test set other than the run's is built under the evaluation's folder.
"""

from __future__ import annotations

import json
import os
import re
import time
from typing import Any

import jax
import ml_collections

from recur_jax.io.safe_io import write_json_atomic
from recur_jax.run import evaluate
from recur_jax.run.checkpoint import load_for_inference
from recur_jax.study.results import flatten
from recur_jax.tasks.loader import eval_batches
from recur_jax.tasks.registry import build_task

OVERRIDABLE = ("eval", "data")  # config groups an evaluation may change


def config_overrides(recorded: dict[str, Any], now: dict[str, Any]) -> dict[str, Any]:
    """The dotted fields of `now` that differ from the run's `recorded` config.

    Raises:
      ValueError: a changed field outside `eval.*` / `data.*` (one line naming it), or
        `eval.halt_max_steps` set to 0 or less explicitly (a budget of no steps).
    """
    old, new = (flatten(json.loads(json.dumps(d, default=str))) for d in (recorded, now))
    changed = {k: new[k] for k in new if old.get(k, object()) != new[k]}
    for k in changed:
        if k.split(".")[0] not in OVERRIDABLE:
            raise ValueError(f"config.{k}: a training field; an evaluation takes only eval.* and data.* overrides "
                             f"(the run's config is in its run.json)")
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
    out_dir = os.path.join(os.path.abspath(workdir), "evals", name)
    data = ml_collections.ConfigDict(config.data.to_dict())
    if any(k.startswith("data.") for k in overrides) and "data.data_dir" not in overrides:
        data.data_dir = os.path.join(out_dir, "data")  # another test set: built beside the results, not in the run
    task = build_task(data, workdir)
    settings = evaluate.resolve_settings(config, run.model_cfg)
    fn = evaluate.jit_eval_step(run.graphdef, run.model_cfg, settings)
    batches = eval_batches(task.test, global_batch_size=settings.global_batch_size, to_example=task.test_transform,
                           process_index=0, process_count=1, max_examples=settings.max_examples)
    os.makedirs(out_dir, exist_ok=True)
    evaluator = task.make_evaluator(out_dir, True) if task.make_evaluator else None
    t_eval = time.time()
    result = evaluate.evaluate(fn, run.params, run.buffers, run.puzzle_table, batches, evaluator=evaluator,
                               halt=settings.halt)
    summary = {"workdir": os.path.abspath(workdir), "step": run.step, "weights": run.weights,
               "overrides": overrides, "settings": {"halt_max_steps": settings.halt_max_steps,
                                                    "global_batch_size": settings.global_batch_size,
                                                    "max_examples": settings.max_examples, "halt": settings.halt},
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
    tmp = os.path.join(out_dir, "metrics.jsonl.tmp")
    with open(tmp, "w") as f:
        f.write("\n".join(lines) + "\n")
    os.replace(tmp, os.path.join(out_dir, "metrics.jsonl"))
    from recur_jax.study import plots

    summary["plot"] = plots.eval_by_step(budget, h, summary["settings"], os.path.join(out_dir, "accuracy_by_step.png"))
    write_json_atomic(os.path.join(out_dir, "summary.json"), summary, indent=2)


__all__ = ["OVERRIDABLE", "config_overrides", "default_name", "evaluate_run"]
