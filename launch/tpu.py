"""Cloud TPU pod launcher: runs `launch.main` on every worker of a TPU VM slice with gcloud.

    python -m launch.tpu --tpu=my-v4-32 --zone=us-central2-b --sync --dry_run -- \
        --config=experiments/trm_sudoku.py:att --workdir=gs://bucket/runs/trm_att

Everything after `--` is passed to `python -m launch.main`. The commands, in order:

  1. with `--sync`: pack the repository's committed tree (`git archive HEAD`), copy it to every
     worker (`gcloud compute tpus tpu-vm scp ... --worker=all`), unpack it into `--remote_dir` and run
     `--setup` there (default: `pip install -e '.[tpu]'`, jax with the TPU runtime);
  2. `gcloud compute tpus tpu-vm ssh NAME --zone Z --worker=all --command "cd DIR && python3 -m
     launch.main --distributed=tpu ..."`: one process per worker; `jax.distributed.initialize()`
     finds the coordinator, process count and id from the TPU metadata.

`--dry_run` prints the commands without running them. The workdir must be visible to every worker
(a GCS bucket or a shared disk): every process writes the Orbax checkpoint, process 0 the logs.
"""

from __future__ import annotations

import os
import shlex
import subprocess
from collections.abc import Sequence

from absl import app, flags

from launch import cli

_REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ARCHIVE = "/tmp/recur_jax_src.tar.gz"


def _gcloud(verb: str, tpu: str, zone: str, project: str | None) -> list[str]:
    cmd = ["gcloud", "compute", "tpus", "tpu-vm", verb]
    if verb == "ssh":
        cmd.append(tpu)
    cmd.append(f"--zone={zone}")
    if project:
        cmd.append(f"--project={project}")
    return cmd


def build_commands(main_args: Sequence[str], *, tpu: str, zone: str, project: str | None = None,
                   remote_dir: str = "~/recur_jax", python: str = "python3", sync: bool = False,
                   setup: str = "pip install -e '.[tpu]'", env: Sequence[str] = (), repo_dir: str = _REPO
                   ) -> list[list[str]]:
    """The commands (argv lists) that start a run on every worker of `tpu`.

    Args:
      main_args: arguments of `launch.main` (--config=..., --workdir=..., overrides).
      tpu, zone, project: the TPU VM and where it is.
      remote_dir: the repository directory on the workers (`~` is expanded by the remote shell).
      python: the interpreter on the workers.
      sync: first copy the committed tree of `repo_dir` to the workers and run `setup` there.
      env: KEY=VALUE pairs exported for the run (e.g. XLA or libtpu flags).
    Raises:
      ValueError: no tpu name or zone, a malformed env entry, no --workdir, or --distributed given.
    """
    if not tpu or not zone:
        raise ValueError("--tpu and --zone are required")
    bad = [e for e in env if "=" not in e or not e.split("=", 1)[0].isidentifier()]
    if bad:
        raise ValueError(f"--env entries must be KEY=VALUE, got {bad}")
    if not any(a.startswith("--workdir=") for a in main_args):
        raise ValueError("pass --workdir=<a path every worker sees, e.g. gs://bucket/run> after `--`")
    if any(a.startswith("--distributed") for a in main_args):
        raise ValueError("do not pass --distributed after `--`: the launcher sets --distributed=tpu")
    cmds = []
    if sync:
        cmds.append(["git", "-C", repo_dir, "archive", "--format=tar.gz", "-o", ARCHIVE, "HEAD"])
        cmds.append(_gcloud("scp", tpu, zone, project) + ["--worker=all", ARCHIVE, f"{tpu}:{ARCHIVE}"])
        prepare = f"mkdir -p {remote_dir} && tar -xzf {ARCHIVE} -C {remote_dir}"
        if setup:
            prepare += f" && cd {remote_dir} && {setup}"
        cmds.append(_gcloud("ssh", tpu, zone, project) + ["--worker=all", f"--command={prepare}"])
    exports = "".join(f"export {k}={shlex.quote(v)} && " for k, v in (e.split("=", 1) for e in env))
    run = (f"cd {remote_dir} && {exports}PYTHONUNBUFFERED=1 " +
           " ".join(shlex.quote(c) for c in [python, "-m", "launch.main", "--distributed=tpu", *main_args]))
    cmds.append(_gcloud("ssh", tpu, zone, project) + ["--worker=all", f"--command={run}"])
    return cmds


def define_flags() -> None:
    """The command-line flags (defined only when run as a program, so the module imports cleanly)."""
    flags.DEFINE_string("tpu", None, "TPU VM name.")
    flags.DEFINE_string("zone", None, "Zone of the TPU VM.")
    flags.DEFINE_string("project", None, "GCP project (default: gcloud's).")
    flags.DEFINE_string("remote_dir", "~/recur_jax", "Repository directory on the workers.")
    flags.DEFINE_string("python", "python3", "Python interpreter on the workers.")
    flags.DEFINE_bool("sync", False, "Copy the committed tree to the workers and run --setup first.")
    flags.DEFINE_string("setup", "pip install -e '.[tpu]'", "Command run in remote_dir after --sync.")
    flags.DEFINE_multi_string("env", [], "KEY=VALUE exported for the run (repeatable).")
    flags.DEFINE_bool("dry_run", False, "Print the commands; run nothing.")


def main(argv):
    f = flags.FLAGS
    try:
        cmds = build_commands(argv[1:], tpu=f.tpu, zone=f.zone, project=f.project,
                              remote_dir=f.remote_dir, python=f.python, sync=f.sync, setup=f.setup,
                              env=f.env)
    except ValueError as e:  # the launcher's flags or the arguments for launch.main
        raise app.UsageError(str(e)) from e
    for cmd in cmds:
        line = " ".join(shlex.quote(c) for c in cmd)
        if f.dry_run:
            print(line)
            continue
        print(f"+ {line}", flush=True)
        code = subprocess.call(cmd)
        if code:
            return code
    return 0


if __name__ == "__main__":
    define_flags()
    cli.run(main)
