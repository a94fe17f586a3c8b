"""A released HRM/TRM checkpoint of the official PyTorch code -> a workdir that solve and evaluate use.

    python -m launch.import_checkpoint --checkpoint=ckpt/step_65104 --config=ckpt/all_config.yaml \\
        --workdir=runs/trm_official
    python -m launch.solve --workdir=runs/trm_official "..3.2.6..9..3.5..1..18.64....81.29..7......."
    python -m launch.evaluate --workdir=runs/trm_official --config.data.path=data/sudoku-extreme/test.csv

`--checkpoint` is the state_dict file the official `pretrain.py` saves (`step_<N>`, with or without
torch.compile's `_orig_mod.` prefix; read with `torch.load(weights_only=True)`, install `.[torch]`), or
an `.npz` of the same names; `--config` the run's `all_config.yaml` beside it. The task comes from the
config's data path (sudoku / maze / arc; `--task` otherwise) and picks our experiment config for the
evaluation data; see `recur_jax.run.import_reference`. Exit status as `launch.cli` (1: a file that does
not fit, named; 2: usage).
"""

from absl import app, flags

from launch import cli

flags.DEFINE_string("checkpoint", None, "The official state_dict file (step_<N>, .pt, or .npz).", required=True)
flags.DEFINE_string("config", None, "The official run's all_config.yaml.", required=True)
flags.DEFINE_string("workdir", None, "A new workdir (local path or gs:// URL) to write.", required=True)
flags.DEFINE_enum("task", None, ["sudoku", "maze", "arc"], "The task (default: from the config's data path).")
flags.DEFINE_integer("step", None, "The checkpoint's step (default: N of a step_<N> file name, else 0).",
                     lower_bound=0)


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    from recur_jax.run.import_reference import import_checkpoint

    F = flags.FLAGS
    rec = import_checkpoint(F.checkpoint, F.config, F.workdir, task=F.task, step=F.step)
    print(f"imported {rec['arch']} ({rec['num_params']:,} parameters, task {rec['task']}, step {rec['step']}) "
          f"into {F.workdir}\n  solve:    python -m launch.solve --workdir={F.workdir} PUZZLE_OR_FILE\n"
          f"  evaluate: python -m launch.evaluate --workdir={F.workdir}")
    return 0


if __name__ == "__main__":
    cli.run(main)
