"""Multi-host over loopback (launch.local_multiprocess): 2 processes x 2 CPU devices give the losses of
1 process x 4 devices, and checkpoints move between the two layouts (resharding on restore)."""

import json
import os
import pathlib
import shutil
import subprocess
import sys

import pytest

from launch import local_multiprocess
from recur_jax.run import distributed

REPO = pathlib.Path(__file__).resolve().parents[1]


def args(workdir, data_dir, total_steps=4):
    return [f"--workdir={workdir}", "--config=experiments/trm_sudoku.py:mlp,cpu",
            f"--config.total_steps={total_steps}", "--config.checkpoint_every=2", "--config.log_every=1",
            "--config.global_batch_size=8", "--config.eval.max_examples=8", "--config.data.num_train=64",
            "--config.data.num_test=8", f"--config.data.data_dir={data_dir}", "--config.model.hidden_size=32",
            "--config.model.num_heads=2", "--config.model.puzzle_emb_ndim=32", "--config.model.halt_max_steps=3",
            "--config.checkpoint.async_save=False",
            # FSDP over all 4 devices: in the 2-process run every parameter is split across processes.
            "--config.mesh.data=1", "--config.mesh.fsdp=4"]


def launch(n, m, workdir, data_dir):
    cmd = [sys.executable, "-m", "launch.local_multiprocess", f"--num_processes={n}", f"--devices_per_process={m}",
           "--timeout=400", "--", *args(workdir, data_dir)]
    res = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=450,
                         env=dict(os.environ, PYTHONPATH=str(REPO)))
    assert res.returncode == 0, res.stdout[-4000:] + res.stderr[-4000:]
    return res.stdout


def train_losses(workdir):
    lines = [json.loads(ln) for ln in open(os.path.join(workdir, "metrics.jsonl"))]
    return {ln["step"]: ln["loss"] for ln in lines if ln["kind"] == "train"}


def summary(workdir):
    with open(os.path.join(workdir, "summary.json")) as f:
        return json.load(f)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("mh")
    data = str(root / "data")
    w1, w2 = str(root / "p1x4"), str(root / "p2x2")
    out1 = launch(1, 4, w1, data)  # also builds the data the other runs reuse
    out2 = launch(2, 2, w2, data)
    return root, data, (w1, out1), (w2, out2)


def test_two_processes_match_one_process(runs):
    _, _, (w1, _), (w2, out2) = runs
    l1, l2 = train_losses(w1), train_losses(w2)
    assert sorted(l1) == sorted(l2) == [1, 2, 3, 4]
    worst = max(abs(l2[s] - l1[s]) / abs(l1[s]) for s in l1)
    print(f"\n2 processes x 2 devices vs 1 x 4: worst relative loss difference {worst:.3e}")
    assert worst <= 1e-5
    run = json.load(open(os.path.join(w2, "run.json")))
    assert run["devices"]["process_count"] == 2 and run["devices"]["count"] == 4
    assert run["mesh"] == {"data": 1, "fsdp": 4, "model": 1}
    assert run["param_shardings"]["lm_head/kernel"] == "P('fsdp', None)"
    # Both processes took part in every checkpoint; only process 0 printed the summary.
    assert sorted(int(s) for s in os.listdir(os.path.join(w2, "checkpoints")) if s.isdigit()) == [2, 4]
    assert "[p0] held-out exact accuracy" in out2 and "[p1] held-out exact accuracy" not in out2


@pytest.mark.parametrize("direction", ["2to1", "1to2"])
def test_checkpoints_restore_across_process_counts(runs, direction):
    root, data, (w1, _), (w2, _) = runs
    src, (n, m) = (w2, (1, 4)) if direction == "2to1" else (w1, (2, 2))
    dst = str(root / f"restore_{direction}")
    shutil.copytree(src, dst)
    out = launch(n, m, dst, data)  # same total_steps: restores step 4, trains nothing, evaluates
    assert "Resuming from step 4" in out
    restored, written = summary(dst), summary(src)
    assert restored["step"] == 4 and restored["fingerprint"] == written["fingerprint"]  # bit-exact
    assert restored["eval"]["count"] == written["eval"]["count"]


def test_process_env_and_plan():
    base = {"XLA_FLAGS": "--xla_force_host_platform_device_count=8 --foo"}
    env = local_multiprocess.process_env(1, 2, 3, 12345, base=base)
    assert env["JAX_COORDINATOR_ADDRESS"] == "127.0.0.1:12345" and env["JAX_NUM_PROCESSES"] == "2"
    assert env["JAX_PROCESS_ID"] == "1" and env["JAX_PLATFORMS"] == "cpu"
    assert env["XLA_FLAGS"] == "--foo --xla_force_host_platform_device_count=3"
    assert "JAX_COORDINATOR_ADDRESS" not in local_multiprocess.process_env(0, 1, 4, 1, base={})
    with pytest.raises(ValueError, match="process_id=2"):
        local_multiprocess.process_env(2, 2, 1, 1, base={})

    plan = distributed.plan
    assert plan(environ={}).method == "none"
    assert plan("auto", "h:1", 4, 2, environ={}) == distributed.Plan("explicit", "h:1", 4, 2)
    assert plan(environ={"JAX_COORDINATOR_ADDRESS": "h:2", "JAX_NUM_PROCESSES": "2", "JAX_PROCESS_ID": "0"}
                ) == distributed.Plan("explicit", "h:2", 2, 0)
    step = {"SLURM_JOB_ID": "7", "SLURM_STEP_NODELIST": "n1,n2", "SLURM_NTASKS": "4", "SLURM_PROCID": "1",
            "SLURM_LOCALID": "1"}
    assert plan(environ=step).method == "slurm"
    assert plan(environ=dict(step, SLURM_NTASKS="1")).method == "none"
    batch_script = {k: v for k, v in step.items() if k != "SLURM_STEP_NODELIST"}  # sbatch, not srun
    assert plan(environ=batch_script).method == "none"
    assert plan(environ={"TPU_WORKER_HOSTNAMES": "a,b,c,d"}).method == "tpu"
    assert plan("tpu", environ={}).method == "tpu"
    assert plan("none", "h:1", 2, 0, environ={}).method == "none"
    with pytest.raises(ValueError, match="--num_processes"):
        plan(environ={"JAX_COORDINATOR_ADDRESS": "h:2"})
    with pytest.raises(ValueError, match="--process_id"):
        plan("auto", "h:1", 2, None, environ={})
    with pytest.raises(ValueError, match="0 <= process_id < num_processes"):
        plan("auto", "h:1", 2, 2, environ={})
    with pytest.raises(ValueError, match="outside a SLURM job step .*SLURM_STEP_NODELIST"):
        plan("slurm", environ=batch_script)
    with pytest.raises(ValueError, match="--distributed='mpi'"):
        plan("mpi", environ={})


def test_a_failing_process_stops_the_others(tmp_path, monkeypatch):
    (tmp_path / "fail_or_hang.py").write_text(
        "import os, sys, time\n"
        "if os.environ['JAX_PROCESS_ID'] == '1':\n    sys.exit(3)\n"
        "time.sleep(600)\n")
    monkeypatch.setenv("PYTHONPATH", str(tmp_path))
    import time

    t = time.monotonic()
    code = local_multiprocess.launch([], num_processes=2, devices_per_process=1, module="fail_or_hang", timeout=300)
    assert code == 3 and time.monotonic() - t < 60  # process 0 was stopped, not waited for
    code = local_multiprocess.launch(["--config=experiments/no_such_file.py", f"--workdir={tmp_path}"],
                                     num_processes=2, devices_per_process=1, timeout=120)
    assert code == 2
