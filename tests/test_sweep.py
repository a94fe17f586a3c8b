"""Sweeps: helpers, expansion and validation, deterministic names, resume after a kill, the report."""

import json
import math
import os
import subprocess
import sys
import textwrap

import pytest

from recur_jax.study import results, sweep

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_values_product_zip():
    h = sweep.values("model.H_cycles", [1, 2])
    s = sweep.values("seed", [0, 1, 2])
    grid = sweep.product(h, s)
    assert len(grid) == 6
    assert grid[0] == {"model.H_cycles": 1, "seed": 0} and grid[-1] == {"model.H_cycles": 2, "seed": 2}
    z = sweep.zip_sweeps(h, sweep.values("model.L_cycles", [6, 3]))
    assert z == [{"model.H_cycles": 1, "model.L_cycles": 6}, {"model.H_cycles": 2, "model.L_cycles": 3}]
    with pytest.raises(ValueError, match="equal length"):
        sweep.zip_sweeps(h, s)
    with pytest.raises(ValueError, match="set twice"):
        sweep.product(h, h)
    with pytest.raises(ValueError, match="dotted config path"):
        sweep.values("model..x", [1])
    with pytest.raises(ValueError, match="no values"):
        sweep.values("seed", [])


def test_run_name_deterministic_and_unique():
    a = sweep.run_name({"model.H_cycles": 2, "model.L_cycles": 3, "seed": 0})
    assert a == "H_cycles=2,L_cycles=3,seed=0"
    assert sweep.run_name({"model.H_cycles": 2, "model.L_cycles": 3, "seed": 0}) == a
    # colliding leaves keep the full key
    assert sweep.run_name({"model.lr": 1, "optim.lr": 2}) == "model.lr=1,optim.lr=2"
    assert sweep.run_name({"data.path": "/a b/c"}) == "path=_a_b_c"
    long1 = sweep.run_name({f"k{i}": "x" * 20 for i in range(10)})
    long2 = sweep.run_name({f"k{i}": "x" * 20 for i in range(9)} | {"k9": "y" * 20})
    assert len(long1) <= 120 and long1 != long2
    assert sweep.run_name({}) == "base"


EXPERIMENT = textwrap.dedent(f'''
    import sys

    sys.path.insert(0, {os.path.dirname(os.path.abspath(__file__))!r})
    from test_train import tiny  # the tests' tiny config
    from recur_jax.study import sweep

    def get_config(arg=None):
        return tiny(total_steps=4, checkpoint_every=2, **{{"model.halt_max_steps": 2, "model.H_cycles": 1,
                                                          "model.L_cycles": 1}})

    def get_sweep(arg=None):
        if arg == "bad":
            return [{{"model.H_cyclez": 1}}]
        if arg == "badtype":
            return [{{"model.H_cycles": "two"}}]
        return sweep.product(sweep.values("model.L_cycles", [1, 2]), sweep.values("seed", [0, 1]))
''')


@pytest.fixture()
def experiment(tmp_path):
    path = tmp_path / "exp.py"
    path.write_text(EXPERIMENT)
    return str(path)


def test_expand_validates_before_running(experiment, tmp_path):
    runs = sweep.expand(experiment, str(tmp_path / "root"))
    assert [r.name for r in runs] == ["L_cycles=1,seed=0", "L_cycles=1,seed=1", "L_cycles=2,seed=0",
                                      "L_cycles=2,seed=1"]
    assert runs[2].workdir == str(tmp_path / "root" / "L_cycles=2,seed=0")
    assert "--config.model.L_cycles=2" in runs[2].argv and "--config.seed=0" in runs[2].argv
    assert sweep.expand(experiment, str(tmp_path / "root")) == runs  # deterministic
    common = sweep.expand(experiment, str(tmp_path / "root"), overrides={"total_steps": 8})
    assert "--config.total_steps=8" in common[0].argv
    with pytest.raises(ValueError, match=r"run 0 \(H_cyclez=1\): unknown config key 'model.H_cyclez'"):
        sweep.expand(experiment + ":bad", str(tmp_path / "root"))
    with pytest.raises(ValueError, match="'model.H_cycles' cannot take 'two'"):
        sweep.expand(experiment + ":badtype", str(tmp_path / "root"))
    with pytest.raises(ValueError, match="same name"):
        sweep.expand(experiment, str(tmp_path), sweep=[{"seed": 1}, {"seed": 1}])
    named = sweep.expand(experiment, str(tmp_path / "root"), sweep=[{"_name": "small", "seed": 1}, {"seed": 2}])
    assert [r.name for r in named] == ["small", "seed=2"] and named[0].overrides == {"seed": 1}
    assert not any("_name" in a for a in named[0].argv)
    for bad in ("../x", "", "a b"):
        with pytest.raises(ValueError, match="_name"):
            sweep.expand(experiment, str(tmp_path), sweep=[{"_name": bad, "seed": 1}])
    with pytest.raises(FileNotFoundError):
        sweep.expand(str(tmp_path / "missing.py"), str(tmp_path))


def _fake_runs(tmp_path, fail_index):
    """Runs whose command writes summary.json (or, for `fail_index`, dies like a killed process)."""
    runs = []
    for i in range(4):
        wd = str(tmp_path / f"r{i}")
        code = (f"import json,os,sys; open(os.path.join({wd!r},'count'),'a').write('x');"
                + ("sys.exit(-9)" if i == fail_index else
                   f"json.dump({{'eval': {{'exact_accuracy': {i}}}}}, open(os.path.join({wd!r},'summary.json'),'w'))"))
        runs.append(sweep.Run(i, f"r{i}", wd, {"seed": i}, (sys.executable, "-c", code)))
    return runs


def test_killed_sweep_resumes_without_redoing_finished_runs(tmp_path):
    logs = []
    codes = sweep.run_local(_fake_runs(tmp_path, fail_index=2), parallel=2, log=logs.append)
    assert codes["r2"] != 0 and all(codes[f"r{i}"] == 0 for i in (0, 1, 3))
    codes = sweep.run_local(_fake_runs(tmp_path, fail_index=None), parallel=2, log=logs.append)
    assert all(c == 0 for c in codes.values())
    counts = [len(open(tmp_path / f"r{i}" / "count").read()) for i in range(4)]
    assert counts == [1, 1, 2, 1]  # only the failed run ran again
    assert sum("skip" in line for line in logs) == 3
    assert "done r3: exact_accuracy 3.0000" in logs  # one result line per finished run
    assert "$ " in open(tmp_path / "r2" / "sweep.log").read()


def test_slurm_and_list_outputs(experiment, tmp_path):
    runs = sweep.expand(experiment, str(tmp_path / "root"))
    assert "#SBATCH --array=0-3\n" in sweep.slurm_array_script(runs, str(tmp_path / "root"))  # no limit by default
    script = sweep.slurm_array_script(runs, str(tmp_path / "root"), parallel=2, sbatch=["--gres=gpu:1"])
    assert "#SBATCH --array=0-3%2" in script and "#SBATCH --gres=gpu:1" in script
    assert script.count("launch.main") == 4 and "SLURM_ARRAY_TASK_ID" in script
    assert 'summary.json" ]; then' in script
    bash = subprocess.run(["bash", "-n"], input=script, text=True, capture_output=True)
    assert bash.returncode == 0, bash.stderr
    os.makedirs(runs[1].workdir)
    open(os.path.join(runs[1].workdir, "summary.json"), "w").write(json.dumps({"step": 4, "eval": {"exact_accuracy": 0.5}}))
    listed = sweep.command_list(runs).splitlines()
    assert len(listed) == 3 and not any("seed=1 " in line and "L_cycles=1," in line for line in listed)


def _write_run(root, name, config, summary):
    wd = os.path.join(root, name)
    os.makedirs(wd)
    json.dump({"config": config}, open(os.path.join(wd, "run.json"), "w"))
    if summary is not None:
        json.dump(summary, open(os.path.join(wd, "summary.json"), "w"))


def test_report_mean_std_over_seeds(capsys, tmp_path):
    root = str(tmp_path)
    for L, seed, acc in [(1, 0, 0.5), (1, 1, 0.7), (2, 0, 0.8), (2, 1, 0.9), (2, 2, 1.0)]:
        _write_run(root, f"L{L}s{seed}", {"seed": seed, "model": {"L_cycles": L, "hidden_size": 32}},
                   {"eval": {"exact_accuracy": acc, "exact_accuracy_by_step": [acc]}, "wall_s": 10.0 * L,
                    "num_params": 100, "step": 4})
    _write_run(root, "L3s0", {"seed": 0, "model": {"L_cycles": 3, "hidden_size": 32}}, None)
    keys, rows = results.table(root)
    assert keys == ["model.L_cycles"]
    by_L = {r["model.L_cycles"]: r for r in rows}
    assert by_L[1]["seeds"] == 2 and by_L[1]["eval.exact_accuracy.mean"] == pytest.approx(0.6, abs=1e-12)
    assert by_L[1]["eval.exact_accuracy.std"] == pytest.approx(math.sqrt(0.02), abs=1e-12)
    assert by_L[2]["eval.exact_accuracy.mean"] == pytest.approx(0.9, abs=1e-12)
    assert by_L[2]["eval.exact_accuracy.std"] == pytest.approx(0.1, abs=1e-12)
    assert by_L[3]["seeds"] == 0 and by_L[3]["unfinished"] == 1
    md = results.to_markdown(keys, rows)
    assert "| 1 | 2 | 0.6000 ± 0.1414 |" in md and "0 (+1 unfinished)" in md
    csv_text = results.to_csv(keys, rows)
    assert csv_text.splitlines()[0].startswith("model.L_cycles,seeds,unfinished,")
    with open(os.path.join(root, "L1s0", "summary.json"), "w") as f:
        f.write("{truncated")
    keys, rows = results.table(root)  # a damaged summary: one warning naming it, the run counts as unfinished
    assert "L1s0/summary.json:1:2: invalid JSON" in capsys.readouterr().out
    assert sum(r["unfinished"] for r in rows) == 2


def test_sweep_end_to_end_real_runs(experiment, tmp_path):
    """Two tiny real training runs through launch.sweep, then launch.report (mean and std over seeds)."""
    root = str(tmp_path / "root")
    env = {**os.environ, "PYTHONPATH": REPO, "XLA_FLAGS": "--xla_force_host_platform_device_count=1"}
    data = str(tmp_path / "data")
    # the experiment path is relative to the directory launch.sweep runs in; so are its runs' commands
    cmd = [sys.executable, "-m", "launch.sweep", "--config=exp.py", f"--root={root}",
           f"--set=data.data_dir={data}"]
    here = os.path.dirname(experiment)
    out = subprocess.run(cmd + ["--dry_run"], cwd=here, env=env, text=True, capture_output=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.count("todo") == 4
    only = subprocess.run(cmd + ["--dry_run", "--only=L_cycles=2,seed=1", "--only=L_cycles=1,seed=0"], cwd=here, env=env,
                          text=True, capture_output=True)
    assert only.returncode == 0 and only.stdout.count("todo") == 2, only.stderr
    bad = subprocess.run(cmd + ["--dry_run", "--only=L_cycles=9"], cwd=here, env=env, text=True, capture_output=True)
    assert bad.returncode == 2 and "no run named ['L_cycles=9']" in bad.stderr
    smoke = subprocess.run(cmd + ["--smoke", "--mode=list", "--set=total_steps=500"], cwd=here, env=env, text=True,
                           capture_output=True)
    lines = smoke.stdout.strip().splitlines()
    assert smoke.returncode == 0 and len(lines) == 4, smoke.stderr
    assert all(f"--workdir={root}/smoke/" in ln and "--config.total_steps=8 " in ln and "total_steps=500" not in ln
               and "--config.eval.max_examples=32" in ln for ln in lines), lines  # smoke wins over --set
    assert not os.path.exists(os.path.join(root, "sweep.json"))  # the real sweep is untouched
    # the L_cycles=2 runs look finished (a sweep resumed after they ended): only the two L_cycles=1 seeds run
    for name in ("L_cycles=2,seed=0", "L_cycles=2,seed=1"):
        _write_run(root, name, {"seed": int(name[-1]), "model": {"L_cycles": 2}},
                   {"eval": {"exact_accuracy": 0.25}, "wall_s": 1.0, "step": 4})
    out = subprocess.run(cmd + ["--parallel=1"], cwd=here, env=env, text=True, capture_output=True, timeout=600)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "4/4 runs finished" in out.stdout and out.stdout.count("skip ") == 2
    s0 = json.load(open(os.path.join(root, "L_cycles=1,seed=0", "summary.json")))
    s1 = json.load(open(os.path.join(root, "L_cycles=1,seed=1", "summary.json")))
    assert s0["step"] == 4 and s0["fingerprint"] != s1["fingerprint"]  # seeds really differ
    rep = subprocess.run([sys.executable, "-m", "launch.report", f"--root={root}"], cwd=REPO, env=env,
                         text=True, capture_output=True)
    assert rep.returncode == 0, rep.stderr
    keys, rows = results.table(root)
    row = next(r for r in rows if r["model.L_cycles"] == 1)
    accs = [s0["eval"]["exact_accuracy"], s1["eval"]["exact_accuracy"]]
    assert row["seeds"] == 2 and row["eval.exact_accuracy.mean"] == pytest.approx(sum(accs) / 2, abs=1e-12)
    assert os.path.exists(os.path.join(root, "report.csv")) and "±" in open(os.path.join(root, "report.md")).read()
    for png in ("refinement.png", "training.png", "test_time_compute.png", "residuals.png", "halting.png"):
        assert os.path.getsize(os.path.join(root, png)) > 1000, png
    page = open(os.path.join(root, "report.html")).read()
    assert 'src="residuals.png"' in page and "not analysed" in page  # the two runs without checkpoints
    an = json.load(open(os.path.join(root, "L_cycles=1,seed=0", "analysis.json")))
    assert an["halt_max_steps"] == 4 and len(an["residual_H"]) == 4 and sum(an["halt_step_histogram"]) == 16
    # the analysis replays evaluation: its accuracy at the training budget is the run's own
    assert an["exact_accuracy_by_step"][1] == pytest.approx(s0["eval"]["exact_accuracy"], abs=1e-9)


def test_compute_depth_study_rows_expand_and_match_flops(tmp_path):
    from experiments.ablations import compute_vs_params as cvp
    from recur_jax.core import flops
    from recur_jax.core.models.config import ModelConfig

    spec = os.path.join(REPO, "experiments", "ablations", "compute_vs_params.py")
    for arg, n_runs, seeds in (("sort,cpu", 20, {0, 1}), ("sudoku,cpu", 6, {0})):
        runs = sweep.expand(f"{spec}:{arg}", str(tmp_path / arg))  # every override checked against the config
        assert len(runs) == n_runs and {r.overrides["seed"] for r in runs} == seeds
    c = cvp.get_config("sort,cpu")
    n = cvp.training_flops_matched_layers(c, 2, 2)
    base, B = dict(c.model.to_dict()), c.global_batch_size

    def total(**kw):
        return flops.train_step_flops(ModelConfig.from_dict(base | kw), B)["total"]

    target = total(arch="trm", H_cycles=2, L_cycles=2)
    assert total(arch="transformer", H_layers=n, halt_max_steps=1) >= target
    assert total(arch="transformer", H_layers=n - 1, halt_max_steps=1) < target
    rows = cvp.get_sweep("sort,cpu")
    assert {"model.arch": "transformer", "model.H_layers": n, "model.halt_max_steps": 1, "seed": 0}.items() <= \
        next(r for r in rows if r.get("model.H_layers") == n).items()
    equal_examples = [r for r in rows if "global_batch_size" in r]
    assert {r["global_batch_size"] for r in equal_examples} == {c.global_batch_size // c.model.halt_max_steps}
    with pytest.raises(ValueError, match="H_cycles=0"):
        cvp.training_flops_matched_layers(c, 0, 2)
    with pytest.raises(ValueError, match="choose one task"):
        cvp.get_sweep("sort,sudoku")
