"""Early halting at test time: what stopping a batch at the Q head's halt saves, on a trained run.

    python benchmarks/early_halting.py --workdir=runs/trm_sudoku_cpu [--thresholds=0,-0.5,-1] [--batches=4]

For each halting threshold (a logit: the Q head says halt when q_halt exceeds it), the same test batches
run twice, jitted: the reference's scan over the whole budget (`eval.halt=budget`, which also measures
the Q head's rule), and the `lax.while_loop` that stops a batch once all its rows have halted
(`eval.halt=q_halt`). Prints one line per threshold: exact accuracy under both rules, mean steps used
per row, steps the batches ran, and seconds per batch of each (median of the batches, after a warm-up).
"""

from __future__ import annotations

import json
import statistics
import time

from absl import app, flags

flags.DEFINE_string("workdir", None, "A training run's workdir.", required=True)
flags.DEFINE_list("thresholds", ["0", "-0.25", "-0.5", "-1"], "Halting thresholds (logits).")
flags.DEFINE_integer("batches", 4, "Test batches timed per setting.", lower_bound=1)


def _time(fn, args_list):
    import jax

    jax.block_until_ready(fn(*args_list[0]))  # compile
    times, outs = [], []
    for args in args_list:
        t = time.perf_counter()
        out = jax.block_until_ready(fn(*args))
        times.append(time.perf_counter() - t)
        outs.append(jax.device_get(out))
    return statistics.median(times), outs


def main(argv):
    import numpy as np
    from absl import logging

    logging.set_verbosity(logging.WARNING)  # TFDS's INFO lines about the data being read

    from recur_jax.run import evaluate
    from recur_jax.run.checkpoint import load_for_inference
    from recur_jax.tasks.loader import eval_batches
    from recur_jax.tasks.registry import build_task

    F = flags.FLAGS
    run = load_for_inference(F.workdir)
    task = build_task(run.config.data, F.workdir)
    base = evaluate.resolve_settings(run.config, run.model_cfg)
    batches = [b for b, _ in eval_batches(task.test, global_batch_size=base.global_batch_size,
                                          to_example=task.test_transform, process_index=0, process_count=1,
                                          max_examples=F.batches * base.global_batch_size)]
    args = [(run.params, run.buffers, run.puzzle_table, b) for b in batches]
    for t in (float(x) for x in F.thresholds):
        row = {"threshold": t}
        for halt in ("budget", "q_halt"):
            s = evaluate.resolve_settings(run.config, run.model_cfg, halt=halt, halt_threshold=t)
            sec, outs = _time(evaluate.jit_eval_step(run.graphdef, run.model_cfg, s), args)
            n = sum(float(o["count"]) for o in outs)
            row[f"{halt}_s_per_batch"] = round(sec, 4)
            row[f"{halt}_steps_run"] = float(np.mean([o["steps_run"] for o in outs]))
            if halt == "budget":
                row["exact_budget"] = sum(float(o["exact_by_step"][-1]) for o in outs) / n
                row["exact_q_halt"] = sum(float(o["exact_halt_by_step"][-1]) for o in outs) / n
                steps = np.concatenate([np.minimum(o["halt_step"], s.halt_max_steps) for o in outs])
                row["mean_steps_used"] = float(steps.mean())
        row["saved"] = round(1 - row["q_halt_s_per_batch"] / row["budget_s_per_batch"], 3)
        print(json.dumps(row), flush=True)
    return 0


if __name__ == "__main__":
    app.run(main)
