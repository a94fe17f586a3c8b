"""A `gs://` workdir end to end on a local emulation of GCS (`fake_gcs`): train, resume, solve, evaluate.

Every file of the run (run.json, metrics.jsonl, summary.json, TensorBoard, checkpoints, evaluations, the
lock record) must land in the emulated bucket and nothing in the working directory (a local folder named
`gs:` was the old failure); the resumed cloud run must log exactly the lines of an uninterrupted local
run; the lock is a heartbeat record that refuses a live holder and takes over a stale one.
"""

import json
import os
import time

import pytest

import fake_gcs
from recur_jax.io import paths
from recur_jax.run import workdir as workdir_lib
from test_train import tiny

URL = "gs://bucket/run"
EXPERIMENT = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "experiments", "trm_sudoku.py")


@pytest.fixture
def gcs(tmp_path, monkeypatch):
    """gs:// served from tmp_path/gcs; the test runs in an empty working directory."""
    root = tmp_path / "gcs"
    fake_gcs.install(str(root))
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    yield root
    fake_gcs.uninstall()
    assert not any(cwd.iterdir()), f"files written in the working directory: {list(cwd.iterdir())}"


def _config(tmp_path, steps):
    return tiny(total_steps=steps, **{"data.data_dir": str(tmp_path / "data"), "optim.lr_min_ratio": 1.0})


def _train_lines(path):
    return [json.loads(ln) for ln in open(path) if json.loads(ln)["kind"] == "train"]


def test_gs_workdir_trains_resumes_solves_and_evaluates(gcs, tmp_path):
    from recur_jax.inference.solve import solve_puzzles
    from recur_jax.run.train import train_and_evaluate
    from recur_jax.study.evaluation import evaluate_run

    train_and_evaluate(_config(tmp_path, 6), URL)
    run = gcs / "bucket" / "run"
    assert {"run.json", "metrics.jsonl", "summary.json", "checkpoints", "tb"} <= set(os.listdir(run))
    assert sorted(os.listdir(run / "checkpoints")) == ["3", "6"]
    assert all((run / "checkpoints" / s / "commit_success.txt").exists() for s in ("3", "6"))  # GCS commit marker
    events = list((run / "tb").glob("events.out.tfevents.*"))
    assert events and events[0].stat().st_size > 100
    assert not (run / workdir_lib.LOCK_NAME).exists()  # released

    train_and_evaluate(_config(tmp_path, 9), URL)  # "train longer": resumes from the checkpoint at step 6
    record = json.loads((run / "run.json").read_text())
    assert record["resumed_from_step"] == 6
    local = str(tmp_path / "local")
    train_and_evaluate(_config(tmp_path, 9), local)  # the same 9 steps uninterrupted, on a local disk
    cloud_lines, local_lines = _train_lines(run / "metrics.jsonl"), _train_lines(os.path.join(local, "metrics.jsonl"))
    assert [ln["step"] for ln in cloud_lines] == [ln["step"] for ln in local_lines] == [2, 4, 6, 8, 9]  # a last partial window at 9
    for a, b in zip(cloud_lines, local_lines):
        assert a["loss"] == b["loss"] and a["accuracy"] == b["accuracy"], (a, b)

    puzzle = "..3.2.6..9..3.5..1..18.64....81.29..7.......8..67.82....26.95..8..2.3..9..5.1.3.."
    (cloud,), (here,) = solve_puzzles(URL, puzzle), solve_puzzles(local, puzzle)
    assert (cloud.answer == here.answer).all() and cloud.steps == here.steps == 3

    before = {p: p.read_bytes() for p in run.rglob("*") if p.is_file()}
    summary = evaluate_run(URL, name="budget")
    assert summary["workdir"] == URL and summary["step"] == 9
    out = run / "evals" / "budget"
    assert {"summary.json", "metrics.jsonl", "accuracy_by_step.png"} <= set(os.listdir(out))
    assert {p: p.read_bytes() for p in before} == before  # the run's own files are untouched


def test_gs_lock_refuses_a_live_holder_and_takes_over_a_stale_one(gcs, capsys):
    lock_path = paths.join(URL, workdir_lib.LOCK_NAME)
    with workdir_lib.WorkdirLock(URL):
        record = json.loads(paths.read_bytes(lock_path))
        assert record["pid"] == os.getpid() and record["heartbeat"] <= time.time()
        with pytest.raises(workdir_lib.WorkdirInUse, match=r"gs://bucket/run is in use by another run: pid"):
            with workdir_lib.WorkdirLock(URL):
                pass
    assert not paths.exists(lock_path)

    stale = {"pid": 1, "host": "elsewhere", "started": 0.0, "command": "killed run",
             "heartbeat": time.time() - workdir_lib.STALE_S - 1}
    paths.write_text_atomic(lock_path, json.dumps(stale))
    with workdir_lib.WorkdirLock(URL):
        assert json.loads(paths.read_bytes(lock_path))["pid"] == os.getpid()
    assert "taking over the lock left by a run that stopped refreshing it" in capsys.readouterr().err


def test_gs_heartbeat_refreshes_the_record(gcs, monkeypatch):
    monkeypatch.setattr(workdir_lib, "HEARTBEAT_S", 0.05)
    lock_path = paths.join(URL, workdir_lib.LOCK_NAME)
    with workdir_lib.WorkdirLock(URL):
        first = json.loads(paths.read_bytes(lock_path))["heartbeat"]
        deadline = time.time() + 10
        while json.loads(paths.read_bytes(lock_path))["heartbeat"] == first and time.time() < deadline:
            time.sleep(0.05)
        assert json.loads(paths.read_bytes(lock_path))["heartbeat"] > first


def test_path_layer_on_the_emulated_store(gcs):
    f = paths.join(URL, "sub", "log.jsonl")
    assert paths.is_url(f) and f == "gs://bucket/run/sub/log.jsonl" and paths.dirname(f) == "gs://bucket/run/sub"
    paths.makedirs(paths.dirname(f))
    paths.append_text(f, "a\n")
    paths.append_text(f, "b\n")  # no appends on GCS: rewritten whole
    assert paths.read_bytes(f) == b"a\nb\n" and paths.size(f) == 4
    with pytest.raises(ValueError, match=r"gs://bucket/run/sub/log.jsonl: mode 'a' is not available"):
        paths.open_file(f, "a")
    paths.write_text_atomic(f, "c\n")
    assert paths.read_bytes(f) == b"c\n" and paths.listdir(paths.join(URL, "sub")) == ["log.jsonl"]
    paths.rename(paths.join(URL, "sub"), paths.join(URL, "moved"))
    assert not paths.exists(f) and paths.isfile(paths.join(URL, "moved", "log.jsonl"))
    assert paths.local_data_dir(URL) != paths.local_data_dir("gs://bucket/other")
    assert not paths.is_url(paths.local_data_dir(URL))


def test_a_url_data_dir_is_refused_with_the_field_named():
    from recur_jax.tasks.base import data_dir

    c = tiny(**{"data.data_dir": "gs://bucket/data"})
    with pytest.raises(ValueError, match=r"config\.data\.data_dir='gs://bucket/data': expected a local directory"):
        data_dir(c.data, URL)


def test_gs_sweep_root_reports(gcs, tmp_path):
    """A sweep root on the store: finished runs are recognised, launch.report's table, plots (with the
    analysis that loads each checkpoint) and report.html are written into the bucket."""
    from recur_jax.run.train import train_and_evaluate
    from recur_jax.study import results, sweep

    root = "gs://bucket/sweep"
    for seed in (0, 1):
        train_and_evaluate(tiny(seed=seed, **{"data.data_dir": str(tmp_path / "data")}), f"{root}/seed={seed}")
    runs = sweep.expand(EXPERIMENT + ":mlp,cpu", root, sweep=[{"seed": 0}, {"seed": 1}, {"seed": 2}])
    assert [r.finished() for r in runs] == [True, True, False] and runs[0].workdir == f"{root}/seed=0"
    sweep.write_manifest(root, EXPERIMENT + ":mlp,cpu", runs)
    keys, rows = results.table(root)
    assert len(rows) == 1 and rows[0]["seeds"] == 2 and rows[0]["unfinished"] == 0  # grouped over seeds
    images = results.write_plots(root, analyze=True, max_examples=8, results=(keys, rows))
    assert images and all(p.startswith(root + "/") for p in images)
    written = set(os.listdir(gcs / "bucket" / "sweep"))
    assert {"sweep.json", "report.html", "training.png", "refinement.png"} <= written, written
    assert (gcs / "bucket" / "sweep" / "seed=0" / "analysis.json").exists()
