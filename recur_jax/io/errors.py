"""The base of recur_jax's expected failures: errors whose message alone tells the user what happened.

Every entry point (`launch/cli.py`) prints such an error as one line on stderr and exits with status 1,
as it does a `ValueError` (a bad config value or data file) and an `OSError` (a path that cannot be
written, a full disk); anything else is a bug and keeps its traceback.
"""


class RunError(RuntimeError):
    """A run, checkpoint or workdir failure with a complete one-line message (subclasses:
    `run.checkpoint.CheckpointError`, `run.runlog.TrainingDiverged`, `run.workdir.WorkdirInUse`)."""


__all__ = ["RunError"]
