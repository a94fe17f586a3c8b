"""Dry runs of the SLURM and TPU-pod launchers: the environment, flags and commands they produce."""

import os
import pathlib
import shlex
import subprocess
import sys

import pytest

from launch import slurm, tpu
from recur_jax.run import distributed

REPO = pathlib.Path(__file__).resolve().parents[1]
MAIN_ARGS = ["--config=experiments/trm_sudoku.py:att", "--workdir=/shared/runs/trm att", "--config.total_steps=100"]


def run_module(module, *args):
    return subprocess.run([sys.executable, "-m", module, *args], cwd=REPO, capture_output=True, text=True, timeout=120,
                          env=dict(os.environ, PYTHONPATH=str(REPO)))


def test_slurm_dry_run_prints_the_job(tmp_path):
    res = run_module("launch.slurm", "--nodes=4", "--gpus_per_node=8", "--partition=gpu", "--account=lab",
                     "--time=12:00:00", "--cpus_per_task=12", "--setup=source /opt/venv/bin/activate",
                     "--sbatch=--exclusive", "--python=/opt/venv/bin/python", f"--script={tmp_path}/job.sbatch",
                     "--dry_run", "--", *MAIN_ARGS)
    assert res.returncode == 0, res.stderr
    out = res.stdout
    for line in ("#!/bin/bash", "#SBATCH --nodes=4", "#SBATCH --ntasks-per-node=8", "#SBATCH --gpus-per-node=8",
                 "#SBATCH --time=12:00:00", "#SBATCH --partition=gpu", "#SBATCH --account=lab",
                 "#SBATCH --cpus-per-task=12", "#SBATCH --exclusive", "set -euo pipefail",
                 "source /opt/venv/bin/activate", f"cd {shlex.quote(str(REPO))}"):
        assert line in out.splitlines(), line
    srun = next(ln for ln in out.splitlines() if ln.startswith("srun "))
    argv = shlex.split(srun)
    assert argv[:6] == ["srun", "--kill-on-bad-exit=1", "/opt/venv/bin/python", "-m", "launch.main",
                        "--distributed=slurm"]
    assert argv[6:] == MAIN_ARGS  # the workdir with a space survives quoting
    assert "JAX_LOCAL_DEVICE_IDS" not in out  # one process per GPU: JAX assigns GPU SLURM_LOCALID
    assert f"would write {tmp_path}/job.sbatch" in out and not (tmp_path / "job.sbatch").exists()
    script = out.split("# would write")[0]
    assert subprocess.run(["bash", "-n"], input=script, text=True).returncode == 0  # valid shell


def test_slurm_one_process_per_node_and_errors():
    text = slurm.build_script(MAIN_ARGS, nodes=2, gpus_per_node=4, tasks_per_node=1)
    assert "#SBATCH --ntasks-per-node=1" in text and "export JAX_LOCAL_DEVICE_IDS=0,1,2,3" in text
    with pytest.raises(ValueError, match="--tasks_per_node=2"):
        slurm.build_script(MAIN_ARGS, nodes=2, gpus_per_node=4, tasks_per_node=2)
    with pytest.raises(ValueError, match="--workdir"):
        slurm.build_script(["--config=x.py"], nodes=1, gpus_per_node=1)
    with pytest.raises(ValueError, match="--distributed"):
        slurm.build_script(MAIN_ARGS + ["--distributed=none"], nodes=1, gpus_per_node=1)
    res = run_module("launch.slurm", "--nodes=0", "--dry_run", "--", *MAIN_ARGS)
    assert res.returncode == 2 and "--nodes=0" in res.stderr


def test_slurm_environment_is_what_jax_detects():
    """The variables srun sets for task 5 of 8 on 2 nodes: our plan picks SLURM, and JAX's own SLURM
    cluster detection reads the coordinator, process count and id from them."""
    from jax._src.clusters.slurm_cluster import SlurmCluster

    env = {"SLURM_JOB_ID": "4242", "SLURM_STEP_NODELIST": "gpu[017-018]", "SLURM_NTASKS": "8", "SLURM_PROCID": "5",
           "SLURM_LOCALID": "1"}
    assert distributed.plan("auto", environ=env).method == "slurm"
    old = dict(os.environ)
    try:
        os.environ.update(env)
        assert SlurmCluster.is_env_present()
        assert SlurmCluster.get_coordinator_address(None, None) == f"gpu017:{4242 % 4096 + 61440}"
        assert (SlurmCluster.get_process_count(), SlurmCluster.get_process_id(),
                SlurmCluster.get_local_process_id()) == (8, 5, 1)
    finally:
        os.environ.clear()
        os.environ.update(old)


def test_tpu_dry_run_prints_the_gcloud_commands():
    res = run_module("launch.tpu", "--tpu=pod-v4-32", "--zone=us-central2-b", "--project=proj", "--sync",
                     "--env=LIBTPU_INIT_ARGS=--xla_tpu_enable_latency_hiding_scheduler=true", "--dry_run", "--",
                     *MAIN_ARGS)
    assert res.returncode == 0, res.stderr
    cmds = [shlex.split(ln) for ln in res.stdout.strip().splitlines()]
    assert len(cmds) == 4
    assert cmds[0][:3] == ["git", "-C", str(REPO)] and cmds[0][3:] == ["archive", "--format=tar.gz", "-o",
                                                                        tpu.ARCHIVE, "HEAD"]
    assert cmds[1] == ["gcloud", "compute", "tpus", "tpu-vm", "scp", "--zone=us-central2-b", "--project=proj",
                       "--worker=all", tpu.ARCHIVE, f"pod-v4-32:{tpu.ARCHIVE}"]
    for cmd in cmds[2:]:
        assert cmd[:6] == ["gcloud", "compute", "tpus", "tpu-vm", "ssh", "pod-v4-32"]
        assert "--zone=us-central2-b" in cmd and "--project=proj" in cmd and "--worker=all" in cmd
    assert cmds[2][-1] == (f"--command=mkdir -p ~/recur_jax && tar -xzf {tpu.ARCHIVE} -C ~/recur_jax && "
                           f"cd ~/recur_jax && pip install -e '.[tpu]'")
    remote = cmds[3][-1].removeprefix("--command=")
    assert remote.startswith("cd ~/recur_jax && export LIBTPU_INIT_ARGS=")
    remote_argv = shlex.split(remote.split("PYTHONUNBUFFERED=1 ", 1)[1])
    assert remote_argv == ["python3", "-m", "launch.main", "--distributed=tpu", *MAIN_ARGS]
    assert "--xla_tpu_enable_latency_hiding_scheduler=true" in remote


def test_tpu_errors():
    assert len(tpu.build_commands(MAIN_ARGS, tpu="t", zone="z")) == 1  # no --sync: the run only
    with pytest.raises(ValueError, match="--tpu and --zone"):
        tpu.build_commands(MAIN_ARGS, tpu="t", zone="")
    with pytest.raises(ValueError, match="KEY=VALUE"):
        tpu.build_commands(MAIN_ARGS, tpu="t", zone="z", env=["NOVALUE"])
    with pytest.raises(ValueError, match="--distributed"):
        tpu.build_commands(MAIN_ARGS + ["--distributed=none"], tpu="t", zone="z")
    res = run_module("launch.tpu", "--zone=z", "--dry_run", "--", *MAIN_ARGS)
    assert res.returncode == 2 and "--tpu and --zone are required" in res.stderr


def test_local_multiprocess_output_is_whole_lines_without_gloo_noise():
    """Two rendezvous of one process print their Gloo lines at once (observed: interleaved character by
    character, or one inside the other, or inside a progress bar); what reaches the terminal is whole,
    prefixed lines with none of it, and the progress bar keeps its text."""
    import io

    from launch.local_multiprocess import LineFilter, _pump

    gloo = "[Gloo] Rank 0 is connected to 1 peer ranks. Expected number of connected peer ranks is : 1\n"
    observed = ["[Gloo] Rank 0 is connected to 1", gloo, " peer ranks. Expected number of connected peer ranks is : 1\n",
                "recur_jax: TRM\n", "train:  10%|#| 1/10 [00:10<01:33]" + gloo.replace("0 is", "1 is"),
                "[Gloo] Rank [Gloo] Rank 23 is connected to  is connected to 33 peer ranks.  peer ranks. Expected number"
                " of connected peer ranks is : Expected number of connected peer ranks is : 33\n",
                "train:  20%|##| 2/10\rtrain:  30%|###| 3/10\r\n", "held-out exact accuracy: 0.5000"]
    sink = io.StringIO()
    _pump(io.StringIO("".join(observed)), "[p0] ", sink)
    assert sink.getvalue().splitlines() == [
        "[p0] recur_jax: TRM", "[p0] train:  10%|#| 1/10 [00:10<01:33]", "[p0] train:  20%|##| 2/10",
        "[p0] train:  30%|###| 3/10", "[p0] held-out exact accuracy: 0.5000"]
    keep = LineFilter(drop_gloo=False)
    assert keep.feed(gloo) == [gloo] and keep.flush() == []


def test_final_table_shows_the_tasks_own_metrics(capsys):
    from launch.main import print_summary

    print_summary({"step": 5, "wall_s": 1.0, "fingerprint": "ab" * 32,
                   "eval": {"count": 3, "exact_accuracy": 0.5, "accuracy": 0.9, "q_halt_accuracy": 1.0, "steps": 2.0,
                            "pass@10": 0.3, "pass@2": 0.2, "path_valid": 0.9, "path_optimal": 0.8, "num_tasks": 4,
                            "exact_accuracy_by_step": [0.1, 0.5]}})
    rows = [ln.split()[0] for ln in capsys.readouterr().out.splitlines() if ln.strip()]
    assert rows.index("pass@2") < rows.index("pass@10") < rows.index("path_optimal") < rows.index("path_valid")
    assert "num_tasks" not in rows
