"""Parity against the official PyTorch code: golden-value fixtures and training-curve replays.

Usage:
  python -m launch.parity FILE.npz [FILE.npz ...]          # step-level fixtures and/or curve files
  python -m launch.parity --x64 tests/fixtures/reference/trm_mlp_seed0.npz    # our float64 run alone
  python -m launch.parity --table tests/fixtures/reference/*.npz              # the rounding-floor table
  python -m launch.parity --curve tests/fixtures/curves/curve_trm_att_seed1.npz [--steps=20] [--out=DIR]

A step-level fixture (`recur_jax.parity.fixtures`) is run in float32 and in float64; the float32 errors are
judged against the rounding floor that the float64 run measures. A curve file (`recur_jax.parity.replay`;
recognised by its `init/*` weights, or forced with --curve) is replayed with recur_jax's training step,
in float32 and float64, and a PNG of both curves is written next to the file (or into --out).

Prints one JSON line per file. Exit status (`launch.cli`): 0 all within tolerance, 3 a file outside it,
1 a file that is not a fixture or curve or cannot be read (its line says why; never a traceback), 2 usage.
"""

import json
import os
import sys

from absl import app, flags

from launch import cli

flags.DEFINE_bool("curve", False, "Treat every file as a training-curve file (otherwise recognised by init/*).")
flags.DEFINE_bool("x64", False, "Report recur_jax's float64 run itself against the reference (no floor run).")
flags.DEFINE_bool("table", False, "Step-level fixtures: print the per-step floor table as Markdown after the JSON.")
flags.DEFINE_integer("steps", None, "Curve files: replay only the first N optimizer steps.", lower_bound=1)
flags.DEFINE_string("out", None, "Curve files: directory for the PNG (default: next to the file).")


def _is_curve(path: str) -> bool:
    import zipfile

    try:
        with zipfile.ZipFile(path) as z:
            return any(n.startswith("init/") for n in z.namelist())
    except (OSError, zipfile.BadZipFile):
        return False


def _png_path(path: str, out: str | None) -> str:
    name = os.path.splitext(os.path.basename(path))[0] + "_replay.png"
    folder = out or os.path.dirname(os.path.abspath(path))
    if out is None and not os.access(folder, os.W_OK):
        folder = os.getcwd()  # a read-only fixture folder: the PNG goes to the current directory
    return os.path.join(folder, name)


def _curve(path: str) -> dict:
    from recur_jax.study import plots
    from recur_jax.parity import replay

    report = replay.check_curve(path, steps=flags.FLAGS.steps, x64=flags.FLAGS.x64)
    report.pop("_series", None)
    report["png"] = plots.replay_curves(report, _png_path(path, flags.FLAGS.out))
    return report


def _fixture(path: str) -> dict:
    from recur_jax.parity import fixtures as parity

    if not flags.FLAGS.x64:
        return parity.check_file(path)
    run = parity.run_fixture(path, x64=True)
    failures = list(run["mismatches"])
    worst: dict[str, float] = {}
    for t, errs in enumerate(run["errors"]):
        for q, e in errs.items():
            worst[q] = max(worst.get(q, 0.0), e)
            bound = parity.FLOAT64_BOUNDS[parity.kind_of(q)]
            if not e <= bound:
                failures.append(f"step{t} {q}: float64 error {e:.3g} > {bound:g}")
    return {"file": path, "arch": run["arch"], "steps": run["steps"], "precision": "float64",
            "worst": {q: float(f"{e:.3e}") for q, e in sorted(worst.items())},
            "by_step": [{q: float(f"{e:.3e}") for q, e in sorted(errs.items())} for errs in run["errors"]],
            "exact": run["exact"], "tolerances": {"float64_bounds": parity.FLOAT64_BOUNDS},
            "ok": not failures, "failures": failures[:20]}


def markdown_table(report: dict) -> str:
    """The per-step floor table of a step-level report: float32 error / floor (float64 error) / ratio."""
    rows = report["by_step"]
    qs = sorted(rows[0])
    lines = [f"{os.path.basename(report['file'])}: float32 error / float64 error (ratio to the floor)", "",
             "| step | " + " | ".join(qs) + " |", "| --- |" + " --- |" * len(qs)]
    for t, row in enumerate(rows):
        cells = [f"{row[q]['float32']:.1e} / {row[q]['float64']:.1e} ({row[q]['ratio']:.1f})" for q in qs]
        lines.append(f"| {t} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv):
    os.environ.setdefault("JAX_PLATFORMS", "cpu")
    import jax

    jax.config.update("jax_default_matmul_precision", "highest")
    files = argv[1:]
    if not files:
        raise app.UsageError("give one or more fixture or curve files (.npz)")
    status = 0
    for f in files:
        try:
            if not os.path.isfile(f):
                raise ValueError(f"{f}: no such file")
            report = _curve(f) if (flags.FLAGS.curve or _is_curve(f)) else _fixture(f)
        except (OSError, ValueError, KeyError, IndexError) as e:  # a file that is not what it should be
            if flags.FLAGS.traceback:
                raise
            print(json.dumps({"file": f, "ok": False, "error": cli.one_line(e)}))
            print(f"error: {cli.one_line(e)}", file=sys.stderr)
            status = max(status, cli.EXIT_FAILED) if status != cli.EXIT_NEGATIVE else status
            continue
        print(json.dumps(report), flush=True)
        if flags.FLAGS.table and "by_step" in report and not flags.FLAGS.x64:
            print(markdown_table(report))
        if not report["ok"]:
            status = cli.EXIT_NEGATIVE
    return status


if __name__ == "__main__":
    cli.run(main)
