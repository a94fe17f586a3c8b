"""Shared config fragments. Experiment files import these and override; nothing is copied.

Field names that scripts drive and must keep: total_steps, eval_every, checkpoint_every, seed,
global_batch_size, data.path, model.hidden_size, model.H_cycles, model.L_cycles, model.halt_max_steps.
"""

import dataclasses

import ml_collections

from recur_jax.core.models.config import ModelConfig
from recur_jax.run import sharding


def model_config(**overrides) -> ml_collections.ConfigDict:
    """All ModelConfig fields with their defaults, then `overrides` (reference field names)."""
    values = {f.name: f.default for f in dataclasses.fields(ModelConfig)}
    unknown = set(overrides) - set(values)
    if unknown:
        raise ValueError(f"unknown model keys {sorted(unknown)}")
    values.update(overrides)
    return ml_collections.ConfigDict(values)


def trm_paper_model(**task) -> ml_collections.ConfigDict:
    """TRM's paper architecture (TRM.md 5.1): D 512, 8 heads, 2 layers, H_cycles 3, L_cycles 4, RoPE
    attention, 16-token puzzle embedding, halt_max_steps 16, last-sweep gradient, bfloat16.

    `task` sets the task's fields (vocab_size, seq_len, num_puzzle_identifiers) and any departures
    (Sudoku: L_cycles 6, and the MLP-t token mixer without RoPE).
    """
    return model_config(**{
        "arch": "trm", "puzzle_emb_ndim": 512, "puzzle_emb_len": 16, "hidden_size": 512, "num_heads": 8,
        "expansion": 4, "H_cycles": 3, "L_cycles": 4, "L_layers": 2, "pos_encodings": "rope", "mlp_t": False,
        "halt_max_steps": 16, "halt_exploration_prob": 0.1, "no_ACT_continue": True, "grad_mode": "last_sweep",
        "forward_dtype": "bfloat16", **task})


def hrm_paper_model(**task) -> ml_collections.ConfigDict:
    """HRM's paper architecture (HRM.md 5.2): D 512, 8 heads, 4 + 4 layers, H_cycles 2, L_cycles 2, RoPE,
    no puzzle-embedding prefix, halt_max_steps 16, one-step gradient, bfloat16.

    `task` sets the task's fields (vocab_size, seq_len, num_puzzle_identifiers).
    """
    return model_config(**{
        "arch": "hrm", "puzzle_emb_ndim": 512, "puzzle_emb_len": 0, "hidden_size": 512, "num_heads": 8,
        "expansion": 4, "H_cycles": 2, "L_cycles": 2, "H_layers": 4, "L_layers": 4, "pos_encodings": "rope",
        "mlp_t": False, "halt_max_steps": 16, "halt_exploration_prob": 0.1, "no_ACT_continue": False,
        "grad_mode": "one_step", "forward_dtype": "bfloat16", **task})


def parse_args(arg: str | None, allowed: set[str], default: str, file: str) -> set[str]:
    """The comma-separated args of `get_config(arg)`; unknown ones are an error naming the file."""
    args = set(filter(None, (arg or default).split(",")))
    unknown = args - allowed
    if unknown:
        raise ValueError(f"{file}: unknown args {sorted(unknown)}; valid: {sorted(allowed)}")
    return args


def base_config() -> ml_collections.ConfigDict:
    """Training defaults of the official code (cfg_pretrain.yaml, TRM.md 4.5); tasks override."""
    c = ml_collections.ConfigDict()
    c.seed = 0
    c.total_steps = 65104
    c.eval_every = 6510  # steps between evaluations (0: only at the end)
    c.checkpoint_every = 6510  # steps between checkpoints (0: only at the end)
    c.log_every = 50
    c.global_batch_size = 768
    c.microbatches = 1  # >1: gradients accumulated over row chunks of the batch (memory; exploration draws differ)
    c.act_mode = "streaming"  # "streaming" (official carry across steps) or "episode" (one batch, all steps)
    c.xla_flags = ""  # extra XLA flags applied by the launchers before JAX starts (recur_jax.run.perf)
    c.host_hugepages = False  # glibc malloc with transparent huge pages (perf.ensure_host_hugepages)

    c.optim = ml_collections.ConfigDict()
    c.optim.lr = 1e-4
    c.optim.lr_min_ratio = 1.0
    c.optim.lr_warmup_steps = 2000
    c.optim.beta1 = 0.9
    c.optim.beta2 = 0.95
    c.optim.weight_decay = 0.1
    c.optim.puzzle_emb_lr = 1e-2
    c.optim.puzzle_emb_weight_decay = 0.1

    c.ema = True
    c.ema_rate = 0.999

    c.eval = ml_collections.ConfigDict()
    c.eval.halt_max_steps = 0  # 0: the model's halt_max_steps; larger values scale test-time compute
    c.eval.global_batch_size = 0  # 0: global_batch_size
    c.eval.max_examples = 0  # 0: the whole test set
    c.eval.halt = "budget"  # budget: every row runs the budget (the reference); q_halt: stop at the Q head's halt
    c.eval.samples = 1  # K noisy trajectories per example (launch.evaluate / launch.solve; training: 1)
    c.eval.noise_scale = 0.0  # sigma of the noise added to z_H, z_L at every supervision step
    c.eval.noise_seed = 0
    c.eval.select = "q_halt"  # which of the K answers: q_halt (most confident), vote, q_halt_vote
    c.eval.halt_threshold = 0.0  # early halting when q_halt exceeds this logit (0: the reference's rule)

    c.checkpoint = ml_collections.ConfigDict()
    c.checkpoint.keep = 3
    c.checkpoint.async_save = True

    # Device mesh (data, fsdp, model; -1 = the remaining devices) and how arrays map onto it
    # (logical-axis rules, parameter rules, puzzle-table row padding): see recur_jax/run/sharding.py.
    c.mesh = sharding.mesh_config()
    c.sharding = sharding.sharding_config()
    c.nonfinite = ml_collections.ConfigDict()
    c.nonfinite.policy = "stop"  # NaN/Inf loss or gradient: "stop" (named error, no bad checkpoint) or "skip"
    c.nonfinite.max_consecutive_skips = 10  # "skip": stop anyway after this many non-finite steps in a row

    c.data = ml_collections.ConfigDict()
    c.model = model_config()
    return c


def cpu_training(c: ml_collections.ConfigDict, *, total_steps: int, global_batch_size: int, checkpoint_every: int,
                 log_every: int, ema_rate: float, lr_warmup_steps: int, lr: float = 2e-3) -> None:
    """The training settings of the short `cpu` runs: no periodic evaluation, a higher learning rate and
    a short EMA horizon, which suit runs of tens to hundreds of steps."""
    c.total_steps = total_steps
    c.eval_every = 0
    c.checkpoint_every = checkpoint_every
    c.log_every = log_every
    c.global_batch_size = global_batch_size
    c.ema_rate = ema_rate
    c.optim.lr = lr
    c.optim.lr_warmup_steps = lr_warmup_steps


def tiny_model(c: ml_collections.ConfigDict) -> None:
    """A float32 model of hidden size 32 with one layer per level and one sweep of one L step, halting
    after at most 2 supervision steps: enough to run a pipeline end to end in minutes on a CPU."""
    m = c.model
    m.hidden_size = 32
    m.num_heads = 2
    m.expansion = 2
    m.puzzle_emb_ndim = 32
    m.puzzle_emb_len = 1 if m.arch == "trm" else 0
    m.forward_dtype = "float32"
    m.halt_max_steps = 2
    m.H_cycles = 1
    m.L_cycles = 1
    m.L_layers = 1
    if m.arch != "trm":
        m.H_layers = 1
