"""Official state_dict <-> recur_jax parameters: names, transposes, round trip, errors."""

import json

import jax
import numpy as np
import pytest
from flax import nnx

from recur_jax.core import convert
from recur_jax.core.models import ModelConfig, build_model


def _fixture(fixtures_dir, name):
    data = np.load(fixtures_dir / f"{name}.npz")
    cfg = ModelConfig.from_reference(json.loads(str(data["config"])))
    sd = {k[len("param/"):]: data[k] for k in data.files if k.startswith("param/")}
    return cfg, sd


@pytest.mark.parametrize("name", ["trm_att_seed0", "trm_mlp_seed0", "trm_learned_seed0", "hrm_seed0"])
def test_load_transposes_and_round_trips(fixtures_dir, name):
    cfg, sd = _fixture(fixtures_dir, name)
    model = build_model(cfg, nnx.Rngs(1))
    # The official checkpoints carry torch.compile's prefix; both spellings load.
    table = convert.load_state_dict(model, {"_orig_mod.model.inner." + k[len("model.inner."):]: v for k, v in sd.items()})
    np.testing.assert_array_equal(table, sd["model.inner.puzzle_emb.weights"])
    np.testing.assert_array_equal(np.asarray(model.lm_head.kernel[...]), sd["model.inner.lm_head.weight"].T)
    np.testing.assert_array_equal(np.asarray(model.H_init[...]), sd["model.inner.H_init"])
    back = convert.to_state_dict(model, table, prefix="model.inner.")
    assert set(back) == set(sd)
    for k in sd:
        np.testing.assert_array_equal(back[k], sd[k], err_msg=k)


def test_qkv_head_order_is_kept(fixtures_dir):
    cfg, sd = _fixture(fixtures_dir, "trm_att_seed0")
    model = build_model(cfg, nnx.Rngs(0))
    convert.load_state_dict(model, sd)
    w = sd["model.inner.L_level.layers.0.self_attn.qkv_proj.weight"]  # [3*H*d, D], rows [q | k | v]
    x = np.random.default_rng(0).standard_normal((1, cfg.hidden_size)).astype(np.float32)
    ours = np.asarray(model.L_level.layers[0].self_attn.qkv_proj(jax.numpy.asarray(x)))
    np.testing.assert_allclose(ours, x @ w.T, rtol=1e-5, atol=1e-5)


def test_errors_name_the_problem(fixtures_dir):
    cfg, sd = _fixture(fixtures_dir, "trm_att_seed0")
    model = build_model(cfg, nnx.Rngs(0))
    before = jax.tree_util.tree_map(np.asarray, nnx.to_pure_dict(nnx.state(model, nnx.Param)))

    missing = dict(sd)
    del missing["model.inner.lm_head.weight"]
    with pytest.raises(ValueError, match=r"ckpt.pt.*missing keys \['lm_head.weight'\]"):
        convert.load_state_dict(model, missing, source="ckpt.pt")
    extra = dict(sd, **{"model.inner.bogus.weight": np.zeros((2, 2), np.float32)})
    with pytest.raises(ValueError, match="unexpected keys.*bogus.weight"):
        convert.load_state_dict(model, extra)
    bad = dict(sd, **{"model.inner.lm_head.weight": np.zeros((13, cfg.hidden_size), np.float32)})
    with pytest.raises(ValueError, match=r"lm_head.weight.*\(64, 13\).*\(64, 12\)"):
        convert.load_state_dict(model, bad)
    hrm_cfg, hrm_sd = _fixture(fixtures_dir, "hrm_seed0")
    with pytest.raises(ValueError, match="H_level"):
        convert.load_state_dict(model, hrm_sd)
    after = jax.tree_util.tree_map(np.asarray, nnx.to_pure_dict(nnx.state(model, nnx.Param)))
    for a, b in zip(jax.tree_util.tree_leaves(before), jax.tree_util.tree_leaves(after)):
        np.testing.assert_array_equal(a, b)  # a failed load changes nothing


def test_torch_checkpoint_loads_with_weights_only(fixtures_dir, tmp_path):
    torch = pytest.importorskip("torch")
    cfg, sd = _fixture(fixtures_dir, "hrm_seed0")
    path = tmp_path / "step_100"
    torch.save({"_orig_mod." + k: torch.from_numpy(v) for k, v in sd.items()}, path)
    loaded = convert.load_torch_checkpoint(path)
    model = build_model(cfg, nnx.Rngs(0))
    table = convert.load_state_dict(model, loaded, source=str(path))
    np.testing.assert_array_equal(table, sd["model.inner.puzzle_emb.weights"])
    (tmp_path / "evil").write_bytes(b"not a checkpoint")
    with pytest.raises(Exception):
        convert.load_torch_checkpoint(tmp_path / "evil")
