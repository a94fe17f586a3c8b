"""Fault injection (issue 6): kill -9 and resume, SIGTERM/SIGINT, multi-host preemption agreement,
corrupt and half-written checkpoints, the keep policy, NaN/Inf steps, config errors, workdir safety and
hostile input files. Each test injects one fault and checks the documented outcome exactly."""

import hashlib
import json
import os
import pathlib
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import time

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from launch import soak
from recur_jax.core import act
from recur_jax.io.safe_io import UnsafeInputError, read_json, resolve_inside
from recur_jax.run import checkpoint as checkpoint_lib
from recur_jax.run import runlog
from recur_jax.run import state as train_state
from recur_jax.run import step as train_step
from recur_jax.run import train
from recur_jax.run import workdir as workdir_lib
from recur_jax.run.checkpoint import Checkpointer
from recur_jax.run.preemption import Preempted
from recur_jax.run.train import TrainingDiverged, train_and_evaluate
from test_train import tiny

REPO = pathlib.Path(__file__).resolve().parents[1]
N, HALF = 6, 3  # steps of the straight run; checkpoint_every


def child_args(workdir, data_dir, **flags):
    """launch.main flags equal to tiny(**flags) (see launch/soak.py TINY)."""
    values = {"total_steps": N, "checkpoint_every": HALF, **flags}
    return [*soak.TINY, *(f"--config.{k}={v}" for k, v in values.items()),
            f"--config.data.data_dir={data_dir}", f"--workdir={workdir}"]


def wait_for(predicate, proc, timeout=300, what=""):
    deadline = time.time() + timeout
    while not predicate():
        if proc.poll() is not None:
            out = proc.stdout.read() if proc.stdout else ""
            pytest.fail(f"child exited ({proc.returncode}) before {what}: {out[-3000:]}")
        if time.time() > deadline:
            proc.kill()
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.05)


def steps_on_disk(workdir) -> list[int]:
    return sorted(int(p.name) for p in pathlib.Path(workdir, "checkpoints").iterdir() if p.name.isdigit())


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return str(tmp_path_factory.mktemp("data"))


@pytest.fixture(scope="module")
def straight(tmp_path_factory, data_dir):
    """The uninterrupted N-step run: (workdir, summary)."""
    workdir = str(tmp_path_factory.mktemp("straight"))
    return workdir, train_and_evaluate(tiny(**{"data.data_dir": data_dir}), workdir)


def assert_same_run(workdir, straight_run):
    """Bitwise-equal state parts, equal fingerprints and equal metrics.jsonl (timing field aside)."""
    ref_dir, ref = straight_run
    got = json.load(open(os.path.join(workdir, "summary.json")))
    assert got["fingerprint_parts"] == ref["fingerprint_parts"]  # params, opt_state, ema, puzzle_table, carry, step
    assert got["fingerprint"] == ref["fingerprint"] and got["eval"] == ref["eval"]
    assert soak.comparable_metrics(workdir) == soak.comparable_metrics(ref_dir)


# ------------------------------------------------------------------------------------------------
# 1. Exact resume after kill -9


def test_kill9_after_the_half_checkpoint_then_the_same_command_is_bitwise_the_straight_run(
        straight, data_dir, tmp_path):
    """kill -9 after checkpoint HALF committed; before that, a second start in the same workdir is refused
    (the workdir lock); the same command then takes over the dead run's lock and resumes bit for bit."""
    workdir = tmp_path / "killed"
    args = child_args(workdir, data_dir)
    proc = subprocess.Popen(soak.child_command(args, hold_after_checkpoint=HALF), cwd=REPO, env=soak.child_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    wait_for(lambda: (workdir / ".soak_hold").exists(), proc, what=f"checkpoint {HALF} to commit")
    # A second start of the same command while the first runs: refused with one line naming the holder.
    second = subprocess.run([sys.executable, "-m", "launch.main", *args], cwd=REPO, env=soak.child_env(),
                            capture_output=True, text=True, timeout=300)
    assert second.returncode == 1, second.stdout[-2000:] + second.stderr[-2000:]
    last = second.stderr.strip().splitlines()[-1]
    assert last.startswith(f"error: {workdir} is in use by another run: pid {proc.pid} on host "), last
    assert "Traceback" not in second.stderr
    proc.send_signal(signal.SIGKILL)
    assert proc.wait() == -signal.SIGKILL
    assert steps_on_disk(workdir) == [HALF]
    meta = Checkpointer(workdir / "checkpoints", async_save=False).read_meta(HALF)
    assert meta["data_position"] == HALF and meta["rng"]["seed"] == 0 and meta["rng"]["prng_impl"]
    assert meta["train_window"]["steps"] == 1 and len(meta["fingerprint"]) == 64  # step 3 not yet logged

    res = subprocess.run(soak.child_command(args), cwd=REPO, env=soak.child_env(), capture_output=True, text=True,
                         timeout=600)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    assert f"Resuming from step {HALF}" in res.stdout
    assert "taking over the lock left by a run that ended without releasing it" in res.stderr  # the killed one
    assert_same_run(workdir, straight)  # every metrics.jsonl line once: the refused start wrote nothing


def test_disk_full_at_the_final_save_leaves_the_run_unfinished_and_it_resumes_to_the_straight_run(
        straight, data_dir, tmp_path, monkeypatch):
    """The final save fails as TensorStore reports a full disk: no summary.json (the run is visibly
    unfinished; a sweep would resume it), one line naming the step and the intact one, the lock released;
    after space is freed the same call resumes from step HALF to the straight run's fingerprint."""
    import orbax.checkpoint as ocp

    real_save = ocp.CheckpointManager.save

    def full_disk(self, step, *args, **kwargs):
        if step == N:
            raise ValueError("RESOURCE_EXHAUSTED: Error writing \"state\" in OCDBT database: Failed to write 4096 "
                             "bytes to file 19: No space left on device [os_error_code='28']")
        return real_save(self, step, *args, **kwargs)

    workdir = tmp_path / "full"
    monkeypatch.setattr(ocp.CheckpointManager, "save", full_disk)
    with pytest.raises(checkpoint_lib.CheckpointError) as e:
        train_and_evaluate(tiny(**{"data.data_dir": data_dir}), str(workdir))
    msg = str(e.value)
    assert f"saving checkpoint step {N} in {workdir / 'checkpoints'} failed: no space left on device" in msg
    assert f"step {HALF}, is intact" in msg and "\n" not in msg
    assert not (workdir / "summary.json").exists() and steps_on_disk(workdir) == [HALF]
    assert not (workdir / workdir_lib.LOCK_NAME).exists()  # released
    monkeypatch.setattr(ocp.CheckpointManager, "save", real_save)  # space freed
    train_and_evaluate(tiny(**{"data.data_dir": data_dir}), str(workdir))
    assert_same_run(workdir, straight)


# ------------------------------------------------------------------------------------------------
# 2. Preemption


def test_sigterm_checkpoints_the_current_step_exits_0_and_resumes_exactly(straight, data_dir, tmp_path):
    workdir = tmp_path / "term"
    args = child_args(workdir, data_dir, checkpoint_every=0)  # no periodic checkpoints: only the signal's
    proc = subprocess.Popen(soak.child_command(args, step_delay_s=0.4), cwd=REPO, env=soak.child_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    wait_for(lambda: soak.read_progress(str(workdir)) >= 2, proc, what="two training steps")
    proc.send_signal(signal.SIGTERM)
    out = proc.communicate(timeout=300)[0]
    assert proc.returncode == 0, out[-3000:]
    (stopped,) = [ln for ln in out.splitlines() if "stopped by SIGTERM at step" in ln]
    step = int(stopped.split("at step ")[1].split(";")[0])
    assert 2 <= step < N and steps_on_disk(workdir) == [step]
    assert "To resume, run the same command again: python -m launch.main --config=" in stopped
    assert f"--workdir={workdir}" in stopped
    summary = train_and_evaluate(tiny(checkpoint_every=0, **{"data.data_dir": data_dir}), str(workdir))
    assert summary["step"] == N
    assert_same_run(workdir, straight)


def test_sigint_in_process_checkpoints_the_step_and_restores_the_handlers(data_dir, tmp_path, monkeypatch):
    from recur_jax.tasks.loader import TrainLoader

    batch = TrainLoader.batch

    def interrupt_at_4(self, b):
        if b == 4:  # while loading the batch of step 5: step 5 completes, is checkpointed, training stops
            os.kill(os.getpid(), signal.SIGINT)
        return batch(self, b)

    monkeypatch.setattr(TrainLoader, "batch", interrupt_at_4)
    before = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    with pytest.raises(Preempted) as e:
        train_and_evaluate(tiny(**{"data.data_dir": data_dir}), str(tmp_path / "int"))
    assert (e.value.step, e.value.signal_name) == (5, "SIGINT")
    assert steps_on_disk(tmp_path / "int") == [3, 5]
    assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)) == before


MULTIHOST_CHILD = textwrap.dedent("""
    import os, sys, time
    os.environ["JAX_PLATFORMS"] = "cpu"
    os.environ.pop("XLA_FLAGS", None)
    import jax
    pid, port, marker = int(sys.argv[1]), sys.argv[2], sys.argv[3]
    jax.distributed.initialize(coordinator_address=f"localhost:{port}", num_processes=2, process_id=pid)
    from recur_jax.run.preemption import PreemptionGuard
    with PreemptionGuard() as guard:
        for step in range(1, 2000):
            time.sleep(0.02)
            if step == 10:
                open(marker + str(pid), "w").close()
            if guard.should_stop(step):
                print("STOP", step, guard.use_jax_service, flush=True)
                break
        else:
            print("NEVER", flush=True)
""")


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_multihost_processes_agree_on_the_preemption_step(tmp_path, sig):
    with socket.socket() as s:
        s.bind(("localhost", 0))
        port = str(s.getsockname()[1])
    marker = str(tmp_path / "ready")
    procs = [subprocess.Popen([sys.executable, "-c", MULTIHOST_CHILD, str(i), port, marker], cwd=REPO,
                              env=soak.child_env(), stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
             for i in range(2)]
    wait_for(lambda: os.path.exists(marker + "1") and os.path.exists(marker + "0"), procs[1], timeout=120,
             what="both processes to step")
    procs[1].send_signal(sig)  # only one process is told
    outs = [[ln.split() for ln in p.communicate(timeout=120)[0].splitlines() if ln.startswith(("STOP", "NEVER"))][0]
            for p in procs]
    assert [p.returncode for p in procs] == [0, 0]
    assert outs[0][0] == outs[1][0] == "STOP" and outs[0][1] == outs[1][1], outs  # the same step
    assert outs[0][2] == "True"  # JAX's preemption service decided it


# ------------------------------------------------------------------------------------------------
# 3. Corrupt, partial and deleted checkpoints; the keep policy


def _digest(tree) -> str:
    h = hashlib.sha256()
    for leaf in jax.tree_util.tree_leaves(tree):
        h.update(np.asarray(leaf).tobytes())
    return h.hexdigest()


def _verify(state, meta):
    if meta.get("digest") != _digest(state):
        raise ValueError("digest differs")


def _states(n):
    return {s: {"w": jnp.arange(4096, dtype=jnp.float32) * s + 0.5, "b": jnp.full((7,), s, jnp.int32)}
            for s in range(1, n + 1)}


def _corrupt(step_dir: pathlib.Path, kind: str):
    data = sorted((p for p in (step_dir / "state").rglob("*") if p.is_file() and "ocdbt.process" in str(p)),
                  key=lambda p: p.stat().st_size)
    if kind == "truncated":
        for p in data:
            with open(p, "r+b") as f:
                f.truncate(p.stat().st_size // 2)
    elif kind == "garbled":
        p = data[-1]
        raw = bytearray(p.read_bytes())
        mid = len(raw) // 2
        raw[mid:mid + 64] = bytes(b ^ 0x5A for b in raw[mid:mid + 64])
        p.write_bytes(bytes(raw))
    elif kind == "state_metadata_garbled":
        (step_dir / "state" / "_METADATA").write_bytes(b"\x00garbage{")
    elif kind == "meta_json_garbled":
        (step_dir / "meta" / "metadata").write_text('{"step": 3, "dig')
    elif kind == "data_deleted":
        shutil.rmtree(step_dir / "state" / "ocdbt.process_0")
    else:
        raise AssertionError(kind)


@pytest.mark.parametrize("kind", ["truncated", "garbled", "state_metadata_garbled", "meta_json_garbled",
                                  "data_deleted"])
def test_a_bad_newest_checkpoint_is_reported_set_aside_and_the_previous_one_used(tmp_path, kind, capsys):
    states = _states(3)
    c = Checkpointer(tmp_path, keep=3, async_save=False)
    for s, st in states.items():
        c.save(s, st, {"step": s, "digest": _digest(st)})
    c.close()
    _corrupt(tmp_path / "3", kind)
    c = Checkpointer(tmp_path, keep=3, async_save=False)
    step, state, meta = c.restore(jax.tree_util.tree_map(np.asarray, states[1]), verify=_verify)
    assert step == 2 and _digest(state) == _digest(states[2]) and meta["step"] == 2
    assert "checkpoint step 3" in capsys.readouterr().out  # reported
    assert (tmp_path / "unreadable" / "3").is_dir() and c.steps() == [1, 2]  # kept for inspection
    c.save(3, states[3], {"step": 3, "digest": _digest(states[3])})  # the resumed run writes step 3 again
    c.close()


def test_a_garbled_checkpoint_in_a_run_falls_back_and_the_run_ends_identical(straight, data_dir, tmp_path, capsys):
    workdir, _ = straight
    copy = tmp_path / "garbled"
    shutil.copytree(workdir, copy)
    _corrupt(copy / "checkpoints" / str(N), "garbled")
    summary = train_and_evaluate(tiny(**{"data.data_dir": data_dir}), str(copy))
    out = capsys.readouterr().out
    assert f"checkpoint step {N}" in out and f"Resuming from step {HALF}" in out
    assert summary["step"] == N and (copy / "checkpoints" / "unreadable" / str(N)).is_dir()
    assert_same_run(copy, straight)


HALF_WRITTEN_CHILD = textwrap.dedent("""
    import sys, time
    import jax.numpy as jnp
    import orbax.checkpoint as ocp
    from recur_jax.run.checkpoint import Checkpointer
    c = Checkpointer(sys.argv[1], keep=1, async_save=False)
    c.save(1, {"w": jnp.ones(1000)}, {"step": 1})
    c.wait()
    real = ocp.handlers.PyTreeCheckpointHandler.async_save
    async def hang(self, directory, *args, **kwargs):
        print("writing step 2", flush=True)
        time.sleep(3600)  # the node dies here, mid-write
    ocp.handlers.PyTreeCheckpointHandler.async_save = hang
    c.save(2, {"w": jnp.ones(1000) * 2}, {"step": 2})
""")


def test_a_good_checkpoint_is_not_deleted_before_its_successor_commits(tmp_path):
    ckpt = tmp_path / "ckpt"
    proc = subprocess.Popen([sys.executable, "-c", HALF_WRITTEN_CHILD, str(ckpt)], cwd=REPO, env=soak.child_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    line = proc.stdout.readline()
    assert line.strip() == "writing step 2", line
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert any(".orbax-checkpoint-tmp" in p.name for p in ckpt.iterdir())  # the half-written step 2
    reader = Checkpointer(ckpt, keep=1, async_save=False)  # a reader (launch.solve) leaves temporaries alone
    assert reader.steps() == [1] and any(".orbax-checkpoint-tmp" in p.name for p in ckpt.iterdir())
    reader.close()
    c = Checkpointer(ckpt, keep=1, async_save=False, cleanup_tmp=True)  # keep=1: step 1 is the only good one
    assert c.steps() == [1]
    step, state, _ = c.restore({"w": np.zeros(1000, np.float32)})
    assert step == 1 and np.all(np.asarray(state["w"]) == 1)
    c.save(2, {"w": jnp.ones(1000) * 2}, {"step": 2})
    c.wait()
    assert c.steps() == [2]  # committed, then step 1 deleted
    c.close()
    assert sorted(p.name for p in ckpt.iterdir()) == ["2"]  # the stale temporary directory is gone too


def test_keep_policy_keeps_the_newest_committed_steps_across_restarts(tmp_path):
    states = _states(6)
    (tmp_path / "unreadable" / "9").mkdir(parents=True)  # set-aside checkpoints are not steps
    for async_save in (False, True):
        d = tmp_path / f"async{async_save}"
        c = Checkpointer(d, keep=2, async_save=async_save)
        for s in range(1, 6):
            c.save(s, states[s], {"step": s})
            c.wait()
            assert c.steps() == list(range(max(1, s - 1), s + 1))
        c.close()
        c = Checkpointer(d, keep=2, async_save=async_save)  # a restarted run
        assert c.steps() == [4, 5]
        c.save(6, states[6], {"step": 6}, force=True)
        c.close()
        assert sorted(int(p.name) for p in d.iterdir() if p.name.isdigit()) == [5, 6]
    with pytest.raises(ValueError, match="keep must be >= 1"):
        Checkpointer(tmp_path / "k0", keep=0)


# ------------------------------------------------------------------------------------------------
# 4. Non-finite loss or gradient


def inject_nonfinite(monkeypatch, at_step: int, what: str, seed: int = 0):
    """Makes the loss ("loss") or one gradient leaf ("grad") NaN in the optimizer step taken from
    state.step == at_step (recognised by its RNG key inside the jitted step)."""
    real = act.act_train_grads
    key = jax.random.key_data(jax.random.fold_in(jax.random.fold_in(jax.random.key(seed), at_step),
                                                 train_state.PURPOSE_HALT))

    def wrapped(*args, **kwargs):
        loss, carry, out, metrics, grads, pz = real(*args, **kwargs)
        hit = jnp.all(jax.random.key_data(args[6]) == key)
        nan = jnp.where(hit, jnp.nan, 0.0)
        if what == "loss":
            loss = loss + nan
        else:
            leaves, tree = jax.tree_util.tree_flatten(grads)
            leaves[0] = leaves[0] + nan.astype(leaves[0].dtype)
            grads = jax.tree_util.tree_unflatten(tree, leaves)
        return loss, carry, out, metrics, grads, pz

    monkeypatch.setattr(act, "act_train_grads", wrapped)


def test_a_nan_gradient_stops_naming_step_and_quantity_without_a_bad_checkpoint(data_dir, tmp_path, monkeypatch):
    inject_nonfinite(monkeypatch, at_step=4, what="grad")  # the 5th optimizer step
    with pytest.raises(TrainingDiverged, match=r"step 5: non-finite gradient of the parameters \(\d+ NaN/Inf "
                                               r"values\); the last good checkpoint \(step 3\)"):
        train_and_evaluate(tiny(**{"data.data_dir": data_dir}), str(tmp_path / "nan"))
    assert steps_on_disk(tmp_path / "nan") == [3]
    assert not (tmp_path / "nan" / "summary.json").exists()


def test_skip_policy_leaves_the_state_unchanged_for_a_nan_step(monkeypatch):
    from recur_jax.core.models import ModelConfig

    inject_nonfinite(monkeypatch, at_step=0, what="loss")
    c = tiny(**{"nonfinite.policy": "skip"})
    mc = ModelConfig.from_dict(c.model.to_dict())
    rng = np.random.default_rng(0)
    batch = {"inputs": rng.integers(1, 11, (8, 81)).astype(np.int32),
             "labels": rng.integers(2, 11, (8, 81)).astype(np.int32),
             "puzzle_identifiers": np.zeros((8,), np.int32)}
    graphdef, s0 = train_state.init_train_state(c, mc, batch)
    step = jax.jit(train_step.make_train_step(graphdef, c, mc))
    s1, m1 = step(s0, batch)
    assert int(s1.step) == 1 and float(m1["skipped"]) == 1.0 and float(m1["loss"]) == 0.0
    assert float(m1["nonfinite_loss"]) == 1.0
    parts0, parts1 = train_state.fingerprint_parts(s0), train_state.fingerprint_parts(s1)
    assert {k: parts0[k] == parts1[k] for k in parts0} == {"params": True, "opt_state": True, "ema": True,
                                                          "puzzle_table": True, "carry": True, "step": False}
    s2, m2 = step(s1, batch)  # the next step is not poisoned
    assert float(m2["skipped"]) == 0.0 and np.isfinite(float(m2["loss"]))
    assert train_state.fingerprint_parts(s2)["params"] != parts1["params"]
    assert runlog.nonfinite_quantities({"loss": float("nan"), "nonfinite_puzzle_grads": 3.0}) == [
        "loss", "gradient of the puzzle embeddings (3 NaN/Inf values)"]


def test_skip_policy_run_completes_and_counts_the_skipped_step(data_dir, tmp_path, monkeypatch, capsys):
    inject_nonfinite(monkeypatch, at_step=4, what="grad")
    summary = train_and_evaluate(tiny(**{"data.data_dir": data_dir, "nonfinite.policy": "skip"}), str(tmp_path / "s"))
    assert summary["step"] == N
    lines = [json.loads(ln) for ln in open(tmp_path / "s" / "metrics.jsonl") if '"train"' in ln]
    assert [(ln["step"], ln["skipped"]) for ln in lines] == [(2, 0.0), (4, 0.0), (6, 1.0)]
    assert "step 5: skipped 1 step(s) with non-finite gradient of the parameters" in capsys.readouterr().out


# ------------------------------------------------------------------------------------------------
# 5. Config errors before any compute


def _with(c, path, value, delete=False):
    d = c.to_dict()
    node = d
    *head, last = path.split(".")
    for p in head:
        node = node[p]
    if delete:
        del node[last]
    else:
        node[last] = value
    return ml_collections.ConfigDict(d)


BAD_CONFIGS = [
    ("totl_steps", 5, r"config\.totl_steps: unknown field; valid fields here: \[.*'total_steps'"),
    ("optim.learning_rate", 1e-3, r"config\.optim\.learning_rate: unknown field"),
    ("model.hiden_size", 8, r"config\.model\.hiden_size: unknown field"),
    ("total_steps", "100", r"config\.total_steps='100' \(str\): expected an integer"),
    ("model.hidden_size", 32.5, r"config\.model\.hidden_size=32\.5 \(float\): expected an integer"),
    ("ema", 1, r"config\.ema=1 \(int\): expected True or False"),
    ("optim.lr", None, r"config\.optim\.lr: missing"),
    ("model.pos_encodings", "rope", r"model\.pos_encodings='rope': expected 'none' or 'learned' when mlp_t=True"),
    ("global_batch_size", 12, r"config\.global_batch_size=12: expected a multiple of the 8 batch row shards "
                              r"\(mesh data\*fsdp = 8\*1\)"),
    ("eval.global_batch_size", 4, r"config\.eval\.global_batch_size=4: expected a multiple of the 8 batch row shards"),
    ("microbatches", 3, r"config\.microbatches=3: expected a divisor of global_batch_size=8"),
    ("model.puzzle_emb_ndim", 512, r"model\.puzzle_emb_len=1: expected 0 or at least ceil\(puzzle_emb_ndim / "
                                   r"hidden_size\) = 16"),
    ("nonfinite.policy", "ignore", r"config\.nonfinite\.policy='ignore': expected 'stop' or 'skip'"),
    ("nonfinite.max_consecutive_skips", 0, r"config\.nonfinite\.max_consecutive_skips=0: expected an integer >= 1"),
    ("checkpoint.keep", 0, r"config\.checkpoint\.keep=0: expected an integer >= 1"),
]


@pytest.mark.parametrize("path,value,message", BAD_CONFIGS, ids=[b[0] for b in BAD_CONFIGS])
def test_config_errors_name_the_field_before_anything_is_built(tmp_path, path, value, message):
    c = _with(tiny(), path, value, delete=value is None)
    with pytest.raises(ValueError, match=message):
        train_and_evaluate(c, str(tmp_path / "w"))
    assert not (tmp_path / "w").exists()  # nothing built or written


def test_too_few_steps_for_an_episode_is_a_config_error(tmp_path):
    c = tiny(act_mode="episode", total_steps=2)
    with pytest.raises(ValueError, match=r"config\.total_steps=2: expected at least one episode of "
                                         r"model\.halt_max_steps=3"):
        train_and_evaluate(c, str(tmp_path / "w"))
    assert not (tmp_path / "w").exists()


def test_every_experiment_config_passes_the_schema():
    """Every experiment file's config passes the schema, for each arg in its `CHECK_ARGS` (default: no arg);
    a new experiment file is found and checked without editing this test."""
    import experiments
    from recur_jax.run import config as config_schema
    from recur_jax.study import sweep

    root = pathlib.Path(experiments.__file__).parent
    files = sorted(str(p.relative_to(root)) for p in root.rglob("*.py")
                   if "def get_config" in p.read_text() and p.name != "__init__.py")
    assert {"trm_sudoku.py", "hrm_sudoku.py", "ablations/extrapolation.py"} <= set(files)
    for name in files:
        module, _, _ = sweep.load_experiment(str(root / name))
        for arg in getattr(module, "CHECK_ARGS", [None]):
            config_schema.check(module.get_config(arg))


# ------------------------------------------------------------------------------------------------
# 6. Workdir safety


def _mtimes(d):
    return {p: p.stat().st_mtime_ns for p in pathlib.Path(d).rglob("*")}


def test_a_workdir_with_another_run_is_refused_and_left_untouched(straight, data_dir, tmp_path):
    copy = tmp_path / "other"
    shutil.copytree(straight[0], copy)
    before = _mtimes(copy)
    with pytest.raises(workdir_lib.WorkdirMismatch, match=r"run\.json records a run with a different "
                                                          r"config\.optim\.lr \(0\.002 there, 0\.001 now\).*"
                                                          r"--resume_anyway.*--overwrite"):
        train_and_evaluate(tiny(**{"data.data_dir": data_dir, "optim.lr": 1e-3}), str(copy))
    assert _mtimes(copy) == before
    os.unlink(copy / "run.json")  # no run.json: the checkpoint's own record decides
    with pytest.raises(workdir_lib.WorkdirMismatch, match=r"checkpoints/6 records .*config\.optim\.lr"):
        train_and_evaluate(tiny(**{"data.data_dir": data_dir, "optim.lr": 1e-3}), str(copy))


def test_resume_anyway_continues_and_records_the_change(straight, data_dir, tmp_path):
    copy = tmp_path / "anyway"
    shutil.copytree(straight[0], copy)
    s = train_and_evaluate(tiny(**{"data.data_dir": data_dir, "optim.lr": 1e-3}), str(copy), resume_anyway=True)
    assert s["step"] == N and s["fingerprint"] == straight[1]["fingerprint"]  # nothing left to train
    run = json.load(open(copy / "run.json"))
    assert run["resumed_anyway"] == [{"from_step": N, "changed": {"optim.lr": {"before": 0.002, "now": 0.001}}}]
    assert run["config"]["optim"]["lr"] == 0.001
    train_and_evaluate(tiny(**{"data.data_dir": data_dir, "optim.lr": 1e-3}), str(copy))  # now the same config
    assert json.load(open(copy / "run.json"))["resumed_anyway"] == run["resumed_anyway"]  # the record is kept


def test_overwrite_moves_the_previous_run_aside_and_starts_over(straight, data_dir, tmp_path):
    copy = tmp_path / "over"
    shutil.copytree(straight[0], copy)
    s = train_and_evaluate(tiny(total_steps=HALF, **{"data.data_dir": data_dir, "optim.lr": 1e-3}), str(copy),
                           overwrite=True)
    assert s["step"] == HALF and steps_on_disk(copy) == [HALF]
    (previous,) = (copy / "previous").iterdir()
    assert steps_on_disk(previous) == [HALF, N]
    assert json.load(open(previous / "summary.json"))["fingerprint"] == straight[1]["fingerprint"]
    assert json.load(open(copy / "run.json"))["config"]["optim"]["lr"] == 0.001
    with pytest.raises(ValueError, match="exclude each other"):
        train_and_evaluate(tiny(), str(copy), overwrite=True, resume_anyway=True)


def test_config_differences_ignore_what_does_not_change_the_trained_state():
    base = tiny().to_dict()
    longer = dict(base, total_steps=100, log_every=7, eval_every=3, checkpoint_every=5,
                  checkpoint={"keep": 9, "async_save": True}, eval=dict(base["eval"], max_examples=3))
    assert workdir_lib.config_differences(base, longer) == {}  # constant lr after warmup: same run, longer
    decayed = dict(base, optim=dict(base["optim"], lr_min_ratio=0.1))
    assert workdir_lib.config_differences(decayed, dict(decayed, total_steps=100)) == {"total_steps": (6, 100)}
    older = {k: v for k, v in base.items() if k != "nonfinite"}  # a record from before a field existed
    assert workdir_lib.config_differences(older, base) == {}
    assert workdir_lib.config_differences(base, older) == {"nonfinite.policy": ("stop", None)}


def test_launch_main_refuses_with_the_flags_to_use(straight, data_dir, tmp_path):
    copy = tmp_path / "cli"
    shutil.copytree(straight[0], copy)
    before = _mtimes(copy)
    res = subprocess.run([sys.executable, "-m", "launch.main", *child_args(copy, data_dir), "--config.optim.lr=0.001"],
                         cwd=REPO, env=soak.child_env(), capture_output=True, text=True, timeout=300)
    assert res.returncode == 1
    (err,) = [ln for ln in res.stderr.splitlines() if ln.startswith("error:")]
    assert "config.optim.lr (0.002 there, 0.001 now)" in err and "--overwrite" in err and "--resume_anyway" in err
    assert _mtimes(copy) == before


# ------------------------------------------------------------------------------------------------
# 7. Hostile files


VALID_ROW = ("x,..3.2.6..9..3.5..1..18.64....81.29..7.......8..67.82....26.95..8..2.3..9..5.1.3..,"
             "483921657967345821251876493548132976729564138136798245372689514814253769695417382,0\n")


@pytest.mark.parametrize("rows,kwargs,message", [
    (["x" * 5000 + "\n"], {}, r"bad\.csv:3: line longer than 4096 characters; expected a row of about 170"),
    ([VALID_ROW.replace("x,", "y,", 1).replace("..3", "z.3", 1), "x" * 5000 + "\n"], {},
     r"bad\.csv:3: question has 'z' at position 1"),  # the first bad line is reported, whatever the kind
    (["," * 3000 + "\n"], {}, r"bad\.csv:3: 3001 columns; expected 4"),
    ([VALID_ROW.replace("x,", "y,", 1).replace("..3.2", "4.3.2", 1)] * 1, {"max_rows": 1},
     r"bad\.csv:3: more than 1 data rows; expected at most 1 rows"),
])
def test_csv_limits_name_file_and_line(tmp_path, rows, kwargs, message):
    from recur_jax.tasks import sudoku

    path = tmp_path / "bad.csv"
    path.write_text("source,question,answer,rating\n" + VALID_ROW + "".join(rows))
    with pytest.raises(sudoku.SudokuDataError, match=message):
        sudoku.read_csv(path, **kwargs)


def test_json_reader_limits(tmp_path):
    big = tmp_path / "big.json"
    big.write_text(json.dumps({"a": "x" * 2000}))
    with pytest.raises(UnsafeInputError, match=r"big\.json: JSON file of 2009 bytes is larger than the limit of "
                                               r"1000 bytes"):
        read_json(big, max_bytes=1000)
    deep = tmp_path / "deep.json"
    deep.write_text("[" * 100 + "]" * 100)
    with pytest.raises(UnsafeInputError, match=r"deep\.json: JSON nested deeper than 64 levels"):
        read_json(deep)
    deeper = tmp_path / "deeper.json"
    deeper.write_text("[" * 200000 + "]" * 200000)
    with pytest.raises(UnsafeInputError, match=r"deeper\.json: JSON nested"):
        read_json(deeper)
    bad = tmp_path / "bad.json"
    bad.write_text('{"config": {"seed": 0,}}')
    with pytest.raises(ValueError, match=r"bad\.json:1:23: invalid JSON"):
        read_json(bad)
    latin = tmp_path / "latin.json"
    latin.write_bytes(b'{"name": "caf\xe9"}')
    with pytest.raises(ValueError, match=r"latin\.json: not UTF-8 \(invalid continuation byte at byte 13\)"):
        read_json(latin)
    assert read_json(big)["a"] == "x" * 2000


def test_a_hostile_run_json_is_a_named_error(tmp_path):
    (tmp_path / "run.json").write_text('["not", "a", "run"]')
    with pytest.raises(ValueError, match=r"run\.json: expected an object with a 'config' object"):
        checkpoint_lib.load_for_inference(str(tmp_path))


def test_paths_from_files_stay_inside_the_data_directory(tmp_path):
    base = tmp_path / "data"
    (base / "sub").mkdir(parents=True)
    (base / "sub" / "ok.json").write_text("{}")
    (base / "escape").symlink_to(tmp_path)
    assert resolve_inside(base, "sub/ok.json") == str((base / "sub" / "ok.json").resolve())
    for rel, why in [("../secret", "outside the data directory"), ("/etc/passwd", "is absolute"),
                     ("sub/../../x", "outside the data directory"), ("escape/x", "outside the data directory"),
                     ("", "expected a non-empty relative path"), ("a\x00b", "expected a non-empty relative path")]:
        with pytest.raises(UnsafeInputError, match=why):
            resolve_inside(base, rel, source="index.json:3")


def test_torch_files_are_loaded_as_weights_only(tmp_path):
    torch = pytest.importorskip("torch")
    from recur_jax.core.convert import load_torch_checkpoint

    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    torch.save({"w": Evil()}, tmp_path / "evil.pt")
    with pytest.raises(ValueError, match=r"evil\.pt: refused, not a plain PyTorch state_dict of tensors \(Trying "
                                         r"to load unsupported GLOBAL posix\.system"):
        load_torch_checkpoint(tmp_path / "evil.pt")
    assert not marker.exists()
    (tmp_path / "garbage.pt").write_bytes(bytes(range(256)) * 4)
    with pytest.raises(ValueError, match=r"garbage\.pt: refused, not a plain PyTorch state_dict"):
        load_torch_checkpoint(tmp_path / "garbage.pt")
    torch.save({"w": torch.ones(3)}, tmp_path / "ok.pt")
    with pytest.raises(UnsafeInputError, match=r"ok\.pt: PyTorch checkpoint of \d+ bytes is larger than the limit "
                                               r"of 100 bytes"):
        load_torch_checkpoint(tmp_path / "ok.pt", max_bytes=100)
    assert load_torch_checkpoint(tmp_path / "ok.pt")["w"].tolist() == [1.0, 1.0, 1.0]
    torch.save({"w": [1, 2]}, tmp_path / "notensor.pt")
    with pytest.raises(ValueError, match=r"notensor\.pt: expected a state_dict"):
        load_torch_checkpoint(tmp_path / "notensor.pt")
