"""Training runs: `config` (validation), `state` (TrainState, init, fingerprint), `step` (the pure
training step), `train` (the loop, `train_and_evaluate`), `checkpoint` (what a checkpoint holds and
whether it may be resumed or loaded), `workdir`, `runlog`, `evaluate`, `sharding`, `distributed`,
`preemption`, `perf` (CPU XLA flags and allocator).
"""
