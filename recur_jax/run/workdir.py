"""Workdir safety: a run pointed at a workdir that holds another run refuses to touch it.

"Another run" is a recorded config (`run.json`, or the record inside the newest checkpoint when
run.json is missing or unreadable) that differs from the new one in a field that changes what is
trained. Fields that only change logging, evaluation, checkpoint cadence or where data is cached
(`IGNORED`) may differ freely; `total_steps` may differ when the learning-rate schedules do not
depend on it (`optim.lr_min_ratio == 1`: warmup then constant), so "train longer" resumes the same
run bit for bit. Fields absent from an older record are not compared.

One run at a time (`WorkdirLock`): process 0 of a run holds `<workdir>/.lock` (an exclusive `flock` plus
a JSON record of pid, host, process start time and command) for the life of the run; a second run in
the same workdir is refused with one line naming the holder. The file is deleted when the run ends; the
kernel drops the `flock` when its holder dies (kill -9 included), so a record left behind is stale: it
is taken over with a warning, unless it names a live process on this host (a file system that ignores
`flock`), which is refused.

A cloud workdir (`gs://...`: object stores have no locks) holds the lock as a heartbeat record instead:
`<workdir>/.lock` is rewritten every `HEARTBEAT_S` seconds by a daemon thread; a record not refreshed
for `STALE_S` seconds (its holder was killed or preempted) is taken over with a warning, a fresher one
is refused with the same one line. Two runs started within a second of each other may both pass (there
is no compare-and-swap through the path layer); each re-reads the record after writing it and the
loser of that race is refused.

Two ways past a refusal (`launch.main --overwrite / --resume_anyway`):
  * overwrite: the previous run's files (checkpoints/, run.json, metrics.jsonl, summary.json, tb/) are
    moved to `<workdir>/previous/<UTC time>/` (nothing is deleted) and a fresh run starts;
  * resume_anyway: the newest checkpoint is resumed under the new config; run.json records which
    fields changed at which step (`resumed_anyway`, a list kept by every later run.json).
"""

from __future__ import annotations

import datetime
import fcntl
import json
import os
import socket
import sys
import threading
import time
from typing import Any

from recur_jax.io import paths
from recur_jax.io.errors import RunError
from recur_jax.io.safe_io import read_json

IGNORED = ("log_every", "eval_every", "checkpoint_every", "checkpoint", "eval", "data.data_dir",
           "nonfinite.max_consecutive_skips",
           "mesh", "sharding",  # the layout: checkpoints restore onto any mesh (resharding on restore)
           "xla_flags", "host_hugepages")  # compiler and allocator options
RUN_FILES = ("checkpoints", "run.json", "metrics.jsonl", "summary.json", "tb")
MAX_RUN_JSON_BYTES = 16 << 20


class WorkdirMismatch(ValueError):
    """The workdir holds a run with a different config (the message lists the fields)."""


def _flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def _ignored(key: str) -> bool:
    return any(key == p or key.startswith(p + ".") for p in IGNORED)


def as_json_value(value: Any) -> Any:
    """`value` as it reads back from a JSON record (tuples become lists, other objects strings).

    Recorded configs (run.json, checkpoint records) are JSON, while a live config holds tuples; compare
    the two only after this.
    """
    return json.loads(json.dumps(value, default=str))


def config_differences(saved: dict[str, Any], now: dict[str, Any]) -> dict[str, tuple[Any, Any]]:
    """Fields (dotted names) whose values differ and matter for the trained state: {name: (saved, now)}."""
    # compared as JSON values (run.json holds lists where a live config holds tuples)
    old, new = (_flatten(as_json_value(d)) for d in (saved, now))
    diffs = {k: (old[k], new.get(k)) for k in old if not _ignored(k) and k in new and old[k] != new[k]}
    for k in set(old) - set(new):
        if not _ignored(k):
            diffs[k] = (old[k], None)
    if "total_steps" in diffs and new.get("optim.lr_min_ratio") == 1.0 and old.get("optim.lr_min_ratio") == 1.0:
        del diffs["total_steps"]  # constant schedule after warmup: a longer run continues the same run
    return diffs


def recorded_config(workdir: str) -> tuple[dict[str, Any] | None, str]:
    """The config in `<workdir>/run.json` and a description of where it came from.

    Returns:
      (config dict, "path") or (None, reason) when there is no run.json or it cannot be read (a
      warning is printed then; the checkpoint record is used instead).
    """
    path = paths.join(workdir, "run.json")
    if not paths.exists(path):
        return None, "no run.json"
    try:
        run = read_json(path, max_bytes=MAX_RUN_JSON_BYTES)
        if not isinstance(run, dict) or not isinstance(run.get("config"), dict):
            raise ValueError(f"{path}: expected an object with a 'config' object")
        return run["config"], path
    except (ValueError, OSError) as e:
        print(f"warning: {path} cannot be read ({e}); comparing with the checkpoint's record instead")
        return None, f"{path} unreadable"


def recorded_run_field(workdir: str, field: str) -> Any:
    """`run.json[field]` of the run in `workdir`, or None (no run.json, unreadable, or no such field)."""
    try:
        run = read_json(paths.join(workdir, "run.json"), max_bytes=MAX_RUN_JSON_BYTES)
    except (ValueError, OSError):
        return None
    return run.get(field) if isinstance(run, dict) else None


def check(saved: dict[str, Any] | None, source: str, now: dict[str, Any], *, overwrite: bool,
          resume_anyway: bool) -> dict[str, tuple[Any, Any]]:
    """Refuses a different recorded config unless told to overwrite or resume anyway.

    Returns:
      The differences (empty when the configs agree or nothing was recorded).
    Raises:
      WorkdirMismatch: differences and neither flag; names every differing field with both values.
    """
    if saved is None:
        return {}
    diffs = config_differences(saved, now)
    if diffs and not (overwrite or resume_anyway):
        listed = ", ".join(f"config.{k} ({a!r} there, {b!r} now)" for k, (a, b) in sorted(diffs.items()))
        raise WorkdirMismatch(f"{source} records a run with a different {listed}; use a new "
                              f"--workdir, or --resume_anyway to continue that run with this config, or "
                              f"--overwrite to move it to previous/ and start over")
    return diffs


def set_aside_previous_run(workdir: str) -> str | None:
    """Moves the run files of `workdir` to `<workdir>/previous/<UTC time>/` (nothing is deleted).

    Returns:
      The directory they were moved to, or None when there was nothing to move.
    """
    present = [n for n in RUN_FILES if paths.lexists(paths.join(workdir, n))]
    if not present:
        return None
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%S.%fZ")
    target = paths.join(workdir, "previous", stamp)
    paths.makedirs(target)
    for n in present:
        paths.rename(paths.join(workdir, n), paths.join(target, n))
    print(f"--overwrite: moved the previous run ({', '.join(present)}) to {target}")
    return target


LOCK_NAME = ".lock"
HEARTBEAT_S = 30.0  # cloud workdirs: how often the holder rewrites its lock record
STALE_S = 180.0  # cloud workdirs: a record not rewritten for this long is left by a dead run


class WorkdirInUse(RunError):
    """Another live run holds the workdir's lock (the message names its pid, host, start and command)."""


def _process_start(pid: int) -> str | None:
    """The start time of process `pid` in clock ticks since boot (Linux /proc), or None where unknown."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rsplit(b")", 1)[1].split()[19].decode()
    except (OSError, IndexError, UnicodeDecodeError):
        return None


def _alive(pid: int, start: str | None) -> bool:
    """Whether process `pid` of this host is running and (when both are known) started at `start`."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # another user's process: it exists
    now = _process_start(pid)
    return start is None or now is None or now == start


def _describe_holder(record: dict[str, Any]) -> str:
    started = record.get("started")
    when = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(started)) if isinstance(started, (int, float)) else "?"
    return (f"pid {record.get('pid', '?')} on host {record.get('host', '?')} (started {when}: "
            f"{record.get('command', '?')})")


class WorkdirLock:
    """Holds `<workdir>/.lock` for the life of a run (a context manager; see the module docstring).

    Args:
      workdir: the run's directory (created if missing; removed again on exit when the run wrote
        nothing else into it).
      active: False on processes other than 0 (they take no lock).
    Raises (on enter):
      WorkdirInUse: a live run holds it (names pid, host, start time and command).
      OSError: the workdir cannot be created or written (read-only, under a file); the message names it.
    """

    def __init__(self, workdir: str, active: bool = True):
        self.workdir = paths.absolute(workdir)
        self.path = paths.join(self.workdir, LOCK_NAME)
        self.active = active
        self._fd: int | None = None
        self._created = False
        self._cloud = paths.is_url(self.workdir)
        self._stop = threading.Event()
        self._beat: threading.Thread | None = None
        self._me: dict[str, Any] = {}

    def _me_now(self) -> dict[str, Any]:
        return {"pid": os.getpid(), "host": socket.gethostname(), "started": time.time(),
                "proc_start": _process_start(os.getpid()), "command": " ".join(sys.argv)[:500]}

    def _read_cloud(self) -> dict[str, Any] | None:
        try:
            record = json.loads(paths.read_bytes(self.path, 1 << 16).decode("utf-8"))
        except FileNotFoundError:
            return None
        except (UnicodeDecodeError, json.JSONDecodeError):
            return {"pid": "?", "host": "?", "command": "an unreadable lock record", "heartbeat": 0.0}
        return record if isinstance(record, dict) else {"heartbeat": 0.0}

    def _write_cloud(self) -> None:
        paths.write_text_atomic(self.path, json.dumps({**self._me, "heartbeat": time.time()}))

    def _enter_cloud(self) -> None:
        self._me = self._me_now()
        previous = self._read_cloud()
        if previous is not None:
            beat = previous.get("heartbeat")
            age = time.time() - beat if isinstance(beat, (int, float)) else float("inf")
            if age < STALE_S:
                raise WorkdirInUse(f"{self.workdir} is in use by another run: {_describe_holder(previous)}, whose "
                                   f"lock record was refreshed {age:.0f} s ago; wait for it to end or stop it, or "
                                   f"use another --workdir (a record older than {STALE_S:.0f} s is taken over)")
            print(f"warning: {self.path}: taking over the lock left by a run that stopped refreshing it "
                  f"{age:.0f} s ago ({_describe_holder(previous)})", file=sys.stderr)
        self._write_cloud()
        mine = self._read_cloud() or {}
        if (mine.get("pid"), mine.get("host"), mine.get("started")) != (
                self._me["pid"], self._me["host"], self._me["started"]):
            raise WorkdirInUse(f"{self.workdir} was claimed at the same moment by another run: "
                               f"{_describe_holder(mine)}; use another --workdir")

        def beat() -> None:
            while not self._stop.wait(HEARTBEAT_S):
                try:
                    self._write_cloud()
                except OSError as e:  # a transient store error: the next beat tries again
                    print(f"warning: {self.path}: lock heartbeat failed ({e})", file=sys.stderr)

        self._beat = threading.Thread(target=beat, name="recur_jax-lock-heartbeat", daemon=True)
        self._beat.start()

    def _read(self) -> dict[str, Any]:
        os.lseek(self._fd, 0, os.SEEK_SET)
        raw = os.read(self._fd, 1 << 16)
        try:
            record = json.loads(raw.decode("utf-8")) if raw.strip() else {}
        except (UnicodeDecodeError, json.JSONDecodeError):
            return {"pid": "?", "host": "?", "command": f"unreadable lock record {raw[:40]!r}"}
        return record if isinstance(record, dict) else {}

    def __enter__(self) -> "WorkdirLock":
        if not self.active:
            return self
        if self._cloud:
            self._enter_cloud()
            return self
        self._created = not os.path.exists(self.workdir)
        os.makedirs(self.workdir, exist_ok=True)
        while True:
            self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = self._read()
                self._release()
                raise WorkdirInUse(f"{self.workdir} is in use by another run: {_describe_holder(holder)}; wait for "
                                   f"it to end or stop it, or use another --workdir") from None
            try:  # the holder may have released and deleted the file between our open and our flock
                if os.stat(self.path).st_ino == os.fstat(self._fd).st_ino:
                    break
            except FileNotFoundError:
                pass
            self._release()
        me = self._me_now()
        previous = self._read()
        if previous.get("pid") not in (None, me["pid"]) or previous.get("host") not in (None, me["host"]):
            pid = previous.get("pid")
            if previous.get("host") == me["host"] and isinstance(pid, int) and _alive(pid, previous.get("proc_start")):
                self._release()
                raise WorkdirInUse(f"{self.path} names a running process, {_describe_holder(previous)}, although "
                                   f"its file lock is free (a file system without flock?); if that process is not "
                                   f"a run in this workdir, delete {self.path}")
            print(f"warning: {self.path}: taking over the lock left by a run that ended without releasing it "
                  f"({_describe_holder(previous)})", file=sys.stderr)
        os.ftruncate(self._fd, 0)
        os.pwrite(self._fd, json.dumps(me).encode(), 0)
        os.fsync(self._fd)
        return self

    def _release(self) -> None:
        if self._fd is None:
            return
        try:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
        finally:
            os.close(self._fd)
            self._fd = None

    def __exit__(self, *exc) -> None:
        if self._cloud:
            if self._beat is not None:
                self._stop.set()
                self._beat.join()
                self._beat = None
                try:
                    paths.remove(self.path)
                except OSError:
                    pass  # an unreachable store: the record goes stale and is taken over
            return
        # Deleted while still held: a process that opened the old file meanwhile sees, after its flock,
        # that the path no longer names its file, and starts over (`__enter__`).
        try:
            os.remove(self.path)
        except OSError:
            pass  # a vanished disk: the kernel drops the flock with the process anyway
        self._release()
        if self._created:
            try:  # a workdir this run created and left empty (e.g. a data error) is not left behind
                os.rmdir(self.workdir)
            except OSError:
                pass


__all__ = ["HEARTBEAT_S", "IGNORED", "LOCK_NAME", "STALE_S", "WorkdirInUse", "WorkdirLock", "WorkdirMismatch", "check", "config_differences", "recorded_config", "recorded_run_field",
           "set_aside_previous_run"]
