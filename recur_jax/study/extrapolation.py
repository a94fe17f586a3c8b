"""Length extrapolation: evaluate trained runs on larger instances at growing test-time budgets.

For each finished run of a study and each test size, one evaluation (`study.evaluation.evaluate_run`,
written to `RUN/evals/size<n>/`) at the size's budget N gives the exact accuracy after every
supervision step 1..N: accuracy against test-time steps (one curve per size), the accuracy at the
budget, the best accuracy and the first step that reaches it. The overthinking check (Bansal et al.
2022, arXiv 2202.05826) reads the curve at 4x that step: a solver that has learned a stable algorithm
keeps its answer when iterated far beyond the point of solution.

The plan (sizes, budgets, examples) comes from the experiment file's `get_eval_plan(arg)`; the report
(`<root>/extrapolation/`: report.json, report.md, report.html, one PNG of accuracy against steps per
run and one of accuracy against size) from `report`.
"""

from __future__ import annotations

import json
import re
import statistics
from typing import Any, Sequence

import ml_collections

from recur_jax.io import paths
from recur_jax.io.safe_io import read_json, write_json_atomic

TASK_METRICS = ("path_valid", "path_optimal")  # a task's own figures carried into the report (mazes), at the budget


def curve_summary(by_step: Sequence[float], overthink_factor: int = 4) -> dict[str, Any]:
    """Figures of one accuracy-by-step curve.

    Args:
      by_step: exact accuracy after supervision steps 1..N (N >= 1).
      overthink_factor: the overthinking check reads the curve at this multiple of the step of solution.
    Returns:
      {"budget": N, "final": accuracy at N, "best": max, "best_step": first step reaching the max,
       "solved_step": first step within 0.01 of the max (None when the max is 0), "overthink_step":
       factor * solved_step (None when beyond N or unsolved), "overthink": accuracy there (None likewise)}.
    Raises:
      ValueError: an empty curve.
    """
    acc = [float(a) for a in by_step]
    if not acc:
        raise ValueError("an accuracy-by-step curve needs at least one step")
    best = max(acc)
    best_step = acc.index(best) + 1
    if best <= 0:  # never solved anything: no point of solution to check beyond
        return {"budget": len(acc), "final": acc[-1], "best": best, "best_step": best_step, "solved_step": None,
                "overthink_step": None, "overthink": None}
    solved = next(i for i, a in enumerate(acc, 1) if a >= best - 0.01)
    late = overthink_factor * solved
    within = late <= len(acc)
    return {"budget": len(acc), "final": acc[-1], "best": best, "best_step": best_step, "solved_step": solved,
            "overthink_step": late if within else None, "overthink": acc[late - 1] if within else None}


def evaluate_sizes(workdir: str, plan: Sequence[dict[str, Any]], *, log=print) -> dict[str, Any]:
    """Evaluates the run in `workdir` at every size of `plan`; evaluations already written are reused.

    Args:
      workdir: a finished training run.
      plan: [{"size": n, "overrides": {dotted key: value}}] (eval.* and data.* keys; see the experiment
        file's `get_eval_plan`). A run trained with halt_max_steps 1 (one pass, nothing carried) is
        evaluated with a budget of 1 whatever the plan says.
      log: called with one line per evaluation.
    Returns:
      {"workdir", "config" (the run's), "sizes": {str(n): {"by_step", "seq_len", "examples", the task's
      `TASK_METRICS` where it has them, **curve_summary}}}
    Raises:
      As `evaluation.evaluate_run` (a size the model cannot take: learned positions or MLP-t).
    """
    from recur_jax.run.checkpoint import read_run_record
    from recur_jax.study.evaluation import evaluate_run, with_eval_defaults
    from recur_jax.study.sweep import apply_overrides

    recorded = ml_collections.ConfigDict(with_eval_defaults(read_run_record(workdir)["config"]))
    one_pass = int(recorded.model.halt_max_steps) == 1
    sizes = {}
    for item in plan:
        n = int(item["size"])
        overrides = dict(item["overrides"])
        if one_pass:
            overrides["eval.halt_max_steps"] = 1
        name = f"size{n}"
        summary_path = paths.join(workdir, "evals", name, "summary.json")
        summary = None
        if paths.exists(summary_path):
            old = read_json(summary_path)
            if isinstance(old, dict) and old.get("overrides_requested") == json.loads(json.dumps(overrides)):
                summary = old
        if summary is None:
            config = apply_overrides(recorded, overrides, f"{workdir} size {n}")
            summary = evaluate_run(workdir, config, name=name)
            summary["overrides_requested"] = overrides
            write_json_atomic(summary_path, summary, indent=2)
        by_step = summary["eval"]["exact_accuracy_by_step"]
        task_metrics = {k: summary["eval"][k] for k in TASK_METRICS if k in summary["eval"]}
        sizes[str(n)] = {"by_step": by_step, "seq_len": summary["settings"]["seq_len"],
                         "examples": summary["eval"].get("count"), "token_accuracy": summary["eval"].get("accuracy"),
                         **task_metrics, **curve_summary(by_step)}
        s = sizes[str(n)]
        log(f"{paths.basename(workdir)}: size {n}: exact {s['final']:.3f} at {s['budget']} steps, "
            f"best {s['best']:.3f} at step {s['best_step']}")
    return {"workdir": paths.absolute(workdir), "config": recorded.to_dict(), "sizes": sizes}


_SEED_SUFFIX = re.compile(r"^(?P<row>.+)_seed(?P<seed>[0-9]+)$")


def seed_groups(labels: Sequence[str]) -> dict[str, list[int]]:
    """The runs of each row: label `row` (seed 0) or `row_seed<k>` (the experiment's `run_name`).

    Returns:
      {row: [indices into labels]}, rows and indices in the order first seen.
    """
    groups: dict[str, list[int]] = {}
    for i, label in enumerate(labels):
        m = _SEED_SUFFIX.match(label)
        groups.setdefault(m["row"] if m else label, []).append(i)
    return groups


def seed_summary(results: Sequence[dict[str, Any]], labels: Sequence[str]) -> dict[str, dict[str, dict[str, Any]]]:
    """Mean and range over seeds of the accuracy at the budget, per row with at least two runs and per size.

    Args:
      results: `evaluate_sizes` outputs; labels: their run names (`seed_groups`).
    Returns:
      {row: {str(n): {"runs": k, "values": [k floats, in label order], "mean", "std" (population), "min",
      "max", and "<metric>_mean" for the task's `TASK_METRICS`}}}; sizes that only some runs have use those.
    """
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for row, idx in seed_groups(labels).items():
        if len(idx) < 2:
            continue
        sizes = sorted({int(n) for i in idx for n in results[i]["sizes"]})
        out[row] = {}
        for n in sizes:
            have = [results[i]["sizes"][str(n)] for i in idx if str(n) in results[i]["sizes"]]
            values = [float(s["final"]) for s in have]
            entry = {"runs": len(values), "values": values, "mean": statistics.fmean(values),
                     "std": statistics.pstdev(values), "min": min(values), "max": max(values)}
            for k in TASK_METRICS:
                if all(k in s for s in have):
                    entry[f"{k}_mean"] = statistics.fmean(float(s[k]) for s in have)
            out[row][str(n)] = entry
    return out


def report(root: str, results: Sequence[dict[str, Any]], labels: Sequence[str], train_size: int) -> dict[str, str]:
    """Writes `<root>/extrapolation/`: report.json, report.md, report.html and the plots.

    Args:
      results: `evaluate_sizes` outputs, one per run; labels: a row name per run.
      train_size: the largest training size (marked on the size plot).
    Returns:
      {"json", "md", "html", "png_sizes", "png_steps": [one per run], "png_train"} paths. Rows run with
      several seeds (`seed_groups`) get a section "Over seeds" (`seed_summary`; also in report.json).
    """
    from recur_jax.study import plots

    out = paths.join(paths.absolute(root), "extrapolation")
    paths.makedirs(out)
    sizes = sorted({int(n) for r in results for n in r["sizes"]})
    columns = ["row"] + [f"n={n}" for n in sizes]
    table = []
    for label, r in zip(labels, results):
        cells = []
        for n in sizes:
            s = r["sizes"].get(str(n))
            extra = "".join(f", {k} {s[k]:.3f}" for k in TASK_METRICS if s is not None and k in s)
            cells.append("" if s is None else f"{s['final']:.3f} ({s['budget']}{extra})")
        table.append([label] + cells)
    over_cols = ["row", "size", "budget", "best", "step of best", "solved at step", "at 4x that step", "at the budget",
                 "token accuracy at the budget"]
    over = [[label, int(n), s["budget"], f"{s['best']:.3f}", s["best_step"], s["solved_step"] or "",
             "" if s["overthink"] is None else f"{s['overthink']:.3f} (step {s['overthink_step']})", f"{s['final']:.3f}",
             "" if s.get("token_accuracy") is None else f"{s['token_accuracy']:.3f}"]
            for label, r in zip(labels, results) for n, s in sorted(r["sizes"].items(), key=lambda kv: int(kv[0]))]
    def points(key):
        return {label: [(int(n), s[key]) for n, s in sorted(r["sizes"].items(), key=lambda kv: int(kv[0]))
                        if s.get(key) is not None] for label, r in zip(labels, results)}

    png_sizes = plots.accuracy_vs_size(points("final"), train_size, paths.join(out, "accuracy_vs_size.png"),
                                       token_series=points("token_accuracy"))
    from recur_jax.study.results import training_curve

    png_train = plots.training_curves({label: training_curve(r["workdir"]) for label, r in zip(labels, results)},
                                      paths.join(out, "training.png"))
    png_steps = [plots.accuracy_vs_steps(label, {int(n): s["by_step"] for n, s in r["sizes"].items()},
                                         paths.join(out, f"steps_{i}_{label}.png"))
                 for i, (label, r) in enumerate(zip(labels, results))]
    caption = (f"Exact accuracy on held-out instances of each size n (trained on n <= {train_size}); in brackets "
               f"the test-time budget of supervision steps (and, for mazes, the share of valid and of optimal "
               f"paths at that budget). One-pass rows run one step.")
    md = ["# Extrapolation", "", caption, "", "| " + " | ".join(columns) + " |",
          "|" + " --- |" * len(columns)] + ["| " + " | ".join(map(str, row)) + " |" for row in table]
    md += ["", "## Accuracy against test-time steps, and overthinking", "",
           "| " + " | ".join(over_cols) + " |", "|" + " --- |" * len(over_cols)]
    md += ["| " + " | ".join(map(str, row)) + " |" for row in over]
    over_seeds = seed_summary(results, labels)
    seed_rows = []
    for row, per_size in over_seeds.items():
        cells = []
        for n in sizes:
            e = per_size.get(str(n))
            valid = "" if e is None or "path_valid_mean" not in e else f", valid {e['path_valid_mean']:.3f}"
            cells.append("" if e is None else
                         f"{e['mean']:.3f} [{e['min']:.3f}, {e['max']:.3f}] ({e['runs']} runs{valid})")
        seed_rows.append([f"{row}: over seeds"] + cells)
    if seed_rows:
        md += ["", "## Over seeds", "", "Exact accuracy at the budget: the mean over a row's seeds, [min, max] and "
               "the number of runs (mazes: the mean share of valid paths).", "",
               "| " + " | ".join(columns) + " |", "|" + " --- |" * len(columns)]
        md += ["| " + " | ".join(row) + " |" for row in seed_rows]
    written = {"md": paths.join(out, "report.md"), "html": paths.join(out, "report.html"),
               "json": paths.join(out, "report.json"), "png_sizes": png_sizes, "png_steps": png_steps,
               "png_train": png_train}
    paths.write_text_atomic(written["md"], "\n".join(md) + "\n")
    paths.write_text_atomic(written["html"], plots.html_page("Extrapolation", columns, table + seed_rows,
                                                             [png_sizes] + png_steps + [png_train], notes=[caption]))
    write_json_atomic(written["json"], {"labels": list(labels), "train_size": train_size, "results": list(results),
                                        "over_seeds": over_seeds}, indent=2)
    return written


def load_plan(module, arg: str | None) -> list[dict[str, Any]]:
    """The experiment module's `get_eval_plan(arg)`, checked.

    Raises:
      ValueError: the module has no `get_eval_plan`, or an entry lacks an integer `size` >= 1 or a dict
        of `overrides`.
    """
    if not hasattr(module, "get_eval_plan"):
        raise ValueError(f"{module.__file__} defines no get_eval_plan(arg) (the test sizes and budgets)")
    plan = module.get_eval_plan(arg)
    for i, item in enumerate(plan):
        if not (isinstance(item, dict) and isinstance(item.get("size"), int) and item["size"] >= 1
                and isinstance(item.get("overrides"), dict)):
            raise ValueError(f"get_eval_plan entry {i}: expected {{'size': int >= 1, 'overrides': dict}}, got "
                             f"{json.dumps(item, default=str)[:200]}")
    return plan


__all__ = ["curve_summary", "evaluate_sizes", "load_plan", "report", "seed_groups", "seed_summary"]
