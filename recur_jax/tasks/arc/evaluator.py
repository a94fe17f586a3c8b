"""ARC evaluation: map predictions back to the original frame, vote, and score pass@K.

Follows the reference evaluator (TinyRecursiveModels `evaluators/arc.py`, TRM.md 7.2):

  1. rows with puzzle identifier 0 (padding) are dropped;
  2. the input and the prediction of each row are cropped at EOS/PAD (`arc.crop`) and mapped back by
     the version's inverse (inverse dihedral transform, then inverse colour map);
  3. the prediction is a vote for (task, original test input), with sigmoid(q_halt) in float64;
  4. per test input, distinct predicted grids are ranked by (vote count, mean sigmoid(q_halt)),
     descending; pass@K = 1 when the true output is among the first K;
  5. a task's score is the mean over its test inputs; `pass@K` is the mean over tasks.

With `aggregated_voting` (the reference default) the votes of every evaluation round are pooled
(`begin` never clears them); without it each round starts empty.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import numpy as np

from recur_jax.io import paths
from recur_jax.tasks import arc

DEFAULT_PASS_KS = (1, 2, 5, 10, 100, 1000)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, np.float64)
    return 1.0 / (1.0 + np.exp(-x))


class ArcEvaluator:
    """Collects votes over evaluation batches and scores pass@K.

    Args:
      metadata: the data's metadata (`arc_tfds.build_arc(...)["metadata"]`): `augmentations`
        (id -> {"task", "t", "colors"}) and `test_tasks` (task -> public JSON with test outputs).
      pass_ks: the K of pass@K.
      aggregated_voting: pool votes across evaluation rounds (reference default True).
      report_dir: where `result()` writes the HTML report (None: no report); only process 0 should set it.
      report_tasks: task names shown in the report.
    Raises:
      ValueError: empty or non-positive pass_ks; metadata without test tasks.

    With sampled trajectories (`eval.samples=K`), every one of the K answers of an augmented input is a
    candidate of the vote (`votes_over_samples`), weighted like any other by its sigmoid(q_halt).
    """

    votes_over_samples = True  # `run.evaluate.evaluate` passes all K sampled rows, not the selected one

    def __init__(self, metadata: dict[str, Any], pass_ks: Sequence[int] = DEFAULT_PASS_KS,
                 aggregated_voting: bool = True, report_dir: str | None = None,
                 report_tasks: Sequence[str] = ()):
        if not pass_ks or any(int(k) < 1 for k in pass_ks):
            raise ValueError(f"pass_ks={list(pass_ks)}; expected positive ints")
        if not metadata.get("test_tasks"):
            raise ValueError("ARC metadata has no test_tasks; expected the held-out tasks with outputs")
        self.pass_ks = tuple(sorted({int(k) for k in pass_ks}))
        self.report_dir = report_dir or None
        self.report_tasks = list(report_tasks)
        self.aggregated_voting = bool(aggregated_voting)
        self.test_tasks = metadata["test_tasks"]
        self._augs: list[tuple[str, arc.Augmentation] | None] = [None]
        for a in metadata["augmentations"][1:]:
            self._augs.append((a["task"], arc.Augmentation(int(a["t"]), np.asarray(a["colors"], np.uint8))))
        # (task, input key) -> {prediction key: [count, sum of sigmoid(q_halt)]}
        self.votes: dict[tuple[str, bytes], dict[bytes, list]] = {}
        self.grids: dict[bytes, np.ndarray] = {}
        self.ranked: dict[str, list[dict[str, Any]]] = {}

    def begin(self) -> None:
        """Starts an evaluation round: clears the votes unless votes are aggregated."""
        if not self.aggregated_voting:
            self.votes.clear()
            self.grids.clear()

    def update(self, batch: dict[str, np.ndarray], preds: np.ndarray, q_halt_logits: np.ndarray) -> None:
        """Adds one global batch of predictions.

        Args:
          batch: inputs [B, 900] int, puzzle_identifiers [B] int (0 = padding row, skipped).
          preds: [B, 900] int tokens (argmax after the last step).
          q_halt_logits: [B] float, the last step's halting logits.
        Raises:
          ValueError: a puzzle identifier outside the metadata's range.
        """
        ids = np.asarray(batch["puzzle_identifiers"]).reshape(-1)
        inputs, preds = np.asarray(batch["inputs"]), np.asarray(preds)
        q = _sigmoid(np.asarray(q_halt_logits).reshape(-1))
        for b in np.flatnonzero(ids != 0):
            pid = int(ids[b])
            if not 0 < pid < len(self._augs):
                raise ValueError(f"puzzle identifier {pid} outside 1..{len(self._augs) - 1} of the ARC metadata")
            task, aug = self._augs[pid]
            inp = aug.invert(arc.crop(inputs[b]))
            pred = aug.invert(arc.crop(preds[b]))
            pk = arc.grid_key(pred)
            self.grids.setdefault(pk, pred)
            entry = self.votes.setdefault((task, arc.grid_key(inp)), {}).setdefault(pk, [0, 0.0])
            entry[0] += 1
            entry[1] += float(q[b])

    def result(self) -> dict[str, float]:
        """pass@K per task averaged over its test inputs, then over tasks.

        Returns:
          {"pass@1": float, "pass@2": float, ..., "num_tasks": int, "num_test_inputs": int,
           "voted_test_inputs": int (inputs that received at least one vote)}. Writes the report to
          `report_dir` when set (index.html, png/, and submission.json: the top-2 per test input).
        """
        per_task = {k: [] for k in self.pass_ks}
        voted = n_inputs = 0
        self.ranked = {}
        for task, spec in self.test_tasks.items():
            hits = {k: [] for k in self.pass_ks}
            ranked_task = []
            for pair in spec["test"]:
                n_inputs += 1
                inp = np.asarray(pair["input"], np.uint8)
                target = arc.grid_key(np.asarray(pair["output"], np.uint8))
                cands = self.votes.get((task, arc.grid_key(inp)), {})
                voted += bool(cands)
                order = sorted(cands.items(), key=lambda kv: (kv[1][0], kv[1][1] / kv[1][0]), reverse=True)
                keys = [k for k, _ in order]
                for k in self.pass_ks:
                    hits[k].append(float(target in keys[:k]))
                ranked_task.append([{"grid": self.grids[k], "votes": v[0], "mean_q": v[1] / v[0],
                                     "correct": k == target} for k, v in order[:2]])
            self.ranked[task] = ranked_task
            for k in self.pass_ks:
                per_task[k].append(float(np.mean(hits[k])))
        out: dict[str, float] = {f"pass@{k}": float(np.mean(v)) for k, v in per_task.items()}
        out.update(num_tasks=len(self.test_tasks), num_test_inputs=n_inputs, voted_test_inputs=voted)
        if self.report_dir:
            from recur_jax.tasks import images

            images.write_arc_report(self.report_dir, self.test_tasks, self.ranked, self.report_tasks,
                                    "ARC evaluation report", out)
            paths.write_text_atomic(paths.join(self.report_dir, "submission.json"), json.dumps(self.submission()))
        return out

    def submission(self) -> dict[str, list[dict[str, list]]]:
        """Kaggle-style top-2 per test input (the first repeated when there is one), after `result()`.

        Returns:
          {task: [{"attempt_1": grid lists, "attempt_2": grid lists}, ...]} (empty grids when no vote).
        """
        out = {}
        for task, pairs in self.ranked.items():
            out[task] = []
            for top in pairs:
                grids = [t["grid"].tolist() for t in top] or [[]]
                out[task].append({"attempt_1": grids[0], "attempt_2": grids[1] if len(grids) > 1 else grids[0]})
        return out
