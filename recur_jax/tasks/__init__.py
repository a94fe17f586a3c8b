"""Tasks, one package each (`sudoku`, `maze`, `arc`, `algorithmic`): data readers and generators, a TFDS
builder on the shared base (`builder`), an evaluator where the task has its own metrics, and
`task.make_task(config.data, workdir) -> base.Task`; `registry.build_task` picks one by `data.name`;
`loader` turns a Task's sources into deterministic training and evaluation batches; `images` draws
grids for the reports.
"""
