"""Soak test: K random kill/restart cycles of one training run must end in the uninterrupted run's state.

    python -m launch.soak --cycles=10 --workdir=/tmp/soak            # tiny TRM-MLP run, ~1 s per step
    python -m launch.soak --cycles=20 --seed=3 --sigterm_fraction=0.3

1. Runs the command once without interruption (`<workdir>/straight`), for the reference
   `summary.json` fingerprint (params, optimizer, EMA, puzzle table, ACT carry, step) and metrics.
2. Runs the *same* command in `<workdir>/interrupted` and, K times, kills it at a random moment of
   training: SIGKILL (no warning: mid-step, mid-save, mid-log) or, with probability
   `--sigterm_fraction`, SIGTERM (graceful: checkpoint the current step, exit 0); then starts it again.
   Kill moments are drawn uniformly over the steps still to run, plus a random offset within a step.
3. Lets the last start finish and compares: the fingerprint (and each part of it), and every
   `metrics.jsonl` line except the timing field `examples_per_s`.

A cycle "survives" when the restarted command resumes from a checkpoint without any error (and,
after SIGTERM, the stopped command exited 0); the run survives when, in addition, the final state is
bitwise the uninterrupted one. Prints one line per cycle and a final `survived X/K` line; exits 1 on
any mismatch.

`--child` (used by this script and by tests/test_faults.py) runs `launch.main` with the remaining
arguments, slowed by `--step_delay_s` per training batch so that kills land inside training, writing
the batch index being loaded to `<workdir>/.soak_progress`; `--hold_after_checkpoint=N` makes it stop
(sleep) right after checkpoint N is committed, writing `<workdir>/.soak_hold`, for a precise kill.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import runpy
import signal
import subprocess
import sys
import time

TINY = ["--config=experiments/trm_sudoku.py:mlp,cpu", "--config.eval_every=0", "--config.log_every=2",
        "--config.global_batch_size=8", "--config.eval.max_examples=16", "--config.data.num_train=64",
        "--config.data.num_test=16", "--config.model.hidden_size=32", "--config.model.num_heads=2",
        "--config.model.puzzle_emb_ndim=32", "--config.model.halt_max_steps=3"]
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _flag(args: list[str], name: str) -> str | None:
    for a in args:
        if a.startswith(f"--{name}="):
            return a.split("=", 1)[1]
    return None


def child(argv: list[str]) -> None:
    """Runs launch.main with `argv` (after `--`), slowed and observable (see the module docstring)."""
    p = argparse.ArgumentParser(prog="launch.soak --child")
    p.add_argument("--step_delay_s", type=float, default=0.0)
    p.add_argument("--hold_after_checkpoint", type=int, default=-1)
    own, main_args = p.parse_known_args(argv)
    main_args = [a for a in main_args if a != "--"]
    workdir = _flag(main_args, "workdir") or "runs/trm_sudoku_cpu"
    os.makedirs(workdir, exist_ok=True)

    from recur_jax.run.checkpoint import Checkpointer
    from recur_jax.tasks.loader import TrainLoader

    batch = TrainLoader.batch

    def slow_batch(self, step):
        with open(os.path.join(workdir, ".soak_progress"), "w") as f:
            f.write(str(step))
        time.sleep(own.step_delay_s)
        return batch(self, step)

    TrainLoader.batch = slow_batch
    if own.hold_after_checkpoint >= 0:
        save = Checkpointer.save

        def save_then_hold(self, step, state, meta, *, force=False):
            out = save(self, step, state, meta, force=force)
            if step == own.hold_after_checkpoint:
                self.wait()  # committed
                with open(os.path.join(workdir, ".soak_hold"), "w") as f:
                    f.write(str(step))
                while True:
                    time.sleep(3600)
            return out

        Checkpointer.save = save_then_hold
    sys.argv = ["launch.main", *main_args]
    runpy.run_module("launch.main", run_name="__main__")


def child_command(main_args: list[str], *, step_delay_s: float = 0.0, hold_after_checkpoint: int = -1) -> list[str]:
    """The argv of a child run (python -m launch.soak --child ... -- MAIN_ARGS)."""
    return [sys.executable, "-m", "launch.soak", "--child", f"--step_delay_s={step_delay_s}",
            f"--hold_after_checkpoint={hold_after_checkpoint}", "--", *main_args]


def child_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = REPO + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


def read_progress(workdir: str) -> int:
    try:
        with open(os.path.join(workdir, ".soak_progress")) as f:
            return int(f.read().strip() or -1)
    except (OSError, ValueError):
        return -1


def comparable_metrics(workdir: str) -> list[dict]:
    """metrics.jsonl without the timing field (what must be identical between runs)."""
    out = []
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        for ln in f:
            rec = json.loads(ln)
            rec.pop("examples_per_s", None)
            out.append(rec)
    return out


def _run_to_end(cmd: list[str], log: str) -> subprocess.CompletedProcess:
    with open(log, "a") as f:
        return subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, cwd=REPO, env=child_env())


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "--child":
        child(argv[1:])
        return 0
    p = argparse.ArgumentParser(prog="python -m launch.soak", description=__doc__.split("\n")[0])
    p.add_argument("--cycles", type=int, default=10, help="K kill/restart cycles")
    p.add_argument("--workdir", default="runs/soak")
    p.add_argument("--seed", type=int, default=0, help="seed of the kill moments and signals")
    p.add_argument("--total_steps", type=int, default=24)
    p.add_argument("--checkpoint_every", type=int, default=4)
    p.add_argument("--step_delay_s", type=float, default=0.5)
    p.add_argument("--sigterm_fraction", type=float, default=0.25)
    p.add_argument("main_args", nargs="*", help="extra launch.main flags (after --)")
    a = p.parse_args(argv)
    if a.cycles < 1 or a.total_steps < 2:
        p.error("--cycles >= 1 and --total_steps >= 2 expected")
    rng = random.Random(a.seed)
    root = os.path.abspath(a.workdir)
    os.makedirs(root, exist_ok=True)
    common = [*TINY, f"--config.total_steps={a.total_steps}", f"--config.checkpoint_every={a.checkpoint_every}",
              f"--config.data.data_dir={os.path.join(root, 'data')}", *a.main_args]
    straight, interrupted = os.path.join(root, "straight"), os.path.join(root, "interrupted")
    for d in (straight, interrupted):
        if os.path.exists(os.path.join(d, "run.json")):
            p.error(f"{d} holds a previous soak; use a new --workdir")

    t0 = time.time()
    res = _run_to_end(child_command([*common, f"--workdir={straight}"]), os.path.join(root, "straight.log"))
    if res.returncode != 0:
        print(f"the uninterrupted run failed (exit {res.returncode}); see {root}/straight.log")
        return 1
    print(f"uninterrupted run: {time.time() - t0:.0f} s")
    cmd = child_command([*common, f"--workdir={interrupted}"], step_delay_s=a.step_delay_s)
    log = os.path.join(root, "interrupted.log")
    survived = 0
    for cycle in range(1, a.cycles + 1):
        with open(log, "a") as f:
            f.write(f"\n===== cycle {cycle} =====\n")
            f.flush()
            if os.path.exists(os.path.join(interrupted, ".soak_progress")):
                os.unlink(os.path.join(interrupted, ".soak_progress"))
            proc = subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT, cwd=REPO, env=child_env())
            deadline = time.time() + 600
            first = -1
            while proc.poll() is None and time.time() < deadline:  # until the first step has run (compiled)
                now = read_progress(interrupted)
                first = now if first < 0 else first
                if first >= 0 and now > first:
                    break
                time.sleep(0.05)
            remaining = max(a.total_steps - read_progress(interrupted), 1)
            wait_s = rng.uniform(0, remaining * a.step_delay_s)
            sig = signal.SIGTERM if rng.random() < a.sigterm_fraction else signal.SIGKILL
            time.sleep(wait_s)
            at = read_progress(interrupted)
            finished = proc.poll() is not None
            if not finished:
                proc.send_signal(sig)
            rc = proc.wait()
        ok = finished and rc == 0 or (sig == signal.SIGKILL and rc == -signal.SIGKILL) or (
            sig == signal.SIGTERM and rc == 0)
        text = open(log).read().split(f"===== cycle {cycle} =====")[-1]
        ok = ok and "Traceback" not in text and "error:" not in text
        survived += ok
        what = "finished before the signal" if finished else f"{sig.name} while loading batch {at}"
        print(f"cycle {cycle}/{a.cycles}: {what}; exit {rc}; {'ok' if ok else 'FAILED (see ' + log + ')'}")
    with open(log, "a") as f:
        f.write("\n===== final =====\n")
    res = _run_to_end(cmd, log)
    final_ok = res.returncode == 0
    same = False
    if final_ok:
        s1 = json.load(open(os.path.join(straight, "summary.json")))
        s2 = json.load(open(os.path.join(interrupted, "summary.json")))
        parts = {k: s1["fingerprint_parts"][k] == s2["fingerprint_parts"].get(k) for k in s1["fingerprint_parts"]}
        metrics_same = comparable_metrics(straight) == comparable_metrics(interrupted)
        same = s1["fingerprint"] == s2["fingerprint"] and all(parts.values()) and metrics_same
        print(f"final: fingerprint {'equal' if s1['fingerprint'] == s2['fingerprint'] else 'DIFFERENT'} "
              f"({s2['fingerprint'][:16]}); parts {parts}; metrics.jsonl {'equal' if metrics_same else 'DIFFERENT'}; "
              f"eval exact_accuracy {s1['eval']['exact_accuracy']:.4f} vs {s2['eval']['exact_accuracy']:.4f}")
    else:
        print(f"final start failed (exit {res.returncode}); see {log}")
    print(f"survived {survived}/{a.cycles} kill/restart cycles; final state "
          f"{'identical to' if same else 'DIFFERENT from'} the uninterrupted run ({time.time() - t0:.0f} s)")
    return 0 if survived == a.cycles and same else 1


if __name__ == "__main__":
    sys.exit(main())
