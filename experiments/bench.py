"""Benchmark sizes of issue 8 (CPU, float32): the models the official PyTorch code was timed with.

Args (one required, then optional modifiers):
  trm_att  TRM with attention, hidden 128, 4 heads, 2 layers, H_cycles 3, L_cycles 6, RoPE
  trm_mlp  TRM-MLP (token-mixing SwiGLU over the 97 positions), otherwise as trm_att
  hrm      HRM, hidden 128, 4 heads, 4 + 4 layers, H_cycles 2, L_cycles 2, RoPE
  bf16     bfloat16 compute instead of float32

All: sequence 81 + 16 puzzle-embedding prefix, batch 32, halt_max_steps 16, the paper optimizer.

    python -m launch.benchmark --config=experiments/bench.py:trm_att
    python -m launch.benchmark --config=experiments/bench.py:trm_mlp --sweep=model.H_cycles=2,4,8,16
"""

from experiments import common, sudoku_common
from recur_jax.run import perf

CHECK_ARGS = ['trm_att', 'trm_mlp', 'hrm', 'trm_att,bf16']  # the args tests/test_faults.py checks the config of


def get_config(arg: str | None = None):
    args = common.parse_args(arg, {"trm_att", "trm_mlp", "hrm", "bf16"}, "trm_att", "experiments/bench.py")
    kinds = args & {"trm_att", "trm_mlp", "hrm"}
    if len(kinds) != 1:
        raise ValueError(f"experiments/bench.py: name exactly one of trm_att, trm_mlp, hrm (got {sorted(kinds)})")
    kind = kinds.pop()
    c = sudoku_common.paper_config(total_steps=1000, eval_every=0)
    c.global_batch_size = 32
    # Measured A/B in WORKSPACE.md ("Performance"): XLA's own dot emitter, one single-threaded device
    # per core (the batch split over them). --config.xla_flags= drops both.
    c.xla_flags = f"{perf.CPU_XLA_FLAGS} {perf.CPU_PER_CORE_FLAGS}"
    # Huge pages for the per-step temporary buffers: TRM-Att +12%, HRM +8% (WORKSPACE.md, "Performance").
    # --config.host_hugepages=false drops it.
    c.host_hugepages = True
    # Gradients accumulated over 4 row chunks (4 rows per device on 2 cores): each chunk's activations
    # stay in cache. 2 cores, against 1 chunk: TRM-MLP +20% (21.3 -> 25-26 examples/s; more against 1 chunk
    # with huge pages), TRM-Att +5%, HRM within noise (WORKSPACE.md, "Performance"). Same gradients;
    # --config.microbatches=1 drops it.
    c.microbatches = 4
    shared = dict(vocab_size=11, seq_len=81, num_puzzle_identifiers=1, puzzle_emb_ndim=128, puzzle_emb_len=16,
                  hidden_size=128, num_heads=4, expansion=4, halt_max_steps=16, halt_exploration_prob=0.1,
                  forward_dtype="bfloat16" if "bf16" in args else "float32",
                  unroll_grad_sweep=True,  # less temp memory (no stacked residuals), WORKSPACE.md "Performance"
                  attention_impl="einsum")  # heads-first einsums: +5% on CPU, WORKSPACE.md "Performance"
    if kind == "hrm":
        c.ema = False
        c.model = common.model_config(arch="hrm", H_cycles=2, L_cycles=2, H_layers=4, L_layers=4,
                                      pos_encodings="rope", mlp_t=False, no_ACT_continue=False,
                                      grad_mode="one_step", **shared)
    else:
        att = kind == "trm_att"
        c.model = common.model_config(arch="trm", H_cycles=3, L_cycles=6, L_layers=2,
                                      pos_encodings="rope" if att else "none", mlp_t=not att,
                                      no_ACT_continue=True, grad_mode="last_sweep", **shared)
    return c
