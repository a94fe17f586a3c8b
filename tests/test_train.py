"""End to end: train_and_evaluate on tiny configs, determinism, resume, episode mode, errors, solver."""

import json
import os
import pathlib
import subprocess
import sys

import pytest

from experiments import hrm_sudoku, trm_sudoku
from recur_jax.run import state as train_state
from recur_jax.run import step as train_step
from recur_jax.run.train import train_and_evaluate

REPO = pathlib.Path(__file__).resolve().parents[1]


def tiny(module=trm_sudoku, arg="mlp,cpu", **overrides):
    """A config that trains in seconds: small model, small batch, few steps, small test set."""
    c = module.get_config(arg)
    c.total_steps = 6
    c.checkpoint_every = 3
    c.eval_every = 0
    c.log_every = 2
    c.global_batch_size = 8
    c.eval.max_examples = 16
    c.data.num_train = 64
    c.data.num_test = 16
    c.model.hidden_size = 32
    c.model.num_heads = 2
    c.model.puzzle_emb_ndim = 32
    c.model.halt_max_steps = 3
    c.checkpoint.async_save = False
    for k, v in overrides.items():
        node = c
        *path, last = k.split(".")
        for p in path:
            node = node[p]
        node[last] = v
    return c


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    """One generated data set shared by the runs of this module (data.data_dir)."""
    return str(tmp_path_factory.mktemp("data"))


@pytest.fixture(scope="module")
def trained(tmp_path_factory, data_dir):
    workdir = str(tmp_path_factory.mktemp("run"))
    summary = train_and_evaluate(tiny(**{"data.data_dir": data_dir}), workdir)
    return workdir, summary


def test_workdir_contents(trained):
    workdir, summary = trained
    for name in ("run.json", "metrics.jsonl", "summary.json"):
        assert os.path.isfile(os.path.join(workdir, name)), name
    assert os.listdir(os.path.join(workdir, "tb"))
    with open(os.path.join(workdir, "summary.json")) as f:
        on_disk = json.load(f)
    assert on_disk["step"] == 6 and isinstance(on_disk["wall_s"], float)
    for k in ("exact_accuracy", "accuracy", "q_halt_accuracy", "steps", "exact_accuracy_by_step"):
        assert k in on_disk["eval"]
    assert on_disk["eval"]["count"] == 16 and len(on_disk["eval"]["exact_accuracy_by_step"]) == 3
    assert on_disk["eval"]["steps"] == 3.0  # evaluation runs the whole budget
    assert len(on_disk["fingerprint"]) == 64
    run = json.load(open(os.path.join(workdir, "run.json")))
    assert run["seed"] == 0 and run["config"]["model"]["hidden_size"] == 32 and run["packages"]["jax"]
    steps = sorted(int(s) for s in os.listdir(os.path.join(workdir, "checkpoints")) if s.isdigit())
    assert steps == [3, 6]
    lines = [json.loads(ln) for ln in open(os.path.join(workdir, "metrics.jsonl"))]
    assert [ln["step"] for ln in lines if ln["kind"] == "train"] == [2, 4, 6]
    assert lines[-1]["kind"] == "eval"


def test_same_seed_same_fingerprint_and_metrics(trained, tmp_path, data_dir):
    _, first = trained
    second = train_and_evaluate(tiny(**{"data.data_dir": data_dir}), str(tmp_path / "again"))
    assert second["fingerprint"] == first["fingerprint"]
    assert second["eval"] == first["eval"]
    assert second["train"] == {**first["train"], "examples_per_s": second["train"]["examples_per_s"]}
    other = train_and_evaluate(tiny(seed=1, **{"data.data_dir": data_dir}), str(tmp_path / "seed1"))
    assert other["fingerprint"] != first["fingerprint"]


def test_resume_continues_the_same_run(trained, tmp_path, data_dir):
    _, straight = trained
    workdir = str(tmp_path / "resumed")
    train_and_evaluate(tiny(total_steps=3, **{"data.data_dir": data_dir}), workdir)
    resumed = train_and_evaluate(tiny(**{"data.data_dir": data_dir}), workdir)  # same command, longer run
    assert resumed["step"] == 6
    assert resumed["fingerprint"] == straight["fingerprint"]
    run = json.load(open(os.path.join(workdir, "run.json")))
    assert run["resumed_from_step"] == 3


def test_resume_refuses_a_different_model(trained, tmp_path, data_dir):
    workdir = str(tmp_path / "w")
    train_and_evaluate(tiny(total_steps=3, **{"data.data_dir": data_dir}), workdir)
    with pytest.raises(ValueError, match="different config.model"):
        train_and_evaluate(tiny(**{"data.data_dir": data_dir, "model.hidden_size": 16, "model.puzzle_emb_ndim": 16}),
                           workdir)


def test_resume_with_tuple_valued_data_config(tmp_path):
    """The checkpoint's config record is JSON (lists) while the live config holds tuples
    (data.train_lengths of the algorithmic tasks): resuming must compare them as equal, and still
    refuse a really different value."""
    from experiments import algorithmic_common

    def cfg(total_steps, **data):
        c = algorithmic_common.config("sort")
        c.total_steps, c.checkpoint_every, c.log_every, c.global_batch_size = total_steps, 3, 3, 8
        c.data.num_train, c.data.num_test, c.data.data_dir = 64, 16, str(tmp_path / "data")
        c.eval.max_examples = 16
        c.model.hidden_size, c.model.num_heads, c.model.halt_max_steps = 32, 2, 2
        c.checkpoint.async_save = False
        for k, v in data.items():
            c.data[k] = v
        return c

    workdir = str(tmp_path / "sort")
    train_and_evaluate(cfg(3), workdir)
    assert isinstance(cfg(3).data.train_lengths, tuple)
    resumed = train_and_evaluate(cfg(6), workdir)  # same command, longer run
    assert resumed["step"] == 6
    assert json.load(open(os.path.join(workdir, "run.json")))["resumed_from_step"] == 3
    with pytest.raises(ValueError, match="different config.data"):
        train_and_evaluate(cfg(9, train_lengths=(2, 10)), workdir)


def test_episode_mode_and_hrm(tmp_path, data_dir):
    s = train_and_evaluate(tiny(act_mode="episode", **{"data.data_dir": data_dir}), str(tmp_path / "ep"))
    assert s["step"] == 6  # two episodes of halt_max_steps=3 optimizer steps
    h = train_and_evaluate(tiny(hrm_sudoku, "cpu", **{"data.data_dir": data_dir}), str(tmp_path / "hrm"))
    assert h["step"] == 6 and "q_continue_loss" in h["train"]


def test_mismatched_model_and_data_is_a_named_error(tmp_path, data_dir):
    with pytest.raises(ValueError, match="config.model.vocab_size=12"):
        train_and_evaluate(tiny(**{"data.data_dir": data_dir, "model.vocab_size": 12}), str(tmp_path / "x"))


def _run_main(args, cwd, timeout=600):
    env = dict(os.environ, PYTHONPATH=str(REPO))
    return subprocess.run([sys.executable, "-m", "launch.main", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, env=env)


def test_bad_csv_is_one_line_and_leaves_checkpoints_alone(trained, tmp_path):
    workdir, _ = trained
    ckpt = pathlib.Path(workdir, "checkpoints")
    before = {p: p.stat().st_mtime_ns for p in ckpt.rglob("*")}
    bad = tmp_path / "csv"
    bad.mkdir()
    good_row = ("x,{q},{a},0\n".format(
        q="..3.2.6..9..3.5..1..18.64....81.29..7.......8..67.82....26.95..8..2.3..9..5.1.3..",
        a="483921657967345821251876493548132976729564138136798245372689514814253769695417382"))
    (bad / "train.csv").write_text("source,question,answer,rating\n" + good_row + good_row.replace("x,", "y,", 1)
                                   .replace("..3.2", "4.3.2", 1))
    (bad / "test.csv").write_text("source,question,answer,rating\n" + good_row.replace("0\n", "zero\n"))
    res = _run_main(["--config=experiments/trm_sudoku.py:mlp,cpu", f"--workdir={workdir}",
                     f"--config.data.path={bad}", "--config.data.num_train=1"], cwd=REPO)
    assert res.returncode == 1
    err_lines = [ln for ln in res.stderr.strip().splitlines() if ln.startswith("error:")]
    assert len(err_lines) == 1 and "Traceback" not in res.stderr
    assert ("test.csv:2" in err_lines[0]) or ("train.csv" in err_lines[0])
    assert {p: p.stat().st_mtime_ns for p in ckpt.rglob("*")} == before


def test_misspelt_override_lists_valid_keys(tmp_path):
    res = _run_main(["--config=experiments/trm_sudoku.py:mlp,cpu", f"--workdir={tmp_path}",
                     "--config.model.hiden_size=8"], cwd=REPO, timeout=120)
    assert res.returncode == 2
    errors = [ln for ln in res.stderr.splitlines() if "error:" in ln]
    assert len(errors) == 1 and errors[0].startswith("usage error:") and "hidden_size" in errors[0] and "Traceback" not in res.stderr
    missing = _run_main(["--config=experiments/no_such_file.py", f"--workdir={tmp_path}"], cwd=REPO, timeout=120)
    assert missing.returncode == 2 and "no_such_file.py" in missing.stderr and "Traceback" not in missing.stderr


def test_solver_reports_unsolved_puzzles_honestly(trained):
    workdir, _ = trained
    from recur_jax.inference.solve import solve_puzzles

    puzzle = "..3.2.6..9..3.5..1..18.64....81.29..7.......8..67.82....26.95..8..2.3..9..5.1.3.."
    (result,) = solve_puzzles(workdir, puzzle)
    text = result.render()
    from recur_jax.tasks import sudoku

    really_valid = bool(sudoku.is_valid_solution(result.answer)) and bool(
        sudoku.is_consistent(result.question, result.answer))
    assert result.valid == really_valid
    assert ("NOT solved" in text) != really_valid
    assert result.steps == 3 and 0.0 <= result.confidence <= 1.0


def test_training_never_imports_tensorflow(trained):
    assert "tensorflow" not in sys.modules


def test_microbatching_gives_the_same_step():
    import jax
    import numpy as np

    from recur_jax.run import train
    from recur_jax.core.models import ModelConfig

    results = []
    for k in (1, 4):
        c = tiny(microbatches=k, **{"model.halt_exploration_prob": 0.0})
        mc = ModelConfig.from_dict(c.model.to_dict())
        rng = np.random.default_rng(0)
        batch = {"inputs": rng.integers(1, 11, (8, 81)).astype(np.int32),
                 "labels": rng.integers(2, 11, (8, 81)).astype(np.int32),
                 "puzzle_identifiers": np.zeros((8,), np.int32)}
        graphdef, state = train_state.init_train_state(c, mc, batch)
        step = jax.jit(train_step.make_train_step(graphdef, c, mc))
        for _ in range(2):
            state, metrics = step(state, batch)
        results.append((state, metrics))
    (s1, m1), (s4, m4) = results
    for a, b in zip(jax.tree_util.tree_leaves((s1.params, s1.puzzle_table, s1.carry)),
                    jax.tree_util.tree_leaves((s4.params, s4.puzzle_table, s4.carry))):
        np.testing.assert_allclose(np.asarray(a, np.float32), np.asarray(b, np.float32), rtol=2e-4, atol=2e-5)
    for key in m1:
        np.testing.assert_allclose(float(m1[key]), float(m4[key]), rtol=1e-4, err_msg=key)
    with pytest.raises(ValueError, match="microbatches"):
        train_step.make_train_step(graphdef, tiny(microbatches=3), mc)


def test_the_training_step_warms_up_the_reset_rows_by_its_own_draw():
    """`model.warmup_max_steps` reaches the jitted step: on the first step (every row reset) the carry differs
    from a run without warm-up exactly when the step's draw r is > 0 (`act.warmup_draw` of the halting key)."""
    import jax
    import numpy as np

    from recur_jax.core import act
    from recur_jax.core.models import ModelConfig
    from recur_jax.run.state import PURPOSE_HALT

    rng = np.random.default_rng(0)
    batch = {"inputs": rng.integers(1, 11, (8, 81)).astype(np.int32),
             "labels": rng.integers(2, 11, (8, 81)).astype(np.int32),
             "puzzle_identifiers": np.zeros((8,), np.int32)}
    carries = {}
    seeds = (0, 1)  # their draws of U{0..1} at step 0: 0 and 1
    for R in (0, 1):
        for seed in seeds:
            c = tiny(seed=seed, **{"model.halt_exploration_prob": 0.0, "model.warmup_max_steps": R})
            mc = ModelConfig.from_dict(c.model.to_dict())
            graphdef, state = train_state.init_train_state(c, mc, batch)
            state, metrics = jax.jit(train_step.make_train_step(graphdef, c, mc))(state, batch)
            assert np.isfinite(float(metrics["loss"]))
            key = jax.random.fold_in(jax.random.fold_in(jax.random.key(seed), 0), PURPOSE_HALT)
            carries[R, seed] = (np.asarray(state.carry.z_H), int(act.warmup_draw(key, R)) if R else 0)
    draws = [carries[1, seed][1] for seed in seeds]
    assert sorted(draws) == [0, 1], draws  # both branches are checked
    for seed in seeds:
        same = np.array_equal(carries[0, seed][0], carries[1, seed][0])
        assert same == (carries[1, seed][1] == 0), (seed, draws)


def test_a_truncated_newest_checkpoint_falls_back_and_the_run_completes(trained, tmp_path, data_dir):
    import shutil

    workdir, straight = trained
    copy = tmp_path / "corrupt"
    shutil.copytree(workdir, copy)
    for f in (copy / "checkpoints" / "6").rglob("*"):
        if f.is_file() and f.stat().st_size > 16 and "ocdbt" in str(f):
            with open(f, "r+b") as fh:
                fh.truncate(10)
    with open(copy / "metrics.jsonl", "a") as fh:
        fh.write('{"kind": "train", "step": 5, "cou')  # a line torn by a kill
    summary = train_and_evaluate(tiny(**{"data.data_dir": data_dir}), str(copy))
    assert summary["step"] == 6 and summary["fingerprint"] == straight["fingerprint"]
    assert (copy / "checkpoints" / "unreadable" / "6").is_dir()  # kept, not deleted
    assert all(json.loads(ln) for ln in open(copy / "metrics.jsonl"))
