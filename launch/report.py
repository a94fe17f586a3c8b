"""Tabulate a sweep: mean and std over seeds of every run's final figures.

    python -m launch.report --root=runs/study    # writes runs/study/report.{csv,md,html} and plots, prints the table

Rows group the runs that differ only in `seed`; unfinished runs are counted, not averaged.
"""


from absl import app, flags

from launch import cli

flags.DEFINE_string("root", None, "Sweep directory (written by launch.sweep).", required=True)
flags.DEFINE_list("metrics", ["eval.exact_accuracy", "eval.accuracy", "eval.steps", "wall_s"],
                  "Metrics shown in the Markdown table (the CSV has all of them).")
flags.DEFINE_bool("plots", True, "Write the plots (PNG) and report.html.")
flags.DEFINE_bool("analyze", True, "Load each finished run's checkpoint for the test-time-compute, latent-residual "
                  "and halting plots (cached in the run's analysis.json).")
flags.DEFINE_integer("max_examples", 256, "Test examples per run for the analysis.")
flags.DEFINE_bool("memory", False, "Compile each row's training step (without running it) and add XLA's temp bytes "
                  "to the table (gradient-truncation memory).")


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    from recur_jax.io import paths
    from recur_jax.study import results

    F = flags.FLAGS
    try:
        keys, rows = results.table(F.root)
    except (FileNotFoundError, ValueError) as e:
        return cli.fail(str(e))
    if F.memory:
        results.add_memory(F.root, keys, rows)
    md = results.to_markdown(keys, rows, F.metrics)
    for name, text in (("report.csv", results.to_csv(keys, rows)), ("report.md", md)):
        paths.write_text_atomic(paths.join(F.root, name), text)
    print(md, end="")
    print(f"\nwrote {paths.join(F.root, 'report.csv')} and report.md")
    if F.plots:
        images = results.write_plots(F.root, analyze=F.analyze, max_examples=F.max_examples, results=(keys, rows))
        print(f"wrote {len(images)} plots and {paths.join(F.root, 'report.html')}")
    return 0


if __name__ == "__main__":
    cli.run(main)
