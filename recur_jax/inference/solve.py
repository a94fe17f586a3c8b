"""Solving Sudoku puzzles with a trained run (used by `launch.solve`)."""

from __future__ import annotations

import dataclasses
import os

import jax
import jax.numpy as jnp
import numpy as np

from recur_jax.core.losses import IGNORE_LABEL_ID
from recur_jax.run import evaluate
from recur_jax.run.checkpoint import load_for_inference
from recur_jax.tasks import sudoku


class SolveError(ValueError):
    """A puzzle argument or file that cannot be read (the message names it)."""


@dataclasses.dataclass
class Solution:
    """The model's answer to one puzzle.

    Attributes:
      question: [81] uint8 digits, 0 = blank.
      answer: [81] uint8 predicted digits (0 where the model predicted a non-digit token).
      valid: the answer is a complete valid Sudoku consistent with the givens.
      halt_step: first supervision step with q_halt > 0 (the model's own "done"), or None.
      confidence: sigmoid(q_halt) at halt_step (or at the last step).
      steps: supervision steps run.
    """

    question: np.ndarray
    answer: np.ndarray
    valid: bool
    halt_step: int | None
    confidence: float
    steps: int

    def render(self) -> str:
        """The grid and a status line, human-readable."""
        lines = []
        for r in range(9):
            row = "".join(str(d) if d else "." for d in self.answer[r * 9:(r + 1) * 9])
            lines.append(" ".join([row[0:3], row[3:6], row[6:9]]))
            if r in (2, 5):
                lines.append("")
        status = "valid solution, consistent with the givens" if self.valid else "NOT solved (invalid or inconsistent)"
        halt = (f"halting head said done at step {self.halt_step}/{self.steps}" if self.halt_step
                else f"halting head never said done in {self.steps} steps")
        return "\n".join(lines) + f"\n{status}; {halt}; confidence {self.confidence:.3f}"


def read_puzzles(arg: str) -> np.ndarray:
    """An 81-character puzzle string, or a file: one puzzle per line, or a Sudoku-Extreme CSV.

    An argument that is not 81 puzzle characters is taken as a file name; a file may start with a UTF-8
    byte-order mark (as `launch.main` accepts).

    Returns:
      [N, 81] uint8 digits, 0 = blank.
    Raises:
      SolveError / sudoku.SudokuDataError: a missing file, bytes that are not UTF-8, or a malformed
        puzzle (naming the file and line).
    """
    text = arg.strip()
    if not os.path.isfile(arg):
        if len(text) == 81 or (text and set(text) <= set(".0123456789")):
            return _parse(text, "puzzle argument")[None]
        raise SolveError(f"{arg}: no such file, and not a puzzle (81 characters of digits 1-9 and '.' or '0' "
                         f"for a blank)")
    try:
        with open(arg, encoding="utf-8-sig") as f:
            lines = [(i + 1, ln.strip()) for i, ln in enumerate(f) if ln.strip()]
    except UnicodeDecodeError as e:
        raise SolveError(f"{arg}: not UTF-8 text (byte {e.start}: {e.reason}); expected one puzzle per line or "
                         f"a Sudoku-Extreme CSV") from None
    if lines and lines[0][1].startswith("source,"):
        return sudoku.read_csv(arg).questions
    return np.stack([_parse(s, f"{arg}:{i}") for i, s in lines]) if lines else np.zeros((0, 81), np.uint8)


def _parse(text: str, where: str) -> np.ndarray:
    if len(text) != 81:
        raise SolveError(f"{where}: a puzzle has {len(text)} characters; expected 81 ('.' or '0' for a blank)")
    bad = sorted({ch for ch in text if ch not in ".0123456789"})
    if bad:
        raise SolveError(f"{where}: bad character(s) {bad}; expected digits 1-9 and '.' or '0' for a blank")
    return np.frombuffer(text.replace(".", "0").encode(), np.uint8) - ord("0")


def solve_puzzles(workdir: str, arg: str, *, steps: int = 0, checkpoint_step: int | None = None,
                  halt: str = "budget", samples: int = 1, noise_scale: float = 0.0, seed: int = 0,
                  select: str = "q_halt") -> list[Solution]:
    """Loads the run in `workdir` (EMA weights when EMA was on) and answers every puzzle in `arg`.

    Args:
      steps: supervision steps (0: the run's evaluation budget).
      halt: "budget" (the answer after the last step) or "q_halt" (the answer of the first step whose Q
        head says halt; the batch stops once every puzzle has halted).
      samples, noise_scale, seed, select: K noisy trajectories per puzzle, one answer kept by `select`
        (`run.evaluate.select_answers`); the halting step and confidence are the kept trajectory's.
    Raises:
      FileNotFoundError: not a workdir, or no checkpoint.
      SolveError: malformed puzzles, or a run that was not trained on Sudoku.
      ValueError: an invalid halt / samples / noise_scale / select.
    """
    questions = read_puzzles(arg)
    run = load_for_inference(workdir, checkpoint_step)
    if run.config.data.name != "sudoku":
        raise SolveError(f"{workdir} was trained on {run.config.data.name!r}, not sudoku")
    settings = evaluate.resolve_settings(run.config, run.model_cfg, halt=halt, samples=samples,
                                         noise_scale=noise_scale, noise_seed=seed, select=select,
                                         **({"halt_max_steps": steps} if steps else {}))
    n_steps, K = settings.halt_max_steps, settings.samples
    fn = evaluate.jit_eval_step(run.graphdef, run.model_cfg, settings)
    results = []
    bs = 64
    for b, start in enumerate(range(0, len(questions), bs)):
        q = questions[start:start + bs]
        qp = np.repeat(np.concatenate([q, np.zeros((bs - len(q), 81), np.uint8)]), K, axis=0)
        batch = {"inputs": jnp.asarray(sudoku.encode(qp)),
                 "labels": jnp.full(qp.shape, IGNORE_LABEL_ID, jnp.int32),
                 "puzzle_identifiers": jnp.zeros((bs * K,), jnp.int32)}
        extra = (jax.random.fold_in(jax.random.key(settings.seed), b),) if settings.noise_scale else ()
        out = jax.device_get(fn(run.params, run.buffers, run.puzzle_table, batch, *extra))
        answers = sudoku.decode(np.asarray(out["preds_halt" if halt == "q_halt" else "preds"]))
        q_halt = np.asarray(out["q_halt_logits"])  # [N, B * K]
        first = np.asarray(out["halt_step"])  # N + 1: never said halt
        at = np.minimum(first, n_steps) if halt == "q_halt" else np.full_like(first, n_steps)
        conf_logit = q_halt[at - 1, np.arange(q_halt.shape[1])]
        keep = evaluate.select_answers(answers.reshape(bs, K, -1), conf_logit.reshape(bs, K), settings.select)
        for i in range(len(q)):
            r = i * K + int(keep[i])
            halt_step = int(first[r]) if first[r] <= n_steps else None
            ans = answers[r].astype(np.uint8)
            valid = bool(sudoku.is_valid_solution(ans)) and bool(sudoku.is_consistent(q[i], ans))
            results.append(Solution(q[i], ans, valid, halt_step, float(jax.nn.sigmoid(conf_logit[r])), n_steps))
    return results
