"""Train and evaluate a model: parses flags, then calls `recur_jax.run.train.train_and_evaluate`.

    python -m launch.main                                  # TRM-MLP, ~5 min CPU demo on generated puzzles
    python -m launch.main --config=experiments/trm_sudoku.py:att --workdir=runs/trm_att \
        --config.data.path=/data/sudoku-extreme --config.total_steps=1000

Running the same command again resumes from the newest checkpoint in --workdir. SIGTERM or Ctrl-C
checkpoints the current step and exits 0 with the command that resumes. A workdir holding a run with
another config is refused unless --overwrite (move it to <workdir>/previous/) or --resume_anyway.
`--print_config` lists every config key (what `--config.KEY=VALUE` may set) with its value.
Several processes (hosts) are started by launch/local_multiprocess.py, launch/slurm.py or launch/tpu.py,
or by hand with --coordinator_address=HOST:PORT --num_processes=N --process_id=I (see
recur_jax/run/distributed.py).
"""

import shlex
import sys

from absl import app, flags

from launch import cli
from recur_jax.run import distributed

cli.define_config("trm_sudoku.py:mlp,cpu")  # parsed here, with the --config.KEY overrides of the command line
flags.DEFINE_string("workdir", "runs/trm_sudoku_cpu", "Output directory (checkpoints, metrics, summary).")
distributed.define_flags(flags)
flags.DEFINE_bool("overwrite", False, "The workdir holds another run: move its files to <workdir>/previous/<time>/ "
                  "and start over.")
flags.DEFINE_bool("print_config", False, "Print the resolved config (every key --config.KEY=VALUE can set, with its "
                  "value) and exit without training.")
flags.DEFINE_bool("resume_anyway", False, "The workdir holds a run with a different config: resume its newest "
                  "checkpoint under this config (the changed fields are recorded in run.json).")


def _task_metric(key: str, value) -> bool:
    """The task's own metrics (ARC pass@K, maze path_valid / path_optimal) in an evaluation result."""
    return isinstance(value, (int, float)) and (key.startswith("pass@") or key in ("path_valid", "path_optimal"))


def _metric_order(key: str):
    return (0, int(key[5:])) if key.startswith("pass@") and key[5:].isdigit() else (1, key)


def print_summary(summary: dict) -> None:
    """The final table on stdout: step, wall time, test examples, exact / cell / q_halt accuracy, mean
    steps, the task's own metrics (pass@K for ARC, path_valid / path_optimal for mazes), exact accuracy
    after each supervision step, and the state's fingerprint."""
    ev = summary["eval"]
    rows = [("step", summary["step"]), ("wall time (s)", f"{summary['wall_s']:.1f}"),
            ("test examples", ev.get("count")), ("exact_accuracy", f"{ev.get('exact_accuracy', 0):.4f}"),
            ("accuracy (cell)", f"{ev.get('accuracy', 0):.4f}"),
            ("q_halt_accuracy", f"{ev.get('q_halt_accuracy', 0):.4f}"), ("steps", f"{ev.get('steps', 0):.1f}")]
    rows += [(k, f"{ev[k]:.4f}") for k in sorted(ev, key=_metric_order) if _task_metric(k, ev[k])]
    by_step = ev.get("exact_accuracy_by_step") or []
    if by_step:
        rows.append(("exact_accuracy by step", " ".join(f"{x:.3f}" for x in by_step)))
    rows.append(("fingerprint", summary["fingerprint"][:16]))
    width = max(len(k) for k, _ in rows)
    print("\n" + "\n".join(f"{k.ljust(width)}  {v}" for k, v in rows))
    print(f"\nheld-out exact accuracy: {ev.get('exact_accuracy', 0):.4f}")


def main(argv):
    """Exit status as `launch.cli` (0 also after a preemption checkpoint; the line says how to resume)."""
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    try:
        config = flags.FLAGS.config  # overrides are applied here
        _ = config.total_steps  # a config file that failed to load raises only when read
    except (AttributeError, KeyError, ValueError, TypeError, OSError) as e:
        if flags.FLAGS.traceback:
            raise
        print(f"usage error: invalid --config or override: {cli.one_line(e)}", file=sys.stderr)
        return cli.EXIT_USAGE
    if flags.FLAGS.print_config:
        print(config)
        return 0
    from recur_jax.run import perf

    perf.apply_config(config)  # XLA reads its flags when the first backend starts; may re-execute this command
    try:
        distributed.initialize_from_flags(flags.FLAGS)
    except ValueError as e:  # the process flags or their environment variables
        raise app.UsageError(str(e)) from e
    from recur_jax.run.preemption import Preempted
    from recur_jax.run.train import train_and_evaluate

    try:
        summary = train_and_evaluate(config, flags.FLAGS.workdir, overwrite=flags.FLAGS.overwrite,
                                     resume_anyway=flags.FLAGS.resume_anyway)
    except Preempted as e:
        again = [a for a in sys.argv[1:] if a.split("=")[0] not in ("--overwrite", "--resume_anyway")]
        print(f"{e}. To resume, run the same command again: python -m launch.main {shlex.join(again)}",
              flush=True)
        return 0
    except KeyboardInterrupt:
        print(f"interrupted; run the same command again to resume from the last checkpoint in "
              f"{flags.FLAGS.workdir}", file=sys.stderr)
        return cli.EXIT_INTERRUPTED
    import jax

    if jax.process_index() == 0:
        print_summary(summary)
    return 0


if __name__ == "__main__":
    cli.run(main)
