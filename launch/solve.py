"""Solve Sudoku puzzles with a trained run.

    python -m launch.solve --workdir=runs/trm_sudoku_cpu 4.....8.5.3..........7......2.....6.....8.4......1.......6.3.7.5..2.....1.4......
    python -m launch.solve --workdir=runs/trm_sudoku_cpu puzzles.txt   # one puzzle per line (or a Sudoku-Extreme CSV)

For each puzzle: the predicted grid, whether it is a valid Sudoku consistent with the givens, the
supervision step at which the model's halting head first said "done" (q_halt > 0) and its confidence
sigmoid(q_halt). The model runs the evaluation budget (eval.halt_max_steps, or --steps).
"""


from absl import app, flags

from launch import cli

flags.DEFINE_string("workdir", None, "A training workdir (run.json + checkpoints/).", required=True)
flags.DEFINE_integer("steps", 0, "Supervision steps (0: the run's eval.halt_max_steps).", lower_bound=0)
flags.DEFINE_integer("checkpoint_step", None, "Checkpoint step to load (default: newest).", lower_bound=0)
flags.DEFINE_enum("halt", "budget", ["budget", "q_halt"], "budget: the answer after the last step; q_halt: the "
                  "answer of the first step whose Q head says halt.")
flags.DEFINE_integer("samples", 1, "K noisy trajectories per puzzle; the Q head (--select) keeps one.", lower_bound=1)
flags.DEFINE_float("noise_scale", 0.3, "Sigma of the noise added to the latents at every step when --samples > 1.",
                   lower_bound=0.0)
flags.DEFINE_integer("seed", 0, "Noise seed (the same seed gives the same answers).", lower_bound=0)
flags.DEFINE_enum("select", "q_halt", ["q_halt", "vote", "q_halt_vote"], "How one of the K answers is kept.")


def main(argv):
    """Exit status as `launch.cli`: 0 every puzzle solved, 3 some left unsolved, 1 an input that cannot
    be read (the line names the file and line), 2 usage."""
    if len(argv) != 2:
        raise app.UsageError("give one puzzle (81 characters, '.' or '0' for blanks) or a file of puzzles")
    from recur_jax.inference.solve import solve_puzzles

    F = flags.FLAGS
    results = solve_puzzles(F.workdir, argv[1], steps=F.steps, checkpoint_step=F.checkpoint_step, halt=F.halt,
                            samples=F.samples, noise_scale=F.noise_scale if F.samples > 1 else 0.0, seed=F.seed,
                            select=F.select)
    if not results:
        return cli.fail(f"no puzzles in {argv[1]}")
    solved = 0
    for r in results:
        print(r.render())
        print()
        solved += r.valid
    print(f"{solved}/{len(results)} puzzles solved (valid and consistent with the givens)")
    return 0 if solved == len(results) else cli.EXIT_NEGATIVE


if __name__ == "__main__":
    cli.run(main)
