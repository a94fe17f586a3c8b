"""Solve Sudoku puzzles with a trained run.

    python -m launch.solve --workdir=runs/trm_sudoku_cpu 4.....8.5.3..........7......2.....6.....8.4......1.......6.3.7.5..2.....1.4......
    python -m launch.solve --workdir=runs/trm_sudoku_cpu puzzles.txt   # one puzzle per line (or a Sudoku-Extreme CSV)

For each puzzle: the predicted grid, whether it is a valid Sudoku consistent with the givens, the
supervision step at which the model's halting head first said "done" (q_halt > 0) and its confidence
sigmoid(q_halt). The model runs the evaluation budget (eval.halt_max_steps, or --steps).
"""

import sys

from absl import app, flags

flags.DEFINE_string("workdir", None, "A training workdir (run.json + checkpoints/).", required=True)
flags.DEFINE_integer("steps", 0, "Supervision steps (0: the run's eval.halt_max_steps).")
flags.DEFINE_integer("checkpoint_step", None, "Checkpoint step to load (default: newest).")


def main(argv):
    if len(argv) != 2:
        raise app.UsageError("give one puzzle (81 characters, '.' or '0' for blanks) or a file of puzzles")
    from recur_jax.run.checkpoint import CheckpointError
    from recur_jax.inference.solve import SolveError, solve_puzzles

    try:
        results = solve_puzzles(flags.FLAGS.workdir, argv[1], steps=flags.FLAGS.steps,
                                checkpoint_step=flags.FLAGS.checkpoint_step)
    except (SolveError, FileNotFoundError, ValueError, CheckpointError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    if not results:
        print("error: no puzzles in the input", file=sys.stderr)
        return 1
    solved = 0
    for r in results:
        print(r.render())
        print()
        solved += r.valid
    print(f"{solved}/{len(results)} puzzles solved (valid and consistent with the givens)")
    return 0 if solved == len(results) else 3


if __name__ == "__main__":
    app.run(main)
