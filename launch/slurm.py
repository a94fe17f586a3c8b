"""SLURM batch script for multi-node GPU training: writes it and submits it with sbatch (or prints it).

    python -m launch.slurm --nodes=4 --gpus_per_node=8 --partition=gpu --time=24:00:00 --dry_run -- \
        --config=experiments/trm_sudoku.py:att --workdir=/shared/runs/trm_att

Everything after `--` is passed to `python -m launch.main`. The job runs one `srun` step with
`--ntasks-per-node` processes per node; each calls `jax.distributed.initialize()` (`--distributed=slurm`),
which reads SLURM_STEP_NODELIST (coordinator = first node, port from the job id), SLURM_NTASKS,
SLURM_PROCID and SLURM_LOCALID. Two layouts:

  * `--tasks_per_node=<gpus_per_node>` (default): one process per GPU; JAX gives process SLURM_LOCALID
    the GPU of that index;
  * `--tasks_per_node=1`: one process per node driving all its GPUs (JAX_LOCAL_DEVICE_IDS=0..G-1).

The workdir must be on a file system every node sees (all processes write the Orbax checkpoint;
process 0 writes logs and metrics). Rerunning the job resumes from the last checkpoint.
"""

from __future__ import annotations

import os
import shlex
import subprocess
from collections.abc import Sequence

from absl import app, flags

from launch import cli

_REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def build_script(main_args: Sequence[str], *, nodes: int, gpus_per_node: int, tasks_per_node: int | None = None,
                 cpus_per_task: int | None = None, time: str = "24:00:00", job_name: str = "recur_jax",
                 partition: str | None = None, account: str | None = None, output: str = "slurm-%j.out",
                 repo_dir: str = _REPO, python: str = "python", setup: Sequence[str] = (),
                 extra_sbatch: Sequence[str] = ()) -> str:
    """The text of the sbatch script.

    Args:
      main_args: arguments of `launch.main` (--config=..., --workdir=..., overrides).
      nodes, gpus_per_node: the allocation.
      tasks_per_node: processes per node, gpus_per_node (default) or 1.
      cpus_per_task: CPU cores per process (default: left to the cluster).
      time, job_name, partition, account, output: the matching #SBATCH options.
      repo_dir: where the job `cd`s (the repository on the shared file system).
      python: the interpreter (e.g. a venv's python).
      setup: shell lines run before srun (module loads, venv activation).
      extra_sbatch: more `#SBATCH` option strings (e.g. "--exclusive", "--signal=TERM@120").
    Raises:
      ValueError: nodes or gpus_per_node < 1, tasks_per_node not in {1, gpus_per_node}, or a --workdir /
        --distributed flag that conflicts with the launcher.
    """
    if nodes < 1 or gpus_per_node < 1:
        raise ValueError(f"--nodes={nodes}, --gpus_per_node={gpus_per_node}: expected integers >= 1")
    tasks = gpus_per_node if tasks_per_node is None else tasks_per_node
    if tasks not in (1, gpus_per_node):
        raise ValueError(f"--tasks_per_node={tasks}: expected 1 (one process per node) or "
                         f"{gpus_per_node} (one process per GPU)")
    if not any(a.startswith("--workdir=") for a in main_args):
        raise ValueError("pass --workdir=<path on a shared file system> after `--`")
    if any(a.startswith("--distributed") for a in main_args):
        raise ValueError("do not pass --distributed after `--`: the script sets --distributed=slurm")
    lines = ["#!/bin/bash", f"#SBATCH --job-name={job_name}", f"#SBATCH --nodes={nodes}",
             f"#SBATCH --ntasks-per-node={tasks}", f"#SBATCH --gpus-per-node={gpus_per_node}",
             f"#SBATCH --time={time}", f"#SBATCH --output={output}"]
    if cpus_per_task:
        lines.append(f"#SBATCH --cpus-per-task={cpus_per_task}")
    if partition:
        lines.append(f"#SBATCH --partition={partition}")
    if account:
        lines.append(f"#SBATCH --account={account}")
    lines += [f"#SBATCH {opt}" for opt in extra_sbatch]
    lines += ["", "set -euo pipefail", f"cd {shlex.quote(repo_dir)}", *setup, ""]
    lines.append(f"# {nodes} node(s) x {tasks} process(es); jax.distributed.initialize() reads the SLURM variables.")
    if tasks == 1 and gpus_per_node > 1:
        lines.append(f"export JAX_LOCAL_DEVICE_IDS={','.join(str(i) for i in range(gpus_per_node))}")
    lines.append("export PYTHONUNBUFFERED=1")
    cmd = ["srun", "--kill-on-bad-exit=1", python, "-m", "launch.main", "--distributed=slurm", *main_args]
    lines.append(" ".join(shlex.quote(c) for c in cmd))
    return "\n".join(lines) + "\n"


def define_flags() -> None:
    """The command-line flags (defined only when run as a program, so the module imports cleanly)."""
    flags.DEFINE_integer("nodes", 1, "Number of nodes.")
    flags.DEFINE_integer("gpus_per_node", 8, "GPUs per node.")
    flags.DEFINE_integer("tasks_per_node", None, "Processes per node: gpus_per_node (default) or 1.")
    flags.DEFINE_integer("cpus_per_task", None, "CPU cores per process.")
    flags.DEFINE_string("time", "24:00:00", "Time limit (#SBATCH --time).")
    flags.DEFINE_string("job_name", "recur_jax", "Job name.")
    flags.DEFINE_string("partition", None, "Partition.")
    flags.DEFINE_string("account", None, "Account.")
    flags.DEFINE_string("output", "slurm-%j.out", "Log file pattern (#SBATCH --output).")
    flags.DEFINE_string("repo_dir", _REPO, "The repository directory on the shared file system.")
    flags.DEFINE_string("python", "python", "Python interpreter on the nodes.")
    flags.DEFINE_multi_string("setup", [], "Shell line run before srun (repeatable).")
    flags.DEFINE_multi_string("sbatch", [], "Extra #SBATCH option, e.g. --exclusive (repeatable).")
    flags.DEFINE_string("script", None, "Where to write the script (default: <workdir>/job.sbatch).")
    flags.DEFINE_bool("dry_run", False, "Print the script and the sbatch command; write and submit nothing.")


def main(argv):
    f = flags.FLAGS
    try:
        text = build_script(argv[1:], nodes=f.nodes, gpus_per_node=f.gpus_per_node, tasks_per_node=f.tasks_per_node,
                            cpus_per_task=f.cpus_per_task, time=f.time, job_name=f.job_name,
                            partition=f.partition, account=f.account, output=f.output,
                            repo_dir=f.repo_dir, python=f.python, setup=f.setup,
                            extra_sbatch=f.sbatch)
    except ValueError as e:  # the launcher's flags or the arguments for launch.main
        raise app.UsageError(str(e)) from e
    workdir = next(a.split("=", 1)[1] for a in argv[1:] if a.startswith("--workdir="))
    script = f.script or os.path.join(workdir, "job.sbatch")
    if f.dry_run:
        print(text, end="")
        print(f"# would write {script} and run: sbatch {shlex.quote(script)}")
        return 0
    os.makedirs(os.path.dirname(os.path.abspath(script)), exist_ok=True)
    with open(script, "w") as f:
        f.write(text)
    print(f"wrote {script}")
    return subprocess.call(["sbatch", script])


if __name__ == "__main__":
    define_flags()
    cli.run(main)
