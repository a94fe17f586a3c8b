"""Plots of a sweep (matplotlib, PNG) and the HTML page that shows them with the results table.

Each function takes already-aggregated data, writes one PNG and returns its path:

  * `refinement_curve`: exact accuracy after each supervision step (deep supervision's refinement);
  * `test_time_compute`: exact accuracy against the test-time halt_max_steps, past the training budget;
  * `latent_residuals`: ||z_{k+1} - z_k|| / ||z_k|| per recursion sweep (fixed-point convergence);
  * `halting_histogram`: the supervision step at which the Q head halts;
  * `accuracy_vs_flops`: final exact accuracy against training FLOPs, recursive vs non-recursive;
  * `eval_by_step`: one checkpoint's evaluation (`launch.evaluate`): exact accuracy after each
    supervision step under the budget rule and the Q head's early halting, and the halting steps;
  * `replay_curves`: a reference training curve and recur_jax's replay of it, with their relative
    difference on a log scale (`launch.parity --curve`).

Series are `{label: values}`; a label names a group of runs (the swept values without the seed) and the
values are means over its seeds (`std` bands where given).
"""

from __future__ import annotations

import html
import textwrap
import os
from typing import Any, Mapping, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.ticker  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from recur_jax.io import paths  # noqa: E402


def _save(fig, path: str, caption: str) -> str:
    """Writes `fig` as a PNG at `path` (a local path or a cloud URL) with `caption` below everything else
    in it (the PNG carries its own explanation wherever it is shown), closes it; returns `path`."""
    fig.canvas.draw()
    box = fig.get_tightbbox(fig.canvas.get_renderer())  # inches, legends below the axes included
    fig.text(box.x0 / fig.get_figwidth(), box.y0 / fig.get_figheight() - 0.02,
             "\n".join(textwrap.wrap(caption, width=int(14 * box.width))), ha="left", va="top", fontsize=8,
             color="#333333", transform=fig.transFigure)
    paths.makedirs(paths.dirname(paths.absolute(path)))
    with paths.open_file(path, "wb") as f:
        fig.savefig(f, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path


def _figure(title: str, xlabel: str, ylabel: str):
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    if xlabel != "training FLOPs":
        ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
    return fig, ax


def _legend(ax, n: int):
    """The legend below the axes (labels name whole configurations and can be long)."""
    if n:
        ax.legend(fontsize=7, ncol=1, loc="upper left", bbox_to_anchor=(0.0, -0.16), frameon=False)


_STYLES = [("o", "-"), ("s", "--"), ("^", ":"), ("D", "-."), ("v", (0, (5, 1))), ("P", (0, (1, 1)))]  # (marker, dash) per series


def training_curves(curves: Mapping[str, Mapping[str, Sequence[tuple[int, float]]]], path: str) -> str:
    """Training curves from each group's metrics.jsonl: left the training loss (per example, log scale),
    right the exact accuracy of the rows that halted in each logging window, against the optimizer step;
    one line per group (`curves[label] = {"loss": [(step, value)], "exact_accuracy": [...]}`). Returns `path`."""
    fig, axes = plt.subplots(1, 2, figsize=(12.8, 4.4))
    fig.suptitle("Training curves (metrics.jsonl, one logging window per point)")
    for ax, key, ylabel in ((axes[0], "loss", "training loss per example (log scale)"),
                            (axes[1], "exact_accuracy", "training exact accuracy (rows halted in the window)")):
        for k, (label, c) in enumerate(curves.items()):
            pts = c.get(key) or []
            if pts:
                xs, ys = zip(*pts)
                ax.plot(xs, ys, ls=_STYLES[k % len(_STYLES)][1], label=label)
        ax.set_xlabel("optimizer step")
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
        if key == "loss":
            ax.set_yscale("log")
        else:
            ax.set_ylim(-0.02, 1.02)
        _legend(ax, len(curves))
    return _save(fig, path, "Each point is one logging window of metrics.jsonl (log_every optimizer steps): the "
                 "training loss per example of the global batch (left, log scale) and the exact accuracy of the "
                 "rows whose ACT episode ended in that window (right), as the reference logs them.")


def refinement_curve(series: Mapping[str, Sequence[float]], path: str,
                     std: Mapping[str, Sequence[float]] | None = None) -> str:
    """Exact accuracy (fraction) after supervision steps 1..N, one line per group; returns `path`."""
    fig, ax = _figure("Refinement over supervision steps", "supervision step", "exact accuracy")
    for label, ys in series.items():
        x = np.arange(1, len(ys) + 1)
        ax.plot(x, ys, marker="o", ms=3, label=label)
        if std and label in std and len(std[label]) == len(ys):
            lo, hi = np.asarray(ys) - np.asarray(std[label]), np.asarray(ys) + np.asarray(std[label])
            ax.fill_between(x, lo, hi, alpha=0.15)
    ax.set_ylim(-0.02, 1.02)
    _legend(ax, len(series))
    return _save(fig, path, "Exact accuracy on the test set after each supervision step of one evaluation "
                 "(every row runs all N steps); shaded: one standard deviation over seeds where a group has "
                 "several. Deep supervision trains every step to answer, so accuracy should rise with steps.")


def accuracy_vs_size(series: Mapping[str, Sequence[tuple[int, float]]], train_size: int, path: str,
                     token_series: Mapping[str, Sequence[tuple[int, float]]] | None = None) -> str:
    """Left: exact accuracy at each row's full test-time budget against the instance size n (log2 axis), one
    line per row (marker and dash differ, so rows that coincide stay visible); right (when `token_series`
    is given): the per-token accuracy, where a row's breakdown shows before its exact accuracy reaches 0.
    The largest training size is a vertical dotted line. Returns `path`."""
    panels = [("exact accuracy at the full test-time budget", series)]
    if token_series:
        panels.append(("token (cell) accuracy at the full test-time budget", token_series))
    fig, axes = plt.subplots(1, len(panels), figsize=(6.4 * len(panels), 4.4), squeeze=False)
    fig.suptitle("Extrapolation: accuracy against instance size (trained on n <= %d)" % train_size)
    for ax, (ylabel, data) in zip(axes[0], panels):
        for k, (label, pts) in enumerate(data.items()):
            if pts:
                xs, ys = zip(*sorted(pts))
                marker, dash = _STYLES[k % len(_STYLES)]
                ax.plot(xs, ys, marker=marker, ls=dash, ms=5, label=label)
        ax.set_xscale("log", base=2)
        ax.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda x, _: f"{x:g}"))
        ax.axvline(train_size, ls=":", color="gray", label=f"largest training size ({train_size})")
        ax.set_xlabel("instance size n (log scale)")
        ax.set_ylabel(ylabel)
        ax.set_ylim(-0.02, 1.02)
        ax.grid(alpha=0.3)
        _legend(ax, len(data) + 1)
    return _save(fig, path, "Each row's exact (left) and token (right) accuracy at its full test-time budget "
                 "against the instance size n, log scale; the dotted line is the largest size seen in training. "
                 "A model that extrapolates stays high to the right of it.")


def accuracy_vs_steps(row: str, curves: Mapping[int, Sequence[float]], path: str) -> str:
    """Exact accuracy after test-time supervision steps 1..N, one line per instance size n (log2 step
    axis when N > 32), for the row `row`. Returns `path`."""
    fig, ax = _figure(f"{row}: exact accuracy against test-time steps", "supervision steps at test time",
                      "exact accuracy")
    longest = max((len(c) for c in curves.values()), default=1)
    for k, n in enumerate(sorted(curves)):
        ys = curves[n]
        marker, dash = _STYLES[k % len(_STYLES)]
        ax.plot(np.arange(1, len(ys) + 1), ys, marker=marker if longest <= 32 else None, ls=dash, ms=3,
                label=f"n = {n}")
    if longest > 32:
        ax.set_xscale("log", base=2)
        ax.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda x, _: f"{x:g}"))
    ax.set_ylim(-0.02, 1.02)
    _legend(ax, len(curves))
    return _save(fig, path, f"Row {row}: exact accuracy after each test-time supervision step, one line per "
                 "instance size n. Larger instances need more steps; a line that falls after reaching its top "
                 "is overthinking.")


def test_time_compute(series: Mapping[str, Sequence[float]], train_budget: Mapping[str, int], path: str) -> str:
    """Exact accuracy against the test-time halt_max_steps (1..N'), with each group's training budget
    marked by a dotted line of its colour; returns `path`."""
    fig, ax = _figure("Test-time compute", "test-time halt_max_steps", "exact accuracy")
    for label, ys in series.items():
        (line,) = ax.plot(np.arange(1, len(ys) + 1), ys, marker="o", ms=3, label=label)
        if label in train_budget:
            ax.axvline(train_budget[label], color=line.get_color(), ls=":", lw=1)
    if train_budget:
        ax.plot([], [], color="gray", ls=":", lw=1, label="dotted: the group's training halt_max_steps")
    ax.set_ylim(-0.02, 1.02)
    _legend(ax, len(series) + bool(train_budget))
    return _save(fig, path, "Exact accuracy when evaluation runs more (or fewer) supervision steps than training "
                 "did; each dotted vertical line, in its group's colour, marks the budget that group was "
                 "trained with.")


def latent_residuals(series_H: Mapping[str, Sequence[float]], series_L: Mapping[str, Sequence[float]],
                     sweeps_per_step: Mapping[str, int], path: str) -> str:
    """Relative latent residuals per recursion sweep, log scale: z_H solid, z_L dashed; returns `path`.

    Sweep k is counted across supervision steps (k = (step - 1) * H_cycles + sweep)."""
    fig, ax = _figure("Latent residual per recursion sweep", "recursion sweep",
                      "||z_{k+1} - z_k|| / ||z_k||")
    for label, ys in series_H.items():
        (line,) = ax.plot(np.arange(1, len(ys) + 1), np.maximum(ys, 1e-12), label=f"{label} z_H")
        if label in series_L and np.any(np.asarray(series_L[label]) > 0):
            ax.plot(np.arange(1, len(series_L[label]) + 1), np.maximum(series_L[label], 1e-12), ls="--",
                    color=line.get_color(), label=f"{label} z_L")
    ax.set_yscale("log")
    _legend(ax, 2 * len(series_H))
    return _save(fig, path, "How much the latent state moves per recursion sweep, relative to its size (z_H "
                 "solid, z_L dashed; sweeps counted across supervision steps). A falling line means the "
                 "recursion settles towards a fixed point.")


def halting_histogram(hists: Mapping[str, Sequence[int]], path: str) -> str:
    """Share of test examples by the supervision step at which the Q head halts, grouped bars; returns `path`."""
    fig, ax = _figure("Halting step (Q head)", "supervision step", "share of examples")
    width = 0.8 / max(len(hists), 1)
    for i, (label, h) in enumerate(hists.items()):
        h = np.asarray(h, np.float64)
        share = h / max(h.sum(), 1.0)
        ax.bar(np.arange(1, len(h) + 1) + (i - (len(hists) - 1) / 2) * width, share, width=width, label=label)
    _legend(ax, len(hists))
    return _save(fig, path, "Share of test examples by the first supervision step at which the Q head says "
                 "halt (TRM: q_halt > 0; HRM: q_halt > q_continue); the last bar collects examples that never "
                 "halt within the budget.")


def eval_by_step(budget_curve: Sequence[float] | None, halting: Mapping[str, Any], settings: Mapping[str, Any],
                 path: str) -> str:
    """Left: exact accuracy at test-time budget n = 1..N, every row running n steps (solid; None when the
    evaluation stopped batches early) and rows stopping at the Q head's halt (dashed, with the mean steps
    used on the right axis, dotted). Right: the share of rows first halting at each step, and never.
    Returns `path`."""
    N = len(halting["exact_accuracy_by_budget"])
    x = np.arange(1, N + 1)
    fig, (ax, hx) = plt.subplots(1, 2, figsize=(12, 4.2))
    fig.subplots_adjust(wspace=0.4)
    ax.set_title(f"Exact accuracy by test-time budget (N = {N})")
    ax.set_xlabel("budget n (supervision steps)")
    ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
    ax.set_ylabel("exact accuracy")
    ax.grid(alpha=0.3)
    if budget_curve is not None:
        ax.plot(x, budget_curve, marker="o", ms=3, label="every row runs n steps (the reference)")
    ax.plot(x, halting["exact_accuracy_by_budget"], marker="s", ms=3, ls="--", label="stop at the Q head's halt")
    ax.set_ylim(-0.02, 1.02)
    steps = ax.twinx()
    steps.plot(x, halting["steps_mean_by_budget"], ls=":", color="gray", label="mean steps used (Q head)")
    steps.set_ylabel("mean supervision steps used")
    ax.legend(fontsize=7, loc="lower right")
    steps.legend(fontsize=7, loc="upper left")
    hist = np.asarray(halting["steps_histogram"], np.float64)
    hx.bar(np.arange(1, N + 2), hist / max(hist.sum(), 1.0), color="tab:orange")
    hx.set_xticks(np.arange(1, N + 2), [str(i) for i in range(1, N + 1)] + ["never"], fontsize=7)
    hx.set_title(f"Step at which the Q head first says halt ({settings.get('halt', 'budget')} run)")
    hx.set_xlabel("supervision step")
    hx.set_ylabel("share of test examples")
    hx.grid(alpha=0.3, axis="y")
    return _save(fig, path, "Left: exact accuracy if evaluation stopped at budget n, with every row running n "
                 "steps (solid) or each row stopping at its Q head's first halt (dashed; dotted, right axis: the "
                 "mean steps those rows used). Right: when the Q head first says halt.")


def test_time_compute_report(curves: Mapping[str, Sequence[tuple[float, float]]], reference: tuple[float, float],
                             path: str) -> str:
    """Exact accuracy against test-time FLOPs per example (log scale), one curve per method; the
    deterministic run at the full budget is marked with a star. Returns `path`."""
    fig, ax = _figure("Test-time compute: exact accuracy against FLOPs", "test-time FLOPs per example",
                      "exact accuracy")
    for label, pts in curves.items():
        if pts:
            x, y = zip(*pts)
            ax.plot(x, y, marker="o", ms=3, label=label)
    ax.plot([reference[0]], [reference[1]], marker="*", ms=14, color="black", ls="none",
            label="deterministic, full budget (the reference's evaluation)")
    ax.set_xscale("log")
    ax.set_ylim(-0.02, 1.02)
    _legend(ax, len(curves) + 1)
    return _save(fig, path, "Exact accuracy against the analytic forward FLOPs spent per test example (supervision "
                 "steps used x samples x FLOPs of one step), one curve per test-time method; the star is the "
                 "reference's evaluation (deterministic, full budget).")


def accuracy_vs_flops(points: Sequence[Mapping[str, Any]], path: str) -> str:
    """Final exact accuracy against training FLOPs (log x).

    Args:
      points: dicts with `label`, `flops` (total training FLOPs), `accuracy` (mean), optional `std`, and
        `recursive` (bool: circles for recursive models, squares for non-recursive ones).
    """
    fig, ax = _figure("Accuracy against training compute", "training FLOPs", "exact accuracy")
    for p in points:
        marker = "o" if p.get("recursive", True) else "s"
        ax.errorbar([p["flops"]], [p["accuracy"]], yerr=[[p.get("std") or 0.0], [p.get("std") or 0.0]],
                    fmt=marker, ms=6, capsize=3, label=p["label"])
    ax.set_xscale("log")
    ax.set_ylim(-0.02, 1.02)
    _legend(ax, len(points))
    return _save(fig, path, "Final exact accuracy of each group against its total training FLOPs (analytic, "
                 "forward and backward); circles are recursive models, squares one-pass ones; bars: one "
                 "standard deviation over seeds.")


def replay_curves(report: Mapping[str, Any], path: str) -> str:
    """Loss per step of the reference and of our replay (and of the float64 replay where present), and
    their relative differences on a log scale, with the end of the rounding regime marked; returns `path`.

    Args:
      report: `recur_jax.parity.replay.compare`'s report (loss_ref, loss_ours, rel_loss and, with a floor run,
        loss_float64, rel_loss_float64, rel_loss_own, rounding_regime_until).
    """
    steps = np.arange(1, len(report["loss_ref"]) + 1)
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(7.2, 7.0), sharex=True)
    name = os.path.basename(str(report.get("file", "")))
    top.set_title(f"Training-curve replay of {name}")
    top.plot(steps, report["loss_ref"], color="black", lw=1.4, label="reference (official code, float32)")
    top.plot(steps, report["loss_ours"], color="tab:blue", lw=1.0, ls="--", label="recur_jax, float32")
    if "loss_float64" in report:
        top.plot(steps, report["loss_float64"], color="tab:orange", lw=0.8, ls=":", label="recur_jax, float64")
    top.set_ylabel("loss (scaled by 1 / batch)")
    top.grid(alpha=0.3)
    top.legend(fontsize=8)
    tiny = 1e-12  # exact agreement drawn at the bottom of the log axis
    bottom.semilogy(steps, np.maximum(report["rel_loss"], tiny), color="tab:blue", lw=1.0,
                    label="|float32 - reference| / reference")
    if "rel_loss_float64" in report:
        bottom.semilogy(steps, np.maximum(report["rel_loss_float64"], tiny), color="tab:orange", lw=1.0,
                        label="|float64 - reference| / reference (the reference's rounding)")
        bottom.semilogy(steps, np.maximum(report["rel_loss_own"], tiny), color="tab:green", lw=0.8,
                        label="|float32 - float64| / reference (our rounding)")
        regime = report.get("rounding_regime_until")
        if regime is not None and regime < len(steps):
            bottom.axvline(regime + 0.5, color="gray", ls=":", lw=1.0,
                           label=f"end of the rounding regime (step {regime})")
    bottom.axhline(1e-3, color="red", ls="--", lw=0.8, label="divergence threshold 1e-3")
    bottom.set_xlabel("optimizer step")
    bottom.set_ylabel("relative loss difference")
    bottom.grid(alpha=0.3, which="both")
    bottom.legend(fontsize=7, loc="lower right")
    return _save(fig, path, "Top: the training loss of the official code and of recur_jax replaying the same "
                 "weights and batches. Bottom: their relative difference per step against the reference's own "
                 "float32 rounding (float64 vs float32); differences above the red line would be a divergence.")


def html_page(title: str, columns: Sequence[str], rows: Sequence[Sequence[Any]], images: Sequence[str],
              notes: Sequence[str] = ()) -> str:
    """A self-contained HTML page: the table (cells HTML-escaped), notes, then the images by relative path."""
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in columns)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in r) + "</tr>" for r in rows)
    notes_html = "".join(f"<p>{html.escape(n)}</p>" for n in notes)
    imgs = "".join(f'<figure><img src="{html.escape(os.path.basename(p))}" alt="{html.escape(os.path.basename(p))}">'
                   f"</figure>" for p in images)
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            "<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}"
            "td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}figure{display:inline-block;margin:8px}"
            "img{max-width:640px}</style></head>"
            f"<body><h1>{html.escape(title)}</h1><table><tr>{head}</tr>{body}</table>{notes_html}{imgs}</body></html>")
