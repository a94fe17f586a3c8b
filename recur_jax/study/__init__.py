"""Studies over runs: `sweep` (sweeps as data, local/SLURM execution), `results` (tables over seeds),
`plots` (matplotlib and HTML), `analysis` (latent trajectories and halting of trained runs),
`benchmark` (examples/s, MFU, memory, compile time).
"""
