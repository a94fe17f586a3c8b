"""Parity with the official PyTorch code: golden-value fixtures and training-curve replay, judged
against the rounding floor measured on each file (recur_jax/parity/fixtures.py, recur_jax/parity/replay.py)."""

import json
import os
import pickle
import subprocess
import sys

import numpy as np
import pytest

from recur_jax.parity import fixtures as parity, replay
from recur_jax.parity.fixtures import MIN_FLOOR, RATIO, check_file

NAMES = ["trm_att_seed0", "trm_mlp_seed0", "trm_learned_seed0", "hrm_seed0"]


def test_tolerance_constants():
    # RATIO: measured float32-error / floor at most 5.1 over 12 fixture files (WORKSPACE.md "Parity").
    assert RATIO == 10.0
    assert MIN_FLOOR == 2.0 ** -20
    assert parity.FLOAT64_BOUNDS == {"forward": 5e-3, "carry": 5e-3, "loss": 5e-3, "grad": 2e-2}


@pytest.mark.parametrize("name", NAMES)
def test_fixture_parity(fixtures_dir, name):
    report = check_file(fixtures_dir / f"{name}.npz")
    assert report["ok"], report["failures"]
    assert all(report["exact"].values())
    expected = {"logits", "q_halt_logits", "q_continue_logits", "z_H", "z_L", "loss", "lm_loss", "q_halt_loss",
                "grad", "grad_puzzle_emb"}
    if name.startswith("hrm"):
        expected |= {"target_q_continue", "q_continue_loss"}
    assert expected <= set(report["worst"])
    # Every step and quantity carries both runs' errors, its floors and both checks' ratios.
    for row in report["by_step"]:
        for v in row.values():
            assert v["floor"] >= MIN_FLOOR and v["own_floor"] >= MIN_FLOOR
            assert v["ratio"] <= RATIO and v["maths_ratio"] <= RATIO


def test_the_float64_run_is_not_float32(fixtures_dir):
    """The floor run really computes in float64: its own error against our float32 run is of float32 size,
    and far above what a float64 computation of the same maths could differ by."""
    run64 = parity.run_fixture(fixtures_dir / "trm_att_seed0.npz", x64=True)
    logits = run64["values"][0]["logits"][0]
    assert logits.dtype == np.float64
    run32 = parity.run_fixture(fixtures_dir / "trm_att_seed0.npz")
    assert run32["values"][0]["logits"][0].dtype == np.float32
    diff = parity._rel(run32["values"][0]["logits"][0], logits)
    assert 1e-9 < diff < 1e-4


def _perturbed(fixtures_dir, tmp_path, key: str, factor: float):
    data = dict(np.load(fixtures_dir / "trm_att_seed0.npz"))
    data[key] = data[key] * factor
    path = tmp_path / "perturbed.npz"
    np.savez(path, **data)
    return check_file(path)


def test_a_wrong_weight_is_detected(fixtures_dir, tmp_path):
    report = _perturbed(fixtures_dir, tmp_path, "param/model.inner.L_level.layers.1.mlp.down_proj.weight", 1.1)
    assert not report["ok"]
    assert report["worst"]["logits"] > parity.FLOAT64_BOUNDS["forward"]


def test_a_small_defect_is_detected_where_the_fixed_tolerances_were_blind(fixtures_dir, tmp_path):
    """Scaling one weight matrix by 1 + 1e-4 moves the logits by ~1e-3: inside the README's fixed 5e-3, but
    ~100x our own float32 rounding at the first step, so the maths check fails."""
    report = _perturbed(fixtures_dir, tmp_path, "param/model.inner.L_level.layers.0.mlp.gate_up_proj.weight", 1.0001)
    assert not report["ok"]
    assert report["worst"]["logits"] < parity.FLOAT64_BOUNDS["forward"]
    assert any("maths differs" in f for f in report["failures"]), report["failures"]


def test_cli_exit_codes(fixtures_dir, tmp_path):
    ok = subprocess.run([sys.executable, "-m", "launch.parity", "--x64", str(fixtures_dir / "trm_mlp_seed0.npz")],
                        capture_output=True, text=True, timeout=300)
    assert ok.returncode == 0, ok.stderr
    line = json.loads(ok.stdout.strip().splitlines()[-1])
    assert line["ok"] and line["exact"]["halted"] and line["precision"] == "float64"
    assert 0 < line["worst"]["logits"] < 1e-3  # the reference's own float32 rounding, measured
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"garbage")
    res = subprocess.run([sys.executable, "-m", "launch.parity", str(bad)], capture_output=True, text=True,
                         timeout=300)
    assert res.returncode == 1  # not a fixture: an input error (3 would be "outside tolerance")
    assert "bad.npz" in res.stdout and res.stderr.strip().splitlines()[-1].startswith("error: ")


def test_files_that_are_not_fixtures_get_one_line_and_no_unpickling_hint(tmp_path):
    text = tmp_path / "notes.txt"
    text.write_text("hello\n")
    pickled = tmp_path / "obj.npz"
    np.savez(pickled, obj=np.array([{"a": 1}], dtype=object))
    npy = tmp_path / "one.npy"
    np.save(npy, np.zeros(3))
    raw_pickle = tmp_path / "raw.pkl"
    raw_pickle.write_bytes(pickle.dumps({"a": 1}))
    for path in (text, pickled, npy, raw_pickle, tmp_path / "missing.npz"):
        with pytest.raises((ValueError, OSError)) as e:  # a missing file: FileNotFoundError, naming it
            parity.run_fixture(path)
        msg = str(e.value)
        assert str(path) in msg and "allow_pickle" not in msg, msg


def test_a_wrong_weight_decay_fails_the_replay(curves_dir):
    """Decay 0 instead of 0.1 moves our float32 and float64 replays alike, so the floor cannot absorb it:
    the float64 replay leaves the reference by far more than our own rounding within 6 steps."""
    report = replay.check_curve(curves_dir / "curve_trm_att_seed1.npz", steps=6, weight_decay=0.0)
    assert not report["ok"]
    assert any("training maths differs" in f for f in report["failures"]), report["failures"]


def test_warmup_off_fails_the_replay_naming_the_learning_rate(curves_dir):
    report = replay.check_curve(curves_dir / "curve_trm_att_seed1.npz", steps=2, x64=True, floor=False,
                                lr_warmup_steps=0)
    assert not report["ok"] and report["first_divergence_step"] == 2
    assert any("learning rate differs" in f and "warmup" in f for f in report["failures"]), report["failures"]


def test_curve_replay_first_10_steps_within_the_float32_floor(curves_dir, tmp_path):
    """The shipped curve's first 10 steps through the CLI: within the float32 floor, halting and exact
    accuracy equal at every step, the learning rates equal, and the plot written."""
    res = subprocess.run([sys.executable, "-m", "launch.parity", "--steps=10", f"--out={tmp_path}",
                          str(curves_dir / "curve_trm_att_seed1.npz")], capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr
    report = json.loads(res.stdout.strip().splitlines()[-1])
    assert report["ok"], report["failures"]
    assert report["steps"] == 10 and len(report["loss_ours"]) == 10 and report["first_divergence_step"] is None
    assert report["metrics_agree_fraction"] == {"count": 1.0, "exact_accuracy": 1.0, "steps": 1.0}
    assert report["lr_max_rel_error"] < 1e-6 and report["rounding_regime_until"] == 10
    rel = np.asarray(report["rel_loss"])
    assert np.all(rel <= RATIO * np.maximum(MIN_FLOOR, np.maximum.accumulate(report["rel_loss_float64"])))
    assert os.path.getsize(report["png"]) > 10_000 and report["png"].startswith(str(tmp_path))


def test_curve_file_errors_name_the_file(tmp_path, curves_dir):
    data = dict(np.load(curves_dir / "curve_trm_att_seed1.npz"))
    del data["step7/labels"]
    path = tmp_path / "broken.npz"
    np.savez(path, **data)
    with pytest.raises(ValueError, match="broken.npz.*step7/labels"):
        replay.load_curve(path)
    cfg = json.loads(str(data["config"]))
    cfg["model"]["halt_exploration_prob"] = 0.1
    data["config"] = np.asarray(json.dumps(cfg))
    data["step7/labels"] = data["step6/labels"]
    np.savez(path, **data)
    with pytest.raises(ValueError, match="halt_exploration_prob"):
        replay.train_config(replay.load_curve(path))
