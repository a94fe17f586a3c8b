"""Run a sweep: every run of an experiment's `get_sweep()`, locally N at a time, or as a SLURM job array
or a command list for a TPU pod.

    python -m launch.sweep --config=experiments/ablations/compute_vs_params.py:cpu --root=runs/study --parallel=2
    python -m launch.sweep --config=FILE:ARGS --root=DIR --mode=slurm --sbatch=--gres=gpu:1 > sweep.sbatch
    python -m launch.sweep --config=FILE:ARGS --root=DIR --mode=list      # one command per unfinished run

Run directories are `DIR/<overrides>` (e.g. `DIR/H_cycles=2,L_cycles=3,seed=0`); finished runs (with
summary.json) are skipped and unfinished ones resume from their checkpoints, so the same command
resumes a killed sweep. `--set KEY=VALUE` applies an override to every run; `--only=NAME` (repeatable) runs a
subset; `--smoke` runs every run for a few steps on a few test examples under DIR/smoke (the real runs are
untouched), to check a study end to end, report included, before spending hours on it.
Each finished run prints one line with its exact accuracy and wall time.
"""

import ast
import os
import sys

from absl import app, flags

from launch import cli

flags.DEFINE_string("config", None, "Experiment file[:args] that defines get_sweep(arg).", required=True)
flags.DEFINE_string("root", None, "Sweep directory; one subdirectory per run.", required=True)
flags.DEFINE_enum("mode", "local", ["local", "slurm", "list"],
                  "local: run here; slurm: print a job-array script; list: print one command per unfinished run.")
flags.DEFINE_integer("parallel", None, "local: runs at a time (default 1); slurm: array tasks at a time "
                     "(default 0: no limit).")
flags.DEFINE_multi_string("only", [], "Run only this run (its directory name, as --dry_run lists it; repeatable).")
flags.DEFINE_multi_string("set", [], "KEY=VALUE override for every run (Python literal or plain string).")
flags.DEFINE_multi_string("sbatch", [], "Extra #SBATCH option for --mode=slurm, e.g. --time=12:00:00.")
flags.DEFINE_bool("smoke", False, "Check the whole sweep end to end in minutes: every run for 8 steps and 32 test "
                  "examples (recur_jax.study.sweep.SMOKE_SETS), under ROOT/smoke (the real runs are untouched).")
flags.DEFINE_bool("dry_run", False, "Print the runs and whether each is finished; run nothing.")
flags.DEFINE_string("compilation_cache", "jax_cache", "local: JAX persistent compilation cache shared by the runs "
                    "(relative to --root; runs that differ only in seed then compile once); '' to disable.")


def parse_sets(items: list[str]) -> dict:
    """`["seed=1", "data.path=/x"]` -> `{"seed": 1, "data.path": "/x"}`; raises ValueError naming the item."""
    out = {}
    for item in items:
        key, eq, text = item.partition("=")
        if not eq or not key:
            raise ValueError(f"--set {item!r}: expected KEY=VALUE")
        try:
            out[key] = ast.literal_eval(text)
        except (ValueError, SyntaxError):
            out[key] = text
    return out


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    from recur_jax.io import paths
    from recur_jax.study import sweep

    F = flags.FLAGS
    root = paths.join(F.root, "smoke") if F.smoke else F.root
    try:
        common = parse_sets(F.set)
        runs = sweep.expand(F.config, root, overrides=common, final=sweep.SMOKE_SETS if F.smoke else None)
    except (ValueError, FileNotFoundError) as e:
        raise app.UsageError(str(e)) from e
    if F.only:
        unknown = sorted(set(F.only) - {r.name for r in runs})
        if unknown:
            raise app.UsageError(f"--only: no run named {unknown}; the runs are {[r.name for r in runs]}")
    every_run = runs  # the manifest (sweep.json, read by launch.report) always lists the whole sweep
    runs = [r for r in runs if not F.only or r.name in F.only]
    if F.dry_run:
        for r in runs:
            print(f"{'finished' if r.finished() else 'todo    '}  {r.workdir}")
        return 0
    sweep.write_manifest(root, F.config, every_run, {**common, **(sweep.SMOKE_SETS if F.smoke else {})})
    if F.mode == "slurm":
        print(sweep.slurm_array_script(runs, root, parallel=F.parallel or 0, sbatch=F.sbatch), end="")
        return 0
    if F.mode == "list":
        print(sweep.command_list(runs), end="")
        return 0
    env = {}
    if F.compilation_cache and "JAX_COMPILATION_CACHE_DIR" not in os.environ:
        # under the real root, so that --smoke runs and the real ones share it; JAX takes gs:// cache dirs too
        env = {"JAX_COMPILATION_CACHE_DIR": paths.join(paths.absolute(F.root), F.compilation_cache),
               "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0"}
    codes = sweep.run_local(runs, parallel=1 if F.parallel is None else F.parallel, env=env)
    failed = [n for n, c in codes.items() if c != 0]
    print(f"{len(codes) - len(failed)}/{len(codes)} runs finished; report: python -m launch.report --root={root}")
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    cli.run(main)
