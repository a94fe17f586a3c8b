"""N JAX processes on this machine over loopback, each with M fake CPU devices (how tests exercise multi-host).

    python -m launch.local_multiprocess --num_processes=2 --devices_per_process=2 -- \
        --config=experiments/trm_sudoku.py:mlp,cpu --workdir=runs/mp --config.total_steps=20

Everything after `--` is passed to `python -m launch.main` (or to `--module`). Each process gets
JAX_COORDINATOR_ADDRESS=127.0.0.1:PORT, JAX_NUM_PROCESSES=N, JAX_PROCESS_ID=i, JAX_PLATFORMS=cpu and
XLA_FLAGS=--xla_force_host_platform_device_count=M; `recur_jax.run.distributed` then calls
`jax.distributed.initialize` with cross-process CPU collectives over gloo. Output lines are prefixed
with `[pI]` and printed whole (progress-bar updates become lines; Gloo's rendezvous lines, which two
threads of one process print interleaved, are dropped unless `--show_gloo`). If one process fails the
others are stopped; the exit code is the first non-zero one.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Sequence

from absl import app, flags

from launch import cli

_REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def process_env(process_id: int, num_processes: int, devices_per_process: int, port: int,
                base: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of process `process_id` (see the module docstring).

    Raises:
      ValueError: num_processes or devices_per_process < 1, or process_id outside [0, num_processes).
    """
    if num_processes < 1 or devices_per_process < 1:
        raise ValueError(f"--num_processes={num_processes}, --devices_per_process={devices_per_process}: "
                         f"expected integers >= 1")
    if not 0 <= process_id < num_processes:
        raise ValueError(f"process_id={process_id}: expected 0 <= process_id < {num_processes}")
    env = dict(os.environ if base is None else base)
    xla = re.sub(r"--xla_force_host_platform_device_count=\d+", "", env.get("XLA_FLAGS", "")).strip()
    env.update(
        JAX_PLATFORMS="cpu",
        XLA_FLAGS=f"{xla} --xla_force_host_platform_device_count={devices_per_process}".strip(),
        JAX_COORDINATOR_ADDRESS=f"127.0.0.1:{port}",
        JAX_NUM_PROCESSES=str(num_processes),
        JAX_PROCESS_ID=str(process_id),
        JAX_CPU_COLLECTIVES_IMPLEMENTATION="gloo",
        PYTHONPATH=os.pathsep.join(filter(None, [_REPO, env.get("PYTHONPATH", "")])),
        PYTHONUNBUFFERED="1",
    )
    if num_processes == 1:  # one process needs no coordinator
        for k in ("JAX_COORDINATOR_ADDRESS", "JAX_NUM_PROCESSES", "JAX_PROCESS_ID"):
            env.pop(k)
    return env


# Gloo's C++ code prints one line per rendezvous; two rendezvous of one process print at once and their
# characters interleave ("... connected to 1[Gloo] Rank 0 is connected to 1 peer ranks ...\n peer ranks ...").
GLOO_LINE = re.compile(r"\[Gloo\] Rank \d+ is connected to \d+ peer ranks\. Expected number of connected peer "
                       r"ranks is : \d+\n?")
_WRITE = threading.Lock()  # one whole line per write, whichever process it comes from


class LineFilter:
    """Turns a process's output into whole lines, without Gloo's rendezvous lines (`GLOO_LINE`).

    Complete Gloo messages are cut out of a line (a progress bar they landed in is kept); a line left
    with a piece of one (two messages interleaved character by character) is dropped whole.
    """

    def __init__(self, drop_gloo: bool = True):
        self.drop_gloo, self.buffer = drop_gloo, ""

    def _keep(self, line: str) -> str | None:
        if not self.drop_gloo:
            return line
        line = GLOO_LINE.sub("", line + "\n").rstrip("\n")
        return None if ("[Gloo]" in line or "connected peer ranks" in line) else line

    def feed(self, text: str) -> list[str]:
        """The complete lines (each ending in a newline) to print now, in order."""
        self.buffer += text.replace("\r\n", "\n").replace("\r", "\n")
        head, sep, self.buffer = self.buffer.rpartition("\n")
        if not sep:
            return []
        kept = (self._keep(ln) for ln in head.split("\n"))
        return [ln + "\n" for ln in kept if ln is not None]

    def flush(self) -> list[str]:
        """The rest of the output (a last line without its newline gets one)."""
        rest, self.buffer = self.buffer, ""
        return self.feed(rest + "\n") if rest else []


def _pump(stream, prefix: str, sink, drop_gloo: bool = True) -> None:
    f = LineFilter(drop_gloo)
    for chunk in iter(stream.readline, ""):
        _emit(f.feed(chunk), prefix, sink)
    _emit(f.flush(), prefix, sink)
    stream.close()


def _emit(lines: list[str], prefix: str, sink) -> None:
    if lines:
        with _WRITE:
            sink.write("".join(prefix + ln for ln in lines))
            sink.flush()


def launch(args: Sequence[str], *, num_processes: int, devices_per_process: int, module: str = "launch.main",
           port: int | None = None, timeout: float | None = None, cwd: str | None = None,
           python: str = sys.executable, show_gloo: bool = False) -> int:
    """Runs `python -m module *args` in `num_processes` processes and waits for all of them.

    Args:
      args: the command-line arguments of the module (e.g. --config=..., --workdir=...).
      num_processes, devices_per_process: N and M.
      port: the coordinator port (default: a free one).
      timeout: seconds before every process is killed (None: no limit).
      cwd: the working directory of the processes (default: this one; relative paths in args resolve there).
      show_gloo: keep Gloo's rendezvous lines (dropped by default: one per process and collective group).
    Returns:
      0 if every process exited with 0, else the first non-zero exit code (124 on timeout).
    """
    if num_processes < 1 or devices_per_process < 1:
        raise ValueError(f"--num_processes={num_processes}, --devices_per_process={devices_per_process}: "
                         f"expected integers >= 1")
    if port is not None and not 0 < port < 65536:
        raise ValueError(f"--port={port}: expected a TCP port in 1..65535")
    if timeout is not None and not timeout > 0:
        raise ValueError(f"--timeout={timeout}: expected a number of seconds > 0")
    port = free_port() if port is None else port
    procs, pumps = [], []
    for i in range(num_processes):
        env = process_env(i, num_processes, devices_per_process, port)
        p = subprocess.Popen([python, "-m", module, *args], env=env, cwd=cwd or os.getcwd(), stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True, start_new_session=True)
        procs.append(p)
        t = threading.Thread(target=_pump, args=(p.stdout, f"[p{i}] ", sys.stdout, not show_gloo), daemon=True)
        t.start()
        pumps.append(t)
    deadline = None if timeout is None else time.monotonic() + timeout
    code = 0
    try:
        while [p.poll() for p in procs].count(None):  # polls every process (no short-circuit)
            failed = [p.returncode for p in procs if p.returncode not in (None, 0)]
            late = deadline is not None and time.monotonic() > deadline
            if failed or late:
                code = failed[0] if failed else 124
                for p in procs:
                    if p.poll() is None:
                        os.killpg(p.pid, signal.SIGTERM)
                break
            time.sleep(0.2)
        for p in procs:
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait()
    except KeyboardInterrupt:
        for p in procs:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGTERM)
        raise
    for t in pumps:
        t.join(timeout=5)
    if code == 0:
        code = next((p.returncode for p in procs if p.returncode != 0), 0)
    return code


def define_flags() -> None:
    """The command-line flags (defined only when run as a program, so the module imports cleanly)."""
    flags.DEFINE_integer("num_processes", 2, "N: processes to start.")
    flags.DEFINE_integer("devices_per_process", 2, "M: fake CPU devices per process.")
    flags.DEFINE_string("module", "launch.main", "The module each process runs (python -m).")
    flags.DEFINE_integer("port", None, "Coordinator port on 127.0.0.1 (default: a free one).")
    flags.DEFINE_float("timeout", None, "Kill every process after this many seconds.")
    flags.DEFINE_bool("show_gloo", False, "Keep the collective library's (Gloo) rendezvous lines.")


def main(argv):
    """Exit status: the first non-zero status of the processes (124 on timeout), or 2 for bad flags."""
    f = flags.FLAGS
    if f.num_processes < 1 or f.devices_per_process < 1 or (f.port is not None and not 0 < f.port < 65536) or (
            f.timeout is not None and not f.timeout > 0):
        raise app.UsageError(f"--num_processes={f.num_processes} and --devices_per_process={f.devices_per_process} "
                             f"must be >= 1, --port in 1..65535, --timeout > 0")
    return launch(argv[1:], num_processes=f.num_processes, devices_per_process=f.devices_per_process, module=f.module,
                  port=f.port, timeout=f.timeout, show_gloo=f.show_gloo)


if __name__ == "__main__":
    define_flags()
    cli.run(main)
