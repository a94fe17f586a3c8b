"""Benchmark the training and evaluation steps of a config: one JSON line per config (or sweep value).

    python -m launch.benchmark --config=experiments/bench.py:trm_att
    python -m launch.benchmark --config=experiments/bench.py:trm_mlp --sweep=model.H_cycles=2,4,8,16
    python -m launch.benchmark --config=experiments/trm_sudoku.py:mlp --compile_only

Figures and their units: see `recur_jax.study.benchmark`.
"""

import json

from absl import app, flags

from launch import cli


cli.define_config("bench.py:trm_att")  # parsed here, with the --config.KEY overrides of the command line
flags.DEFINE_string("sweep", "", "KEY=V1,V2,...: one benchmark per value of config KEY (e.g. model.H_cycles=2,4,8,16).")
flags.DEFINE_integer("warmup", 2, "Untimed training steps after compilation.")
flags.DEFINE_integer("iters", 10, "Timed training steps (step_s is their median).")
flags.DEFINE_integer("eval_iters", 3, "Timed evaluation batches.")
flags.DEFINE_bool("eval", True, "Also compile and time the evaluation step.")
flags.DEFINE_bool("peak", True, "Measure the matmul peak in the same run (for MFU).")
flags.DEFINE_bool("xla_flops", True, "Cross-check the FLOP count with XLA's cost analysis of the unrolled step.")
flags.DEFINE_integer("peak_size", 0, "n of the n x n peak matmul (0: 2048 on CPU, 8192 on accelerators).")
flags.DEFINE_bool("compile_only", False, "Only compile the training step: compile_s and memory, no timing.")


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    from recur_jax.run import perf

    F = flags.FLAGS
    try:
        config = F.config
        _ = config.model
        hugepages = perf.apply_config(config)  # before the first JAX computation; may re-execute this command
        from recur_jax.study import benchmark
        values = [None]
        key = None
        if F.sweep:
            key, _, vals = F.sweep.partition("=")
            values = [v for v in vals.split(",") if v]
            if not key or not values:
                raise ValueError(f"--sweep={F.sweep!r}: expected KEY=V1,V2,...")
        for v in values:
            cfg = config.copy_and_resolve_references()
            if key is not None:
                benchmark.set_override(cfg, key, v)
            if F.compile_only:
                res = benchmark.compile_only(cfg)
            else:
                res = benchmark.run_benchmark(cfg, warmup=F.warmup, iters=F.iters, eval_iters=F.eval_iters,
                                              run_eval=F.eval, peak=F.peak, xla_flops=F.xla_flops,
                                              peak_size=F.peak_size or None)
            res["host_hugepages"] = hugepages
            if key is not None:
                res = {"sweep": key, "value": v, **res}
            print(json.dumps(res), flush=True)
    except (AttributeError, KeyError, TypeError) as e:  # an unknown --sweep key or a value of the wrong type
        raise app.UsageError(cli.one_line(e)) from e
    return 0


if __name__ == "__main__":
    cli.run(main)
