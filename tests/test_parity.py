"""Parity with the official PyTorch code on the golden-value fixtures (tolerances of their README)."""

import json
import subprocess
import sys

import numpy as np
import pytest

from recur_jax.parity import TOLERANCES, check_file

NAMES = ["trm_att_seed0", "trm_mlp_seed0", "trm_learned_seed0", "hrm_seed0"]


def test_tolerances_are_the_readme_ones():
    assert TOLERANCES == {"forward": 5e-3, "carry": 5e-3, "grad": 2e-2, "loss": 1e-4}


@pytest.mark.parametrize("name", NAMES)
def test_fixture_parity(fixtures_dir, name):
    report = check_file(fixtures_dir / f"{name}.npz")
    assert report["ok"], report["failures"]
    assert all(report["exact"].values())
    expected = {"logits", "q_halt_logits", "q_continue_logits", "z_H", "z_L", "loss", "grad", "grad_puzzle_emb"}
    if name.startswith("hrm"):
        expected |= {"target_q_continue", "q_continue_loss"}
    assert expected <= set(report["worst"])


def test_a_wrong_weight_is_detected(fixtures_dir, tmp_path):
    data = dict(np.load(fixtures_dir / "trm_att_seed0.npz"))
    key = "param/model.inner.L_level.layers.1.mlp.down_proj.weight"
    data[key] = data[key] * 1.1
    path = tmp_path / "perturbed.npz"
    np.savez(path, **data)
    report = check_file(path)
    assert not report["ok"]
    assert report["worst"]["logits"] > TOLERANCES["forward"]


def test_cli_exit_codes(fixtures_dir, tmp_path):
    ok = subprocess.run([sys.executable, "-m", "launch.parity", str(fixtures_dir / "trm_mlp_seed0.npz")],
                        capture_output=True, text=True, timeout=300)
    assert ok.returncode == 0, ok.stderr
    line = json.loads(ok.stdout.strip().splitlines()[-1])
    assert line["ok"] and line["exact"]["halted"]
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"garbage")
    res = subprocess.run([sys.executable, "-m", "launch.parity", str(bad)], capture_output=True, text=True,
                         timeout=300)
    assert res.returncode == 2
    assert "bad.npz" in res.stdout
