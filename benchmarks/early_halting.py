"""Early halting at test time: what stopping a batch at the Q head's halt saves, on a trained run.

    python benchmarks/early_halting.py --workdir=runs/trm_sudoku_cpu [--thresholds=0,-0.5,-1] [--batches=4] [--tier=easy]

For each halting threshold (a logit: the Q head says halt when q_halt exceeds it), the same test batches
run twice, jitted: the reference's scan over the whole budget (`eval.halt=budget`, which also measures
the Q head's rule), and the `lax.while_loop` that stops a batch once all its rows have halted
(`eval.halt=q_halt`); then the same examples by continuous batching (`evaluate.stream_halting`: a row
that halts takes the next example, so halted rows stop costing compute). Prints one line per threshold:
exact accuracy under both rules, mean steps used per row, steps the batches ran, seconds per batch of
each (median of the batches, after a warm-up; continuous batching: its total time over the number of
batches), the share of time saved against the budget, and whether the streamed answers equal the scan's
answers at the Q head's halt.
"""

from __future__ import annotations

import atexit
import json
import shutil
import statistics
import tempfile
import time

from absl import app, flags

flags.DEFINE_string("workdir", None, "A training run's workdir.", required=True)
flags.DEFINE_list("thresholds", ["0", "-0.25", "-0.5", "-1"], "Halting thresholds (logits).")
flags.DEFINE_integer("batches", 4, "Test batches timed per setting.", lower_bound=1)
flags.DEFINE_string("tier", None, "Sudoku generator tier of the test puzzles (default: the run's).")


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


def _stream(run, batches, settings, preds_halt) -> dict:
    """Continuous batching over the concatenated `batches`: seconds per batch-equivalent (after a warm-up
    pass that compiles), row-steps spent, and agreement with the scan's answers at the Q head's halt."""
    import jax
    import numpy as np
    from flax import nnx

    from recur_jax.core import act
    from recur_jax.run import evaluate

    examples = {k: np.concatenate([np.asarray(b[k]) for b in batches]) for k in act.BATCH_KEYS}
    B = len(batches[0]["inputs"])
    fn = evaluate.jit_stream_step(run.graphdef, run.model_cfg, settings)
    model = nnx.merge(run.graphdef, run.params, run.buffers)
    carry0 = lambda: act.initial_carry(model, {k: v[:B] for k, v in examples.items()})  # noqa: E731
    args = (run.params, run.buffers, run.puzzle_table)
    evaluate.stream_halting(fn, args, {k: v[:B] for k, v in examples.items()}, carry0())  # compile
    t = time.perf_counter()
    out = evaluate.stream_halting(fn, args, examples, carry0())
    jax.block_until_ready(out["preds"])
    sec = time.perf_counter() - t
    same = float(np.mean(np.all(out["preds"] == np.concatenate(preds_halt), axis=-1)))
    return {"stream_s_per_batch": round(sec / len(batches), 4), "stream_steps_run": out["steps_run"],
            "stream_row_steps_per_example": round(out["row_steps"] / len(examples["inputs"]), 3),
            "stream_same_answers": same}


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
    data_root = F.workdir
    if F.tier:  # other test puzzles: built under a temporary directory, nothing is added to the run's
        run.config.data.tier, run.config.data.num_train = F.tier, 64
        data_root = tempfile.mkdtemp(prefix="early_halting_")
        atexit.register(shutil.rmtree, data_root, True)
    task = build_task(run.config.data, data_root)
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
                outs_budget = outs
                row["exact_budget"] = sum(float(o["exact_by_step"][-1]) for o in outs) / n
                row["exact_q_halt"] = sum(float(o["exact_halt_by_step"][-1]) for o in outs) / n
                steps = np.concatenate([np.minimum(o["halt_step"], s.halt_max_steps) for o in outs])
                row["mean_steps_used"] = float(steps.mean())
        row["saved"] = round(1 - row["q_halt_s_per_batch"] / row["budget_s_per_batch"], 3)
        row.update(_stream(run, batches, s, [o["preds_halt"] for o in outs_budget]))
        row["stream_saved"] = round(1 - row["stream_s_per_batch"] / row["budget_s_per_batch"], 3)
        print(json.dumps(row), flush=True)
    return 0


if __name__ == "__main__":
    app.run(main)
