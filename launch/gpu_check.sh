#!/usr/bin/env bash
# GPU check of issue 8: the paper Sudoku TRM-MLP configuration (batch 768, bfloat16) on one
# accelerator: compile time, training examples/s, MFU against a bf16 8192^3 matmul measured in the
# same run, XLA memory of the step, and the evaluation step. A few minutes on an H200 (target MFU >= 0.35).
#
#   bash launch/gpu_check.sh [PYTHON] [extra launch.benchmark flags]
#
# Prints one JSON line per configuration (see recur_jax/study/benchmark.py for the fields).
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${1:-python}"
shift || true
"$PY" -c "import jax; d = jax.devices(); print('devices:', d); assert d[0].platform == 'gpu', 'no GPU visible to JAX'"
# TRM-MLP, the paper configuration as trained (last_sweep, bf16, batch 768).
"$PY" -m launch.benchmark --config=experiments/trm_sudoku.py:mlp --warmup=3 --iters=20 --eval_iters=3 \
  --peak_size=8192 "$@"
# Memory in depth (compile only, temp_bytes of the step): last_sweep flat, full linear.
"$PY" -m launch.benchmark --config=experiments/trm_sudoku.py:mlp --compile_only --sweep=model.H_cycles=2,16 "$@"
"$PY" -m launch.benchmark --config=experiments/trm_sudoku.py:mlp --compile_only --sweep=model.H_cycles=2,4 \
  --config.model.grad_mode=full "$@"
