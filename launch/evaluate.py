"""Evaluate a run's checkpoint at any test-time budget, without changing anything the run owns.

    python -m launch.evaluate --workdir=runs/trm_sudoku_cpu                          # newest step, EMA weights
    python -m launch.evaluate --workdir=RUN --config.eval.halt_max_steps=32          # a larger budget
    python -m launch.evaluate --workdir=RUN --config.data.tier=hard --config.data.num_test=1000
    python -m launch.evaluate --workdir=RUN --config.eval.halt=q_halt               # stop at the Q head's halt

The run's recorded config (run.json) is the base; `--config.KEY=VALUE` may change `eval.*` and `data.*`
fields only. Results go to RUN/evals/<name>/ (summary.json, metrics.jsonl, accuracy_by_step.png; see
`recur_jax.study.evaluation`). Exit status as `launch.cli` (2: a training field, an unknown key or a
budget below 1).
"""

import sys

from absl import app, flags
from ml_collections import config_flags

from launch import cli

flags.DEFINE_string("workdir", None, "A training run's workdir (run.json + checkpoints/).", required=True)
flags.DEFINE_integer("step", None, "Checkpoint step (default: the newest).", lower_bound=0)
flags.DEFINE_enum("weights", "ema", ["ema", "raw"], "EMA weights (when the run has EMA) or the raw ones.")
flags.DEFINE_string("name", None, "Folder under RUN/evals/ (default: step<S>-<weights> plus the overrides).")
flags.DEFINE_list("samples_grid", [], "Test-time compute report: one evaluation per K (e.g. 1,2,4,8; noise from "
                  "--config.eval.noise_scale) and RUN/evals/compute-*/compute.{png,html,json}.")


def _workdir_in(argv) -> str | None:
    for i, a in enumerate(argv):
        if a.startswith("--workdir="):
            return a.split("=", 1)[1]
        if a == "--workdir" and i + 1 < len(argv):
            return argv[i + 1]
    return None


def define_config(argv) -> None:
    """`--config` is the run's recorded config, so that `--config.KEY=VALUE` overrides are typed and
    checked against it (an empty one when the workdir has no readable run.json: main says why)."""
    import ml_collections

    config = ml_collections.ConfigDict()
    workdir = _workdir_in(argv)
    if workdir:
        from recur_jax.run.checkpoint import read_run_record

        from recur_jax.study.evaluation import with_eval_defaults

        try:  # fields an older run predates are added with the values that reproduce its evaluation
            config = ml_collections.ConfigDict(with_eval_defaults(read_run_record(workdir)["config"]))
        except (OSError, ValueError):
            pass  # reported by main with the file named
    try:  # the command line's overrides are parsed here: an unknown key fails now
        config_flags.DEFINE_config_dict("config", config, "The run's config with eval.* / data.* overrides.",
                                        lock_config=True)
    except (AttributeError, KeyError, TypeError, ValueError, flags.Error) as e:
        if "--traceback" in argv:
            raise
        print(f"usage error: invalid --config override: {cli.one_line(e)}", file=sys.stderr)
        sys.exit(cli.EXIT_USAGE)


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    from recur_jax.run.checkpoint import read_run_record
    from recur_jax.study.evaluation import config_overrides, evaluate_run

    F = flags.FLAGS
    recorded = read_run_record(F.workdir)["config"]  # FileNotFoundError / ValueError name the file
    for a in sys.argv[1:]:  # an explicit budget of 0 (the config's "default" value) is refused too
        if a.startswith("--config.eval.halt_max_steps=") and a.split("=", 1)[1].strip() in ("0", "-0"):
            raise app.UsageError("--config.eval.halt_max_steps=0: expected a budget of at least 1 supervision step")
    try:
        config = F.config  # the --config.KEY=VALUE overrides are applied (and checked) here
        config_overrides(recorded, config.to_dict())
    except (AttributeError, KeyError, TypeError, ValueError) as e:  # unknown key, wrong type, training field
        raise app.UsageError(cli.one_line(e)) from e
    if F.samples_grid:
        from recur_jax.study.evaluation import compute_report

        try:
            grid = [int(k) for k in F.samples_grid]
        except ValueError as e:
            raise app.UsageError(f"--samples_grid={','.join(F.samples_grid)}: expected integers") from e
        report = compute_report(F.workdir, config, grid, step=F.step, weights=F.weights, name=F.name)
        for row in report["table"]:
            print("  " + " | ".join(str(v) if not isinstance(v, float) else f"{v:.4g}" for v in row.values()))
        print(f"wrote {report['png'].rsplit('/', 1)[0]}/ (compute.png, compute.html, compute.json)")
        return 0
    s = evaluate_run(F.workdir, config, step=F.step, weights=F.weights, name=F.name)
    ev, h = s["eval"], s["eval"]["halting"]
    N = s["settings"]["halt_max_steps"]
    print(f"step {s['step']} ({s['weights']} weights), {ev['count']} test examples, budget N={N}, "
          f"halt={s['settings']['halt']}")
    if s["settings"]["halt"] == "budget" and "sampling" not in ev:
        print(f"  every row runs N steps:      exact_accuracy {ev['exact_accuracy']:.4f}")
    print(f"  stop at the Q head's halt:   exact_accuracy {h['exact_accuracy']:.4f}, mean steps used "
          f"{h['steps_mean']:.2f} of {N} (never halted: {h['never_halted']:.1%}; steps run per batch "
          f"{h['steps_run_mean']:.2f})")
    print(f"  exact accuracy by budget n{' (per sample)' if 'sampling' in ev else ''}:  " + " ".join(f"{x:.3f}" for x in ev["exact_accuracy_by_step"]))
    if "sampling" in ev:
        sm = ev["sampling"]
        rules = ", ".join(f"{r} {v:.4f}" for r, v in sm["exact_accuracy_by_select"].items())
        print(f"  {sm['samples']} samples (noise {sm['noise_scale']:g}): chosen by {rules}; one sample "
              f"{sm['exact_accuracy_per_sample']:.4f}; any of them (pass@{sm['samples']}) {sm['pass_at_k']:.4f}")
    print(f"wrote {s['plot'].rsplit('/', 1)[0]}/ (summary.json, metrics.jsonl, accuracy_by_step.png)")
    return 0


if __name__ == "__main__":
    define_config(sys.argv)
    cli.run(main)
