"""Maze evaluation beyond exact match: the share of predicted paths that are valid / optimal.

`maze.path_validity` per test row (rows without labels, i.e. padding, are skipped); optionally an
HTML report with the first mazes (question, target, prediction) as PNGs.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from recur_jax.core.losses import IGNORE_LABEL_ID
from recur_jax.io import paths
from recur_jax.tasks import images
from recur_jax.tasks import maze


class MazeEvaluator:
    """Counts valid and optimal predicted paths over one evaluation round.

    Args:
      report_dir: where to write `index.html` and PNGs after each round ("" or None: no report).
      report_num: mazes shown in the report.
    """

    def __init__(self, report_dir: str | None = None, report_num: int = 8):
        self.report_dir = report_dir or None
        self.report_num = int(report_num)
        self.begin()

    def begin(self) -> None:
        """Starts a round (clears the counts and the kept examples)."""
        self.count = self.valid = self.optimal = 0
        self.examples: list[tuple[np.ndarray, np.ndarray, np.ndarray, bool, bool]] = []

    def update(self, batch: dict[str, np.ndarray], preds: np.ndarray, q_halt_logits: np.ndarray) -> None:
        """Adds a global batch: inputs [B, 900] question tokens, labels [B, 900], preds [B, 900]."""
        inputs, labels, preds = np.asarray(batch["inputs"]), np.asarray(batch["labels"]), np.asarray(preds)
        for b in range(len(inputs)):
            if np.all(labels[b] == IGNORE_LABEL_ID):
                continue
            valid, optimal = maze.path_validity(inputs[b], preds[b])
            self.count += 1
            self.valid += valid
            self.optimal += optimal
            if len(self.examples) < self.report_num:
                self.examples.append((inputs[b].copy(), labels[b].copy(), preds[b].copy(), valid, optimal))

    def result(self) -> dict[str, Any]:
        """{"path_valid": share of valid paths, "path_optimal": share of valid optimal paths}; writes the report."""
        n = max(self.count, 1)
        out = {"path_valid": self.valid / n, "path_optimal": self.optimal / n}
        if self.report_dir:
            self.write_report(out)
        return out

    def write_report(self, summary: dict[str, Any]) -> str:
        """index.html with question / target / prediction PNGs of the kept mazes; returns its path."""
        png = paths.join(self.report_dir, "png")
        paths.makedirs(png)
        parts = ["<!doctype html><html><head><meta charset='utf-8'><title>Maze report</title></head><body>",
                 f"<h1>Maze report</h1>{images.summary_table(summary)}",
                 "<p>dark: wall, light: open, green: S, red: G, blue: path</p>"]
        for i, (q, lab, pred, valid, optimal) in enumerate(self.examples):
            figs = []
            for name, tokens in (("question", q), ("target", lab), ("prediction", pred)):
                t = np.clip(np.where(tokens == IGNORE_LABEL_ID, 0, tokens), 0, 5)
                images.maze_png(t, paths.join(png, f"m{i:03d}_{name}.png"))
                figs.append(f"<figure style='display:inline-block'><img src='png/m{i:03d}_{name}.png'>"
                            f"<figcaption>{name}</figcaption></figure>")
            exact = bool(np.array_equal(lab, pred))
            parts.append(f"<h3>maze {i}: exact {exact}, valid path {valid}, optimal {optimal}</h3>" + "".join(figs))
        parts.append("</body></html>")
        path = paths.join(self.report_dir, "index.html")
        paths.write_text_atomic(path, "\n".join(parts))
        return path
