"""Sweeps described as data: expansion into runs, deterministic workdirs, local / SLURM / TPU execution.

An experiment file may define `get_sweep(arg=None) -> list[dict[str, Any]]`, each dict a set of config
overrides (dotted keys, as on the command line: `{"model.H_cycles": 2, "seed": 0}`), built with the
helpers below (the big_vision style of sweeps as lists of override dicts):

    def get_sweep(arg=None):
        return sweep.product(sweep.values("model.H_cycles", [1, 2, 3]), sweep.values("seed", [0, 1]))

`expand` validates every override against the experiment's locked config before anything runs (an
unknown key or a wrong type names the run and the key) and gives each run a workdir under the sweep
root whose name is a pure function of its overrides, so a rerun of the same sweep finds the same
directories; an entry may name its run instead with the key `"_name"` (`NAME_KEY`: letters, digits and
`._=,+-`), e.g. `{"_name": "trm_conv", "model.conv_kernel": 3}`, which is not a config override.
A run is finished when its `summary.json` exists (train.py writes it last); finished runs
are skipped and unfinished ones resume from their newest checkpoint, so a killed sweep restarts where
it stopped.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.util
import itertools
import json
import os
import re
import shlex
import subprocess
import sys
import time
from typing import Any, Callable, Iterable, Sequence

import ml_collections

from recur_jax.io import paths, safe_io

Overrides = dict[str, Any]

SWEEP_FILE = "sweep.json"
NAME_KEY = "_name"  # a sweep entry's own run name (not a config override)


# ---------------------------------------------------------------------------------------------------
# Helpers for get_sweep()


def values(key: str, vals: Iterable[Any]) -> list[Overrides]:
    """One override dict per value: `values("seed", [0, 1]) == [{"seed": 0}, {"seed": 1}]`.

    Raises:
      ValueError: `vals` is empty or `key` is not a dotted identifier path.
    """
    if not re.fullmatch(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*", key):
        raise ValueError(f"sweep key {key!r} is not a dotted config path like 'model.H_cycles'")
    out = [{key: v} for v in vals]
    if not out:
        raise ValueError(f"sweep key {key!r} has no values")
    return out


def _merge(dicts: Sequence[Overrides]) -> Overrides:
    merged: Overrides = {}
    for d in dicts:
        clash = set(merged) & set(d)
        if clash:
            raise ValueError(f"sweep keys {sorted(clash)} are set twice in one run")
        merged.update(d)
    return merged


def product(*sweeps: Sequence[Overrides]) -> list[Overrides]:
    """The Cartesian product of sweeps, the last varying fastest; each run merges one dict of each.

    Raises:
      ValueError: the same key appears in two of the sweeps.
    """
    return [_merge(combo) for combo in itertools.product(*sweeps)]


def zip_sweeps(*sweeps: Sequence[Overrides]) -> list[Overrides]:
    """Sweeps of equal length merged element by element (values that move together).

    Raises:
      ValueError: the sweeps differ in length or share a key.
    """
    lengths = {len(s) for s in sweeps}
    if len(lengths) > 1:
        raise ValueError(f"zip_sweeps needs sweeps of equal length, got lengths {[len(s) for s in sweeps]}")
    return [_merge(combo) for combo in zip(*sweeps)]


# ---------------------------------------------------------------------------------------------------
# Expansion


@dataclasses.dataclass(frozen=True)
class Run:
    """One run of a sweep.

    Attributes:
      index: position in the sweep (the SLURM array index).
      name: directory name under the sweep root, a pure function of `overrides`.
      workdir: `root/name`.
      overrides: the dotted config overrides of this run, in the sweep's key order.
      argv: the full command (`python -m launch.main --config=... --workdir=... --config.KEY=VALUE ...`).
    """

    index: int
    name: str
    workdir: str
    overrides: Overrides
    argv: tuple[str, ...]

    def finished(self) -> bool:
        """True when the run wrote a readable `summary.json` (train.py writes it after the final evaluation
        and the final checkpoint's commit); a damaged one means unfinished (the run resumes and rewrites it)."""
        path = paths.join(self.workdir, "summary.json")
        if not paths.exists(path):
            return False
        try:
            summary = safe_io.read_json(path, max_bytes=64 << 20)
        except (ValueError, OSError):
            return False
        return isinstance(summary, dict) and isinstance(summary.get("eval"), dict)


def _format_value(v: Any) -> str:
    if isinstance(v, float):
        return repr(v)
    if isinstance(v, (list, tuple)):
        return "(" + ",".join(_format_value(x) for x in v) + ("," if len(v) == 1 else "") + ")"
    return str(v)


def run_name(overrides: Overrides) -> str:
    """A readable, deterministic directory name: `H_cycles=2,L_cycles=3,seed=0`.

    Keys are shortened to their last component unless two would collide; characters outside
    `[A-Za-z0-9._=,+-]` become `_`. Names longer than 120 characters are cut and suffixed with a hash
    of the full overrides so they stay unique. `{}` gives `base`.
    """
    if not overrides:
        return "base"
    leaves = [k.rsplit(".", 1)[-1] for k in overrides]
    keys = leaves if len(set(leaves)) == len(leaves) else list(overrides)
    name = ",".join(f"{k}={_format_value(v)}" for k, v in zip(keys, overrides.values()))
    name = re.sub(r"[^A-Za-z0-9._=,+-]", "_", name)
    if len(name) > 120:
        digest = hashlib.sha256(json.dumps(overrides, sort_keys=True, default=str).encode()).hexdigest()[:10]
        name = f"{name[:109]}-{digest}"
    return name


def load_experiment(spec: str):
    """Imports an experiment file given as `FILE[:ARGS]`.

    Returns:
      (module, path, arg): the module, the file's path and the arg string (None when absent).

    Raises:
      FileNotFoundError: no such file.
      ValueError: the file defines no `get_config`.
    """
    path, _, arg = spec.partition(":")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"experiment file {path} not found")
    mod_name = "_sweep_experiment_" + hashlib.sha1(os.path.abspath(path).encode()).hexdigest()[:8]
    module_spec = importlib.util.spec_from_file_location(mod_name, path)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    if not hasattr(module, "get_config"):
        raise ValueError(f"{path} defines no get_config(arg)")
    return module, path, (arg or None)


def apply_overrides(config: ml_collections.ConfigDict, overrides: Overrides, where: str) -> ml_collections.ConfigDict:
    """A copy of the locked `config` with the dotted `overrides` applied, as `--config.KEY=VALUE` would.

    Raises:
      ValueError: naming `where` and the key, for an unknown key or a value of the wrong type.
    """
    cfg = ml_collections.ConfigDict(config.to_dict())
    cfg.lock()
    for key, v in overrides.items():
        parts = key.split(".")
        node = cfg
        try:
            for p in parts[:-1]:
                node = node[p]
            if parts[-1] not in node:
                raise KeyError(parts[-1])
            node[parts[-1]] = v
        except (KeyError, AttributeError) as e:
            raise ValueError(f"{where}: unknown config key {key!r}") from e
        except TypeError as e:
            raise ValueError(f"{where}: config key {key!r} cannot take {v!r}: {e}") from e
    return cfg


SMOKE_STEPS = 8  # optimizer steps of every run of `launch.sweep --smoke`
SMOKE_EXAMPLES = 32  # test examples of its evaluations (and of `launch.extrapolate --smoke`'s)
SMOKE_SETS = {"total_steps": SMOKE_STEPS, "eval.max_examples": SMOKE_EXAMPLES, "eval_every": 0, "log_every": 2,
              "checkpoint_every": SMOKE_STEPS}


def expand(spec: str, root: str, overrides: Overrides | None = None, python: str | None = None,
           sweep: list[Overrides] | None = None, final: Overrides | None = None) -> list[Run]:
    """The runs of the sweep of experiment `spec` (`FILE[:ARGS]`) under `root`.

    Args:
      spec: the experiment, `experiments/x.py:args`. Its `get_sweep(arg)` gives the runs unless `sweep`
        is passed.
      root: the sweep directory; run `i` lives in `root/<run_name(overrides_i)>`.
      overrides: overrides common to every run (from the command line), applied before the run's own.
      python: the interpreter for the commands (default: this one).
      sweep: an explicit list of per-run overrides instead of `get_sweep`.
      final: overrides applied after the run's own (`launch.sweep --smoke`: few steps for every run).

    Returns:
      The runs in sweep order.

    Raises:
      ValueError: no get_sweep, an empty sweep, two runs with the same overrides, or an override that
        the experiment's config does not accept (naming the run and the key).
    """
    module, path, arg = load_experiment(spec)
    if sweep is None:
        if not hasattr(module, "get_sweep"):
            raise ValueError(f"{path} defines no get_sweep(arg); nothing to sweep")
        sweep = module.get_sweep(arg)
    if not sweep:
        raise ValueError(f"{path}: get_sweep({arg!r}) returned no runs")
    common = dict(overrides or {})
    base = module.get_config(arg)
    runs, seen = [], {}
    for i, run_overrides in enumerate(sweep):
        if not isinstance(run_overrides, dict):
            raise ValueError(f"{path}: sweep entry {i} is {type(run_overrides).__name__}, expected a dict")
        run_overrides = dict(run_overrides)
        given = run_overrides.pop(NAME_KEY, None)
        if given is not None and (not isinstance(given, str) or not re.fullmatch(r"[A-Za-z0-9._=,+-]{1,120}", given)
                                  or given in (".", "..")):
            raise ValueError(f"{path}: sweep entry {i}: {NAME_KEY}={given!r}; expected 1-120 letters, digits or ._=,+-")
        name = given or run_name(run_overrides)
        if name in seen:
            raise ValueError(f"{path}: sweep entries {seen[name]} and {i} have the same name ({name})")
        seen[name] = i
        merged = {**common, **run_overrides, **(final or {})}
        apply_overrides(base, merged, f"{path} run {i} ({name})")
        workdir = paths.join(root, name)
        argv = [python or sys.executable, "-m", "launch.main", f"--config={spec}", f"--workdir={workdir}"]
        argv += [f"--config.{k}={_format_value(v)}" for k, v in merged.items()]
        runs.append(Run(i, name, workdir, run_overrides, tuple(argv)))
    return runs


def write_manifest(root: str, spec: str, runs: Sequence[Run], overrides: Overrides | None = None) -> str:
    """Writes `root/sweep.json` (the experiment, common overrides, and each run's name and overrides).

    The report reads the swept keys from it. Written atomically (temp file + rename). Returns the path.
    """
    paths.makedirs(root)
    manifest = {"experiment": spec, "overrides": overrides or {},
                "runs": [{"index": r.index, "name": r.name, "overrides": r.overrides} for r in runs]}
    path = paths.join(root, SWEEP_FILE)
    paths.write_text_atomic(path, json.dumps(manifest, indent=2, default=str))
    return path


def log_path(workdir: str) -> str:
    """Where `run_local` writes a run's output: `workdir/sweep.log`, or for a cloud workdir (no appends on
    object stores) a local file, `~/.cache/recur_jax/sweep_logs/<hash of the URL>.log`."""
    if not paths.is_url(workdir):
        return os.path.join(workdir, "sweep.log")
    digest = hashlib.sha256(paths.absolute(workdir).encode()).hexdigest()[:16]
    return os.path.join(os.path.expanduser("~"), ".cache", "recur_jax", "sweep_logs", f"{digest}.log")


# ---------------------------------------------------------------------------------------------------
# Execution


def run_local(runs: Sequence[Run], parallel: int = 1, env: dict[str, str] | None = None,
              log: Callable[[str], None] = print, cwd: str | None = None) -> dict[str, int]:
    """Runs the unfinished runs, `parallel` at a time, each as a subprocess; returns {name: exit code}.

    Finished runs (with summary.json) are skipped and reported with code 0. Each run's stdout and stderr
    go to `workdir/sweep.log` (appended, so a resumed run keeps the earlier output). A run that fails
    does not stop the others. `cwd` is the directory the commands run in (default: this process's working
    directory, where the experiment path of `expand` was resolved; `launch` is an installed package).

    Raises:
      ValueError: `parallel` < 1.
    """
    if parallel < 1:
        raise ValueError(f"parallel={parallel}; expected at least 1")
    cwd = cwd or os.getcwd()
    todo = [r for r in runs if not r.finished()]
    codes = {r.name: 0 for r in runs if r.finished()}
    for name in codes:
        log(f"skip {name}: finished (summary.json exists)")
    active: list[tuple[Run, subprocess.Popen, Any]] = []
    pending = list(todo)
    try:
        while pending or active:
            while pending and len(active) < parallel:
                r = pending.pop(0)
                paths.makedirs(r.workdir)
                os.makedirs(os.path.dirname(log_path(r.workdir)), exist_ok=True)
                out = open(log_path(r.workdir), "a")
                out.write(f"$ {shlex.join(r.argv)}\n")
                out.flush()
                log(f"start {r.name}")
                proc = subprocess.Popen(r.argv, stdout=out, stderr=subprocess.STDOUT, cwd=cwd,
                                        env={**os.environ, **(env or {})})
                active.append((r, proc, out))
            time.sleep(0.2)
            for item in list(active):
                r, proc, out = item
                if proc.poll() is not None:
                    out.close()
                    active.remove(item)
                    codes[r.name] = proc.returncode
                    log(f"done {r.name}{result_line(r.workdir)}" if proc.returncode == 0 else
                        f"FAILED (exit {proc.returncode}) {r.name}; see {log_path(r.workdir)}")
    finally:  # interrupted: stop the children too; they resume from their checkpoints next time
        for r, proc, out in active:
            proc.terminate()
        for r, proc, out in active:
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
            out.close()
    return codes


def result_line(workdir: str) -> str:
    """`": exact_accuracy 0.996, 262 s"` from a finished run's summary.json ("" when it cannot be read)."""
    try:
        summary = safe_io.read_json(paths.join(workdir, "summary.json"), max_bytes=64 << 20)
        acc = summary["eval"]["exact_accuracy"]
        wall = summary.get("wall_s")
        return f": exact_accuracy {float(acc):.4f}" + (f", {float(wall):.0f} s" if wall is not None else "")
    except (OSError, ValueError, KeyError, TypeError):
        return ""


def slurm_array_script(runs: Sequence[Run], root: str, parallel: int = 0, sbatch: Sequence[str] = (),
                       cwd: str | None = None) -> str:
    """A SLURM job-array script that runs one sweep run per array task.

    Args:
      runs: the sweep's runs; array index i runs `runs[i]` unless it has already finished (checked at
        run time, so resubmitting the same script resumes the sweep).
      root: the sweep directory (logs go to `root/slurm-<job>_<index>.out`).
      parallel: at most this many tasks at once (`%N` in `--array`); 0 for no limit.
      sbatch: extra `#SBATCH` options, e.g. `("--gres=gpu:1", "--time=12:00:00")`.
      cwd: the directory the commands run in (default: the repository root).

    Returns:
      The script text (bash).
    """
    cwd = cwd or os.getcwd()
    limit = f"%{parallel}" if parallel else ""
    logs = cwd if paths.is_url(root) else os.path.abspath(root)  # SLURM writes its logs to a local path
    lines = ["#!/bin/bash", f"#SBATCH --job-name=sweep-{paths.basename(paths.absolute(root))}",
             f"#SBATCH --array=0-{len(runs) - 1}{limit}",
             f"#SBATCH --output={os.path.join(logs, 'slurm-%A_%a.out')}"]
    lines += [f"#SBATCH {opt}" for opt in sbatch]
    lines += ["set -euo pipefail", f"cd {shlex.quote(cwd)}", "WORKDIRS=("]
    lines += [f"  {shlex.quote(r.workdir)}" for r in runs]
    lines += [")", "COMMANDS=("]
    lines += [f"  {shlex.quote(shlex.join(r.argv))}" for r in runs]
    lines += [")", 'i="${SLURM_ARRAY_TASK_ID}"',
              'if [ -f "${WORKDIRS[$i]}/summary.json" ]; then echo "finished: ${WORKDIRS[$i]}"; exit 0; fi',
              'eval "${COMMANDS[$i]}"', ""]
    return "\n".join(lines)


def command_list(runs: Sequence[Run], skip_finished: bool = True) -> str:
    """One shell command per line (for a TPU pod or any scheduler that takes a list); finished runs are
    left out when `skip_finished`."""
    return "".join(shlex.join(r.argv) + "\n" for r in runs if not (skip_finished and r.finished()))
