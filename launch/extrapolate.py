"""Evaluate a study's finished runs on larger instances at growing test-time budgets, and report.

    python -m launch.sweep --config=experiments/ablations/extrapolation.py:prefix_sum,cpu --root=runs/ext_ps
    python -m launch.extrapolate --config=experiments/ablations/extrapolation.py:prefix_sum,cpu --root=runs/ext_ps

For every finished run of the sweep (the experiment's `get_sweep`) and every size of its
`get_eval_plan(arg)`, one evaluation `RUN/evals/size<n>/` (reused when already written with the same
overrides), then `<root>/extrapolation/report.{md,html,json}` with the plots: exact accuracy against
instance size per row, and against test-time steps per size for each row (`recur_jax.study.extrapolation`).
Unfinished runs are listed and skipped. `--smoke` reports the runs of `launch.sweep --smoke` (ROOT/smoke)
at the smallest and largest size on 32 examples each. Exit status as `launch.cli`.
"""

import os

from absl import app, flags

from launch import cli

flags.DEFINE_string("config", None, "The study's experiment file[:args] (as given to launch.sweep).", required=True)
flags.DEFINE_string("root", None, "The sweep directory.", required=True)
flags.DEFINE_list("only", [], "Evaluate only these runs (their directory names, e.g. trm_conv).")
flags.DEFINE_bool("smoke", False, "The runs of `launch.sweep --smoke` (under ROOT/smoke) at the plan's smallest and "
                  "largest size, on 32 examples each: the study's report end to end in minutes.")


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    from recur_jax.io import paths
    from recur_jax.study import extrapolation, sweep

    F = flags.FLAGS
    root = paths.join(F.root, "smoke") if F.smoke else F.root
    module, _, arg = sweep.load_experiment(F.config)
    runs = sweep.expand(F.config, root)
    labels = [r.name for r in runs]  # the run directory names: the rows' "_name"s in the extrapolation study
    unknown = sorted(set(F.only) - set(labels))
    if unknown:
        raise app.UsageError(f"--only: unknown rows {unknown}; the rows are {labels}")
    plan = extrapolation.load_plan(module, arg)
    if F.smoke:
        plan = [dict(item, overrides={**item["overrides"], "eval.max_examples": sweep.SMOKE_EXAMPLES})
                for item in (plan[:1] + plan[-1:] if len(plan) > 1 else plan)]  # the smallest and largest size
    results, names = [], []
    for run, label in zip(runs, labels):
        if F.only and label not in F.only:
            continue
        if not run.finished():
            print(f"{label}: not finished ({run.workdir}); skipped", flush=True)
            continue
        results.append(extrapolation.evaluate_sizes(run.workdir, plan, log=lambda line: print(line, flush=True)))
        names.append(label)
    if not results:
        return cli.fail(f"no finished run under {root}; run `python -m launch.sweep --config={F.config} "
                        f"--root={F.root}{' --smoke' if F.smoke else ''}` first")
    train_size = getattr(module, "TRAIN_SIZE", {}).get(results[0]["config"]["data"]["name"], 0)
    written = extrapolation.report(root, results, names, train_size)
    print(paths.read_bytes(written["md"]).decode())
    print(f"report: {written['html'] if paths.is_url(written['html']) else os.path.relpath(written['html'])}")
    return 0


if __name__ == "__main__":
    cli.run(main)
