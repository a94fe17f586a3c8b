"""Results of a sweep: one table over its runs, mean and standard deviation over seeds.

Reads each run directory under a sweep root (`run.json` for the resolved config, `summary.json` for the
final figures) and the root's `sweep.json` (written by `launch.sweep`) for the swept keys. Runs that
differ only in `seed` form one row; each metric gets its mean, its sample standard deviation (ddof=1;
empty for a single seed) and the number of seeds. `launch.report` writes the table as CSV and Markdown.
"""

from __future__ import annotations

import csv
import io
import json
import math
from typing import Any, Sequence

import numpy as np

from recur_jax.io import paths, safe_io
from recur_jax.study.sweep import SWEEP_FILE

SEED_KEY = "seed"
_MAX_JSON_BYTES = 64 << 20


def _read_json(path: str) -> Any:
    """A run record (JSON, at most 64 MiB): `safe_io.read_json`; ValueError names the file."""
    return safe_io.read_json(path, max_bytes=_MAX_JSON_BYTES)


def _read_object(path: str, required: dict[str, type], skip: bool) -> dict[str, Any] | None:
    """The JSON object in `path` with `required` fields of the given types.

    Returns None (after one warning naming the file and what was expected) when it is malformed and
    `skip`; raises ValueError with the same line otherwise.
    """
    try:
        value = _read_json(path)
        missing = [f"'{k}' ({t.__name__})" for k, t in required.items()
                   if not isinstance(value, dict) or not isinstance(value.get(k), t)]
        if not isinstance(value, dict) or missing:
            raise ValueError(f"{path}: expected a JSON object with {', '.join(missing) or 'fields'}")
    except (ValueError, OSError) as e:
        if not skip:
            raise ValueError(str(e)) from None
        print(f"warning: {e}; skipped")
        return None
    return value


def _manifest_runs(manifest_path: str) -> list[dict[str, Any]]:
    """The `runs` of a sweep.json, each an object with a string `name`; ValueError names the file."""
    runs = _read_object(manifest_path, {"runs": list}, skip=False)["runs"]
    for i, r in enumerate(runs):
        if not (isinstance(r, dict) and isinstance(r.get("name"), str) and isinstance(r.get("overrides", {}), dict)):
            raise ValueError(f"{manifest_path}: runs[{i}]: expected an object with a string 'name' and an "
                             f"'overrides' object")
    return runs


def flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """`{"model": {"H_cycles": 2}}` -> `{"model.H_cycles": 2}` (lists are kept as values)."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(flatten(v, key + "."))
        else:
            out[key] = v
    return out


def collect(root: str) -> list[dict[str, Any]]:
    """The runs under `root`, sorted by directory name.

    Returns:
      One dict per directory that holds a run.json: `name`, `workdir`, `config` (flattened resolved
      config), `summary` (summary.json or None while the run is unfinished) and `finished`.

    Raises:
      FileNotFoundError: `root` does not exist or holds no run.
      Nothing for a damaged run.json (the directory is skipped) or summary.json (the run counts as
      unfinished): one warning names the file and what was expected.
    """
    if not paths.isdir(root):
        raise FileNotFoundError(f"sweep root {root} does not exist")
    runs = []
    for name in paths.listdir(root):
        workdir = paths.join(root, name)
        run_path = paths.join(workdir, "run.json")
        if not paths.isfile(run_path):
            continue
        record = _read_object(run_path, {"config": dict}, skip=True)
        if record is None:
            continue
        config = flatten(record["config"])
        summary_path = paths.join(workdir, "summary.json")  # a damaged one: the run counts as unfinished
        summary = _read_object(summary_path, {"eval": dict}, skip=True) if paths.isfile(summary_path) else None
        runs.append({"name": name, "workdir": workdir, "config": config, "summary": summary,
                     "finished": summary is not None})
    if not runs:
        raise FileNotFoundError(f"no run directories (with run.json) under {root}")
    return runs


def swept_keys(root: str, runs: Sequence[dict[str, Any]]) -> list[str]:
    """The config keys the sweep varies: from `root/sweep.json` when present (in the sweep's order),
    else every flattened config key whose value differs between runs."""
    manifest_path = paths.join(root, SWEEP_FILE)
    if paths.isfile(manifest_path):
        keys: list[str] = []
        for r in _manifest_runs(manifest_path):
            keys += [k for k in r.get("overrides", {}) if k not in keys]
        if keys:
            return keys
    all_keys = sorted({k for r in runs for k in r["config"]})
    return [k for k in all_keys if len({json.dumps(r["config"].get(k), default=str) for r in runs}) > 1]


def metrics_of(summary: dict[str, Any]) -> dict[str, float]:
    """The scalar figures of a summary.json: every number under `eval` as `eval.<key>`, the last entry of
    `eval.exact_accuracy_by_step` is already `eval.exact_accuracy`; plus `wall_s`, `num_params`,
    `train.examples_per_s` and `step`."""
    out: dict[str, float] = {}
    for k, v in flatten(summary.get("eval", {}), "eval.").items():
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            out[k] = float(v)
    for k in ("wall_s", "num_params", "step"):
        if isinstance(summary.get(k), (int, float)):
            out[k] = float(summary[k])
    train = summary.get("train")
    eps = train.get("examples_per_s") if isinstance(train, dict) else None
    if isinstance(eps, (int, float)):
        out["train.examples_per_s"] = float(eps)
    return out


def _mean_std(xs: Sequence[float]) -> tuple[float, float]:
    mean = sum(xs) / len(xs)
    if len(xs) < 2:
        return mean, float("nan")
    return mean, math.sqrt(sum((x - mean) ** 2 for x in xs) / (len(xs) - 1))


def table(root: str) -> tuple[list[str], list[dict[str, Any]]]:
    """The sweep's results grouped over seeds.

    Returns:
      (keys, rows): `keys` are the swept keys without `seed`; each row holds those keys' values, `seeds`
      (the finished runs averaged), `unfinished` (runs of the group without summary.json), and for each
      metric `<metric>.mean` and `<metric>.std` (sample std over seeds; NaN with one seed). Rows follow
      the order in which their first run appears in the sweep (sorted names without sweep.json). With
      a sweep.json, only the runs it lists are included (a sweep whose definition changed keeps its old
      directories but no longer reports them).

    Raises:
      FileNotFoundError / ValueError: as `collect`.
    """
    runs = collect(root)
    manifest_path = paths.join(root, SWEEP_FILE)
    if paths.isfile(manifest_path):  # the sweep's runs, in sweep order (directories it no longer lists are left out)
        order = {r["name"]: i for i, r in enumerate(_manifest_runs(manifest_path))}
        runs = sorted((r for r in runs if r["name"] in order), key=lambda r: order[r["name"]])
    keys = [k for k in swept_keys(root, runs) if k != SEED_KEY]
    groups: dict[str, dict[str, Any]] = {}
    for r in runs:
        values = {k: r["config"].get(k) for k in keys}
        gid = json.dumps(values, sort_keys=True, default=str)
        g = groups.setdefault(gid, {"values": values, "metrics": [], "unfinished": 0})
        if r["finished"]:
            g["metrics"].append(metrics_of(r["summary"]))
        else:
            g["unfinished"] += 1
    rows = []
    for g in groups.values():
        row: dict[str, Any] = dict(g["values"])
        row["seeds"] = len(g["metrics"])
        row["unfinished"] = g["unfinished"]
        names = sorted({m for ms in g["metrics"] for m in ms})
        for m in names:
            xs = [ms[m] for ms in g["metrics"] if m in ms]
            row[f"{m}.mean"], row[f"{m}.std"] = _mean_std(xs)
        rows.append(row)
    return keys, rows


def _columns(keys: Sequence[str], rows: Sequence[dict[str, Any]]) -> list[str]:
    metric_cols = sorted({c for r in rows for c in r if c.endswith((".mean", ".std"))})
    extra = ["train_step_temp_bytes"] if any("train_step_temp_bytes" in r for r in rows) else []
    return list(keys) + ["seeds", "unfinished"] + metric_cols + extra


def to_csv(keys: Sequence[str], rows: Sequence[dict[str, Any]]) -> str:
    """The table as CSV text (every metric's mean and std column; empty cells where absent or NaN)."""
    buf = io.StringIO()
    cols = _columns(keys, rows)
    w = csv.writer(buf)
    w.writerow(cols)
    for r in rows:
        w.writerow(["" if (v := r.get(c)) is None or (isinstance(v, float) and math.isnan(v)) else v for c in cols])
    return buf.getvalue()


def _fmt(mean: float | None, std: float | None) -> str:
    if mean is None:
        return ""
    digits = 4 if abs(mean) < 10 else 1
    if std is None or math.isnan(std):
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} ± {std:.{digits}f}"


def to_markdown(keys: Sequence[str], rows: Sequence[dict[str, Any]],
                metrics: Sequence[str] = ("eval.exact_accuracy", "eval.accuracy", "eval.steps", "wall_s")) -> str:
    """The table as Markdown: the swept keys, the seed count, and `mean ± std` of `metrics` (those present)."""
    present = [m for m in metrics if any(f"{m}.mean" in r for r in rows)]
    memory = any("train_step_temp_bytes" in r for r in rows)
    head = list(keys) + ["seeds"] + present + (["train step temp MiB"] if memory else [])
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [str(r.get(k)) for k in keys] + [
            f"{r['seeds']}" + (f" (+{r['unfinished']} unfinished)" if r["unfinished"] else "")]
        cells += [_fmt(r.get(f"{m}.mean"), r.get(f"{m}.std")) for m in present]
        if memory:
            cells.append(f"{r['train_step_temp_bytes'] / 2**20:.1f}" if r.get("train_step_temp_bytes") else "")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _label(keys: Sequence[str], values: dict[str, Any]) -> str:
    return " ".join(f"{k.rsplit('.', 1)[-1]}={values.get(k)}" for k in keys) or "run"


def _model_config(config: dict[str, Any]):
    from recur_jax.core.models import ModelConfig

    return ModelConfig.from_dict({k[len("model."):]: v for k, v in config.items() if k.startswith("model.")})


def training_flops_per_step(config: dict[str, Any]) -> float:
    """Model FLOPs of one optimizer step of a run (flattened run.json config), from the analytic count
    `recur_jax.core.flops.train_step_flops` (forward of every sweep, backward where the gradient mode allows)."""
    from recur_jax.core import flops

    return float(flops.train_step_flops(_model_config(config), int(config["global_batch_size"]))["total"])


def train_step_memory(workdir: str) -> dict[str, int]:
    """XLA's memory analysis of a run's compiled training step (argument/output/temp bytes), compiled
    here from the run's recorded config (`recur_jax.study.benchmark.compile_only`) without running it."""
    import ml_collections

    from recur_jax.study import benchmark

    record = _read_object(paths.join(workdir, "run.json"), {"config": dict}, skip=False)
    config = ml_collections.ConfigDict(record["config"])
    res = benchmark.compile_only(config)
    return {k: int(res[k]) for k in ("argument_bytes", "output_bytes", "temp_bytes") if k in res}


def add_memory(root: str, keys: Sequence[str], rows: list[dict[str, Any]]) -> None:
    """Adds `train_step_temp_bytes` (from `train_step_memory` of the row's first run) to each row."""
    runs = collect(root)
    for row in rows:
        for r in runs:
            if all(json.dumps(r["config"].get(k), default=str) == json.dumps(row.get(k), default=str) for k in keys):
                row["train_step_temp_bytes"] = train_step_memory(r["workdir"]).get("temp_bytes")
                break


def training_curve(workdir: str) -> dict[str, list[tuple[int, float]]]:
    """(step, value) of the training loss and exact accuracy in `workdir/metrics.jsonl` (empty when absent)."""
    from recur_jax.run.runlog import read_metrics_lines

    path = paths.join(workdir, "metrics.jsonl")
    out: dict[str, list[tuple[int, float]]] = {"loss": [], "exact_accuracy": []}
    if not paths.exists(path):
        return out
    for _, rec in read_metrics_lines(path):
        if rec["kind"] == "train":
            for key in out:
                if isinstance(rec.get(key), (int, float)) and math.isfinite(rec[key]):
                    out[key].append((rec["step"], float(rec[key])))
    return out


def write_plots(root: str, analyze: bool = True, max_examples: int = 256,
                flops_fn=training_flops_per_step, results: tuple[list[str], list[dict[str, Any]]] | None = None
                ) -> list[str]:
    """The sweep's plots (PNG) and `root/report.html` with the table; returns the PNG paths.

    Args:
      root: the sweep directory.
      analyze: also load each finished run's checkpoint and run `analysis.analyze_run` (cached in the run's
        analysis.json) for the test-time-compute, residual and halting plots.
      max_examples: test examples per run for the analysis.
      results: `table(root)` already computed (e.g. with `add_memory` columns), shown in the HTML page.
      flops_fn: `config (flattened dict) -> training FLOPs per optimizer step` for the
        accuracy-against-training-FLOPs plot (FLOPs = per-step count x the run's steps); None: no plot.

    Raises:
      FileNotFoundError / ValueError: as `collect`.
    """
    from recur_jax.study import plots

    keys, rows = results if results is not None else table(root)
    # legend labels name only the swept keys that differ between the table's rows
    label_keys = [k for k in keys if len({json.dumps(r.get(k), default=str) for r in rows}) > 1] or list(keys)
    runs = collect(root)
    manifest_path = paths.join(root, SWEEP_FILE)
    if paths.isfile(manifest_path):
        listed = {r["name"] for r in _manifest_runs(manifest_path)}
        runs = [r for r in runs if r["name"] in listed]
    groups: dict[str, list[dict[str, Any]]] = {}
    for r in runs:
        if r["finished"]:
            groups.setdefault(_label(label_keys, r["config"]), []).append(r)
    images: list[str] = []
    notes: list[str] = []

    def mean_std(lists):
        n = min(len(x) for x in lists)
        arr = np.asarray([x[:n] for x in lists], np.float64)
        return arr.mean(0).tolist(), (arr.std(0, ddof=1).tolist() if len(lists) > 1 else None)

    ref, ref_std = {}, {}
    for label, rs in groups.items():
        curves = [r["summary"]["eval"].get("exact_accuracy_by_step") or [] for r in rs]
        curves = [c for c in curves if c]
        if curves:
            ref[label], s = mean_std(curves)
            if s is not None:
                ref_std[label] = s
    if ref:
        images.append(plots.refinement_curve(ref, paths.join(root, "refinement.png"), ref_std))
    train = {label: training_curve(rs[0]["workdir"]) for label, rs in groups.items()}
    train = {label: c for label, c in train.items() if c["loss"]}
    if train:
        images.append(plots.training_curves(train, paths.join(root, "training.png")))

    if analyze:
        from recur_jax.study import analysis

        per: dict[str, list[dict[str, Any]]] = {}
        for label, rs in groups.items():
            for r in rs:
                try:
                    per.setdefault(label, []).append(analysis.analyze_run(r["workdir"], max_examples=max_examples))
                except FileNotFoundError as e:  # e.g. checkpoints deleted to save space
                    notes.append(f"{r['name']}: not analysed ({e})")
        per = {label: an for label, an in per.items() if an}
        ttc = {label: mean_std([a["exact_accuracy_by_step"] for a in an])[0] for label, an in per.items()}
        budget = {label: an[0]["train_halt_max_steps"] for label, an in per.items()}
        if per:
            images.append(plots.test_time_compute(ttc, budget, paths.join(root, "test_time_compute.png")))
        res_H = {label: mean_std([a["residual_H"] for a in an])[0] for label, an in per.items()
                 if an[0]["arch"] != "transformer"}
        res_L = {label: mean_std([a["residual_L"] for a in an])[0] for label, an in per.items()
                 if an[0]["arch"] != "transformer"}
        if res_H:
            images.append(plots.latent_residuals(res_H, res_L, {}, paths.join(root, "residuals.png")))
        hists = {label: np.sum([a["halt_step_histogram"] for a in an], axis=0).tolist() for label, an in per.items()}
        if hists:
            images.append(plots.halting_histogram(hists, paths.join(root, "halting.png")))

    if flops_fn is not None:
        points = []
        for row in rows:
            label = _label(label_keys, row)
            rs = groups.get(label)
            if not rs or "eval.exact_accuracy.mean" not in row:
                continue
            cfg = rs[0]["config"]
            try:
                per_step = flops_fn(cfg)
            except (KeyError, TypeError, ValueError) as e:  # a record without a full model config
                notes.append(f"{label}: no FLOP count ({type(e).__name__}: {e})")
                continue
            points.append({"label": label, "flops": per_step * rs[0]["summary"]["step"],
                           "accuracy": row["eval.exact_accuracy.mean"],
                           "std": None if math.isnan(row["eval.exact_accuracy.std"]) else row["eval.exact_accuracy.std"],
                           "recursive": cfg.get("model.arch") != "transformer"})
        if points:
            images.append(plots.accuracy_vs_flops(points, paths.join(root, "accuracy_vs_flops.png")))

    cols = _columns(keys, rows)
    shown = list(keys) + ["seeds"] + [c for c in cols if c.startswith(("eval.exact_accuracy.", "eval.accuracy.",
                                                                       "wall_s."))]
    shown += [c for c in cols if c == "train_step_temp_bytes"]
    def cell(c, v):
        if v is None or (isinstance(v, float) and math.isnan(v)):
            return ""
        if c == "train_step_temp_bytes":  # the unit the Markdown table uses
            return f"{v / 2**20:.1f}"
        return f"{v:.4f}" if isinstance(v, float) else v

    cells = [[cell(c, r.get(c)) for c in shown] for r in rows]
    headers = ["train step temp memory (MiB)" if c == "train_step_temp_bytes" else c for c in shown]
    page = plots.html_page(f"Sweep {paths.basename(paths.absolute(root))}", headers, cells, images, notes)
    paths.write_text_atomic(paths.join(root, "report.html"), page)
    return images
