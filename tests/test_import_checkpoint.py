"""launch.import_checkpoint: an official-format checkpoint (written by our exporter under the official
names) and an official-format all_config.yaml become a workdir that solves and evaluates exactly as the
run the weights came from; bad files are one error naming the file and field."""

import dataclasses
import os
import subprocess
import sys

import jax
import numpy as np
import pytest
import yaml
from flax import nnx

from recur_jax.core import convert
from recur_jax.run.checkpoint import load_for_inference
from recur_jax.run.import_reference import ReferenceImportError, import_checkpoint
from test_train import tiny

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PUZZLE = "..3.2.6..9..3.5..1..18.64....81.29..7.......8..67.82....26.95..8..2.3..9..5.1.3.."
ARCH_FIELDS = ("H_cycles", "L_cycles", "H_layers", "L_layers", "hidden_size", "num_heads", "expansion",
               "puzzle_emb_ndim", "puzzle_emb_len", "pos_encodings", "halt_max_steps", "halt_exploration_prob",
               "forward_dtype", "mlp_t", "no_ACT_continue", "rope_theta", "rms_norm_eps")


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    """A trained tiny TRM-MLP run, exported as an official checkpoint + all_config.yaml."""
    from recur_jax.run.train import train_and_evaluate

    root = tmp_path_factory.mktemp("official")
    workdir = str(root / "run")
    train_and_evaluate(tiny(**{"data.data_dir": str(root / "data")}), workdir)
    run = load_for_inference(workdir)
    model = nnx.merge(run.graphdef, run.params, run.buffers)
    n_ids = run.model_cfg.num_puzzle_identifiers
    sd = convert.to_state_dict(model, np.asarray(run.puzzle_table)[:n_ids])  # "_orig_mod.model.inner." names
    ckpt = str(root / "step_6.npz")
    np.savez(ckpt, **sd)
    m = dataclasses.asdict(run.model_cfg)
    ref = {"arch": {"name": "recursive_reasoning.trm@TinyRecursiveReasoningModel_ACTV1",
                    "loss": {"name": "losses@ACTLossHead", "loss_type": m["loss_type"]},
                    **{k: m[k] for k in ARCH_FIELDS}},
           "data_paths": ["data/sudoku-extreme-1k-aug-1000"], "global_batch_size": 8, "epochs": 50000,
           "eval_interval": 5000, "lr": 1e-4, "lr_min_ratio": 1.0, "lr_warmup_steps": 2000, "weight_decay": 1.0,
           "beta1": 0.9, "beta2": 0.95, "puzzle_emb_lr": 1e-4, "puzzle_emb_weight_decay": 1.0, "ema": True,
           "ema_rate": 0.999, "seed": 0, "project_name": "Sudoku-extreme-1k-aug-1000-ACT-torch",
           "run_name": "pretrain_mlp_t_sudoku", "checkpoint_path": "checkpoints/x"}
    config = str(root / "all_config.yaml")
    with open(config, "w") as f:
        yaml.dump(ref, f)
    return workdir, run, ckpt, config, ref, sd


def _same_params(a, b):
    for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b), strict=True):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def test_import_round_trip_solves_and_evaluates_as_the_source(source, tmp_path):
    from recur_jax.inference.solve import solve_puzzles
    from recur_jax.study.evaluation import evaluate_run

    workdir, run, ckpt, config, _, _ = source
    out = str(tmp_path / "imported")
    record = import_checkpoint(ckpt, config, out)
    assert record["task"] == "sudoku" and record["step"] == 6 and len(record["checkpoint_sha256"]) == 64
    imported = load_for_inference(out)
    assert imported.step == 6 and imported.weights == "ema"
    assert imported.model_cfg == run.model_cfg  # every model field recovered from the yaml and the shapes
    _same_params(imported.params, run.params)
    _same_params(imported.buffers, run.buffers)
    n = run.model_cfg.num_puzzle_identifiers
    np.testing.assert_array_equal(np.asarray(imported.puzzle_table)[:n], np.asarray(run.puzzle_table)[:n])
    (a,), (b,) = solve_puzzles(out, PUZZLE), solve_puzzles(workdir, PUZZLE)
    assert (a.answer == b.answer).all() and a.confidence == b.confidence and a.steps == b.steps == 3

    config_eval = imported.config
    config_eval.data.num_test, config_eval.eval.max_examples = 16, 16
    summary = evaluate_run(out, config_eval, name="check")
    assert summary["step"] == 6 and summary["eval"]["count"] == 16
    with pytest.raises(FileExistsError, match="already holds a run"):
        import_checkpoint(ckpt, config, out)  # never over a run


def test_import_of_a_torch_file_with_the_compile_prefix(source, tmp_path):
    torch = pytest.importorskip("torch")
    _, run, _, config, _, sd = source
    path = str(tmp_path / "step_6")
    torch.save({k: torch.from_numpy(np.array(v)) for k, v in sd.items()}, path)
    import_checkpoint(path, config, str(tmp_path / "imported"))
    _same_params(load_for_inference(str(tmp_path / "imported")).params, run.params)


def test_the_command_line_imports_and_prints_what_to_run_next(source, tmp_path):
    _, _, ckpt, config, _, _ = source
    out = str(tmp_path / "cli")
    res = subprocess.run([sys.executable, "-m", "launch.import_checkpoint", f"--checkpoint={ckpt}",
                          f"--config={config}", f"--workdir={out}"], cwd=REPO, capture_output=True, text=True,
                         timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    assert "imported recursive_reasoning.trm@TinyRecursiveReasoningModel_ACTV1" in res.stdout
    assert f"python -m launch.solve --workdir={out}" in res.stdout
    assert os.path.exists(os.path.join(out, "run.json"))
    bad = subprocess.run([sys.executable, "-m", "launch.import_checkpoint", f"--checkpoint={ckpt}",
                          f"--config={ckpt}", f"--workdir={tmp_path / 'bad'}"], cwd=REPO, capture_output=True,
                         text=True, timeout=300)
    assert bad.returncode == 1 and bad.stderr.strip().startswith("error:") and len(bad.stderr.strip().splitlines()) == 1
    assert not os.path.exists(tmp_path / "bad")


def _write(tmp_path, ref):
    path = str(tmp_path / "all_config.yaml")
    with open(path, "w") as f:
        yaml.dump(ref, f)
    return path


def test_bad_configs_and_weights_are_refused_with_the_field_named(source, tmp_path):
    _, _, ckpt, _, ref, _ = source
    with pytest.raises(ReferenceImportError, match=r"all_config.yaml: expected a mapping with an 'arch' mapping"):
        import_checkpoint(ckpt, _write(tmp_path, {"lr": 1.0}), str(tmp_path / "a"))
    other = {**ref, "arch": {**ref["arch"], "name": "recursive_reasoning.trm_singlez@TinyRecursiveReasoningModel_ACTV1"}}
    with pytest.raises(ReferenceImportError, match=r"arch.name='recursive_reasoning.trm_singlez@"):
        import_checkpoint(ckpt, _write(tmp_path, other), str(tmp_path / "b"))
    nowhere = {**ref, "data_paths": ["data/my-puzzles"]}
    with pytest.raises(ReferenceImportError, match=r"data_paths=\['data/my-puzzles'\] names no task"):
        import_checkpoint(ckpt, _write(tmp_path, nowhere), str(tmp_path / "c"))
    wider = {**ref, "arch": {**ref["arch"], "hidden_size": 64, "puzzle_emb_ndim": 64}}
    with pytest.raises(ValueError, match=r"step_6.npz: key '.*' has shape .* the model expects"):
        import_checkpoint(ckpt, _write(tmp_path, wider), str(tmp_path / "d"))
    broken = tmp_path / "broken.yaml"
    broken.write_text("arch: {name: [unclosed\n")
    with pytest.raises(ReferenceImportError, match=r"broken.yaml:\d+: not YAML"):
        import_checkpoint(ckpt, str(broken), str(tmp_path / "e"))
    for name in "abcde":
        assert not os.path.exists(tmp_path / name)  # nothing written for a refused import
