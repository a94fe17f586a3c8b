"""Studies over runs: `sweep` (sweeps as data, local/SLURM execution), `results` (tables over seeds),
`plots` (matplotlib and HTML), `analysis` (latent trajectories and halting of trained runs),
`benchmark` (examples/s, MFU, memory, compile time), `evaluation` (a checkpoint evaluated at any budget,
with test-time early halting, into `<workdir>/evals/`).
"""
