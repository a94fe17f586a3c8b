"""The maths of the models, independent of how they are run.

`layers` (casted linear/embedding, RMSNorm, SwiGLU, RoPE, attention, blocks), `models` (ModelConfig,
TRM, HRM, the transformer baseline), `recursion` (lax.scan sweeps with one stop_gradient boundary),
`act` (the ACT carry, halting policy, the training ACT step), `losses`, `optim` (AdamATan2, sparse
SignSGD, schedules, EMA), `flops` (analytic FLOP counts), `convert` (official PyTorch state_dicts).
"""
