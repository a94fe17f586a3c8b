"""Meshes and shardings: same losses on every (data, fsdp) layout, parameter specs, mesh/batch errors,
the row-sharded puzzle table and its sparse SignSGD update, and resharding on restore."""

import time

import jax
import numpy as np
import pytest
from jax.sharding import NamedSharding, PartitionSpec as P

from experiments import trm_sudoku
from recur_jax.core.models import ModelConfig
from recur_jax.run import config as run_config
from recur_jax.run import sharding, train
from recur_jax.run import state as train_state
from recur_jax.run import step as train_step
from recur_jax.run.checkpoint import Checkpointer, abstract_like

NUM_IDS = 2048  # > sharding.puzzle_rows_multiple (1024): the table is sharded by rows
SEQ = 16


def small_config(data=-1, fsdp=1, model=1, **over):
    c = trm_sudoku.get_config("att,cpu")
    c.global_batch_size = 16
    c.mesh.data, c.mesh.fsdp, c.mesh.model = data, fsdp, model
    m = c.model
    m.seq_len, m.vocab_size, m.num_puzzle_identifiers = SEQ, 11, NUM_IDS
    m.hidden_size, m.num_heads, m.expansion = 32, 4, 2
    m.puzzle_emb_ndim, m.puzzle_emb_len = 32, 1
    m.H_cycles, m.L_cycles, m.L_layers, m.halt_max_steps = 2, 2, 1, 4
    m.halt_exploration_prob = 0.5  # per-example draws must not depend on the layout
    c.optim.lr_warmup_steps = 5
    for k, v in over.items():
        c[k] = v
    return c


def batches(n, g=16, seed=0):
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        x = rng.integers(1, 11, (g, SEQ)).astype(np.int32)
        out.append({"inputs": x, "labels": np.where(x == 1, rng.integers(2, 11, x.shape), x).astype(np.int32),
                    "puzzle_identifiers": rng.integers(0, NUM_IDS, (g,)).astype(np.int32)})
    return out


def run_layout(config, devices, data):
    """Trains len(data) steps on a mesh over `devices`; returns (losses, final state, shardings)."""
    mc = ModelConfig.from_dict(config.model.to_dict())
    mesh = sharding.make_mesh(config, devices)
    by_row = sharding.batch_sharding(mesh, config)
    graphdef, sh, state = sharding.init_sharded(lambda: train_state.init_train_state(config, mc, data[0]), mesh, config)
    step = jax.jit(train_step.make_train_step(graphdef, config, mc, sharding.compute_shardings(sh.params)),
                   in_shardings=(sh, by_row), out_shardings=(sh, NamedSharding(mesh, P())), donate_argnums=(0,))
    losses = []
    for b in data:
        state, metrics = step(state, sharding.put_local_batch(b, by_row))
        losses.append(float(metrics["loss"]))
    return np.asarray(losses), state, sh


@pytest.fixture(scope="module")
def single_device():
    data = batches(20)
    t = time.time()
    losses, state, _ = run_layout(small_config(data=1), jax.devices()[:1], data)
    print(f"\n1 device: 20 steps in {time.time() - t:.1f}s, losses {losses[0]:.4f} .. {losses[-1]:.4f}")
    return data, losses, state


LAYOUTS = [(8, 1), (4, 2), (2, 4), (1, 8)]


@pytest.mark.parametrize("data_size,fsdp_size", LAYOUTS)
def test_same_losses_on_every_layout(single_device, data_size, fsdp_size):
    data, ref, ref_state = single_device
    c = small_config(data=data_size, fsdp=fsdp_size)
    losses, state, sh = run_layout(c, jax.devices(), data)
    rel = np.abs(losses - ref) / np.abs(ref)
    print(f"\nmesh (data, fsdp) = ({data_size}, {fsdp_size}): worst relative loss error {rel.max():.3e}")
    assert rel.max() <= 1e-5, rel
    table = np.asarray(jax.device_get(state.puzzle_table))
    np.testing.assert_allclose(table, np.asarray(jax.device_get(ref_state.puzzle_table)), rtol=1e-5, atol=1e-6)

    rows = ("data", "fsdp") if fsdp_size > 1 and data_size > 1 else ("data" if data_size > 1 else "fsdp")
    fsdp = "fsdp" if fsdp_size > 1 else None
    params = state.params
    layer = params["L_level"]["layers"][0]
    expect = {
        "gate_up": (layer["mlp"]["gate_up_proj"]["kernel"], P(fsdp, None)),  # [32, 2I]: embed -> fsdp
        "down": (layer["mlp"]["down_proj"]["kernel"], P(None, fsdp)),  # [I, 32]
        "qkv": (layer["self_attn"]["qkv_proj"]["kernel"], P(fsdp, None)),
        "o": (layer["self_attn"]["o_proj"]["kernel"], P(None, fsdp)),
        "embed_tokens": (params["embed_tokens"]["embedding"], P(None, fsdp)),  # [11, 32]: 11 not divisible
        "lm_head": (params["lm_head"]["kernel"], P(fsdp, None)),
        "q_head_bias": (params["q_head"]["bias"], P(None)),  # [2]: nothing divisible -> replicated
    }
    for name, (leaf, spec) in expect.items():
        assert leaf[...].sharding.spec == spec, (name, leaf[...].sharding.spec)
    mu = state.opt_state.mu["L_level"]["layers"][0]["mlp"]["gate_up_proj"]["kernel"]
    ema = state.ema_params["L_level"]["layers"][0]["mlp"]["gate_up_proj"]["kernel"]
    assert mu[...].sharding.spec == P(fsdp, None) and ema[...].sharding.spec == P(fsdp, None)
    assert state.puzzle_table.sharding.spec == P(rows, None)  # [2048, 32] rows over data x fsdp
    assert state.carry.z_H.sharding.spec == P(rows, None, None)
    assert state.carry.current_data["inputs"].sharding.spec == P(rows, None)
    assert state.step.sharding.spec == P()
    shard_bytes = state.puzzle_table.addressable_shards[0].data.nbytes
    assert shard_bytes * 8 == state.puzzle_table.nbytes  # each device holds 1/8 of the table


def test_tensor_parallel_model_axis(single_device):
    """(data, fsdp, model) = (2, 2, 2): MLP/attention/vocab dimensions over `model`, same losses."""
    data, ref, _ = single_device
    losses, state, _ = run_layout(small_config(data=2, fsdp=2, model=2), jax.devices(), data)
    rel = np.abs(losses - ref) / np.abs(ref)
    print(f"\nmesh (data, fsdp, model) = (2, 2, 2): worst relative loss error {rel.max():.3e}")
    assert rel.max() <= 1e-5, rel
    layer = state.params["L_level"]["layers"][0]
    assert layer["mlp"]["gate_up_proj"]["kernel"][...].sharding.spec == P("fsdp", "model")
    assert layer["mlp"]["down_proj"]["kernel"][...].sharding.spec == P("model", "fsdp")
    assert layer["self_attn"]["qkv_proj"]["kernel"][...].sharding.spec == P("fsdp", "model")
    assert state.params["lm_head"]["kernel"][...].sharding.spec == P("fsdp", None)  # vocab 11: not divisible
    assert state.carry.z_H.sharding.spec == P(("data", "fsdp"), None, None)  # rows not split over model


def test_fsdp_fallback_and_rules():
    mesh = sharding.make_mesh(small_config(data=2, fsdp=4))
    c = small_config()
    # mlp_t gate_up [P+S, 2I]: logical (seq, mlp) uses no fsdp; the fallback puts it on the larger dim.
    assert sharding.param_spec("L_level/layers/0/mlp_t/gate_up_proj/kernel", (17, 64), mesh, c) == P(None, "fsdp")
    # Not divisible anywhere: replicated.
    assert sharding.param_spec("q_head/kernel", (30, 2), mesh, c) == P(None, None)
    # A dimension divisible by data but not data*fsdp keeps what divides.
    logical = {"rows": ("data", "fsdp")}
    assert sharding.resolve_spec((6, 3), ("rows",), mesh, logical) == P("data", None)
    assert sharding.resolve_spec((16, 3), ("rows",), mesh, logical) == P(("data", "fsdp"), None)
    c.sharding.fsdp_fallback = False
    assert sharding.param_spec("L_level/layers/0/mlp_t/gate_up_proj/kernel", (17, 64), mesh, c) == P(None, None)
    mesh_tp = sharding.make_mesh(small_config(data=2, fsdp=2, model=2))
    assert sharding.param_spec("a/mlp/gate_up_proj/kernel", (32, 64), mesh_tp, small_config()) == P("fsdp", "model")
    assert sharding.padded_puzzle_rows(1, c) == 1
    assert sharding.padded_puzzle_rows(1025, c) == 2048
    assert sharding.padded_puzzle_rows(876_406, c) % 1024 == 0


def test_process_contiguity_of_the_mesh():
    class Dev:
        def __init__(self, p):
            self.process_index = p

    ok = np.asarray([Dev(p) for p in (0, 0, 1, 1, 2, 2, 3, 3)]).reshape(4, 2, 1)
    interleaved = np.asarray([Dev(p) for p in (0, 1, 0, 1, 2, 3, 2, 3)]).reshape(4, 2, 1)
    swapped = np.asarray([Dev(p) for p in (1, 1, 0, 0)]).reshape(2, 2, 1)
    assert sharding.processes_contiguous(ok)
    assert not sharding.processes_contiguous(interleaved) and not sharding.processes_contiguous(swapped)
    mesh = sharding.make_mesh(small_config(data=2, fsdp=4))
    assert mesh.axis_names == ("data", "fsdp", "model") and dict(mesh.shape) == {"data": 2, "fsdp": 4, "model": 1}
    by_row = sharding.batch_sharding(mesh, small_config())
    assert by_row.spec == P(("data", "fsdp"))
    sharding.check_process_rows(by_row, 16)  # one process: all 16 rows


def test_mesh_and_batch_errors_name_the_field():
    with pytest.raises(ValueError, match=r"config.mesh: data\*fsdp\*model = 2\*2\*1 = 4, but there are 8 devices"):
        sharding.mesh_shape(small_config(data=2, fsdp=2), 8)
    with pytest.raises(ValueError, match=r"config.mesh.data=-1: the other axes \(3 devices\)"):
        sharding.mesh_shape(small_config(fsdp=3), 8)
    with pytest.raises(ValueError, match="at most one axis may be -1"):
        sharding.mesh_shape(small_config(data=-1, fsdp=-1), 8)
    with pytest.raises(ValueError, match="config.mesh.fsdp=0"):
        sharding.mesh_shape(small_config(fsdp=0), 8)
    assert sharding.mesh_shape(small_config(fsdp=2), 8) == {"data": 4, "fsdp": 2, "model": 1}
    with pytest.raises(ValueError, match=r"config.global_batch_size=12: expected a multiple of the 8 batch row shards"):
        sharding.validate(small_config(global_batch_size=12), 8)
    c = small_config(data=2, model=4)
    c.global_batch_size = 12  # 2 row shards: fine, the model axis does not split rows
    assert sharding.validate(c, 8) == {"data": 2, "fsdp": 1, "model": 4}
    c.eval.global_batch_size = 3
    with pytest.raises(ValueError, match=r"config.eval.global_batch_size=3"):
        sharding.validate(c, 8)
    bad = small_config()
    bad.sharding.logical_axis_rules = (("batch", ("data", "pipeline")),)
    with pytest.raises(ValueError, match="config.sharding.logical_axis_rules.*pipeline"):
        sharding.validate(bad, 8)
    with pytest.raises(ValueError, match="config.mesh"):
        run_config.validate(small_config(data=3), 8)


def test_sparse_update_of_the_row_sharded_table_never_gathers_it():
    """The compiled step keeps the table's rows where they are: no collective moves a [N, d] array."""
    c = small_config(data=8)
    c.model.num_puzzle_identifiers = 8192
    mc = ModelConfig.from_dict(c.model.to_dict())
    mesh = sharding.make_mesh(c)
    by_row = sharding.batch_sharding(mesh, c)
    graphdef, sh, state = sharding.init_sharded(lambda: train_state.init_train_state(c, mc, batches(1)[0]), mesh, c)
    step = jax.jit(train_step.make_train_step(graphdef, c, mc, sharding.compute_shardings(sh.params)),
                   in_shardings=(sh, by_row), out_shardings=(sh, NamedSharding(mesh, P())), donate_argnums=(0,))
    hlo = step.lower(state, sharding.put_local_batch(batches(1)[0], by_row)).compile().as_text()
    collectives = [ln for ln in hlo.splitlines()
                   if any(op in ln for op in ("all-gather(", "all-reduce(", "all-to-all(", "collective-permute("))]
    assert collectives  # the step does communicate (gradients, ids)
    assert not [ln for ln in collectives if "8192,32]" in ln], "the puzzle table is moved between devices"
    assert state.puzzle_table.sharding.spec == P("data", None)
    assert state.puzzle_table.addressable_shards[0].data.shape == (1024, 32)


def test_restore_reshards_onto_another_layout(tmp_path):
    """A checkpoint written on (8, 1) restores bit-exactly onto (2, 4) and onto one device."""
    data = batches(2)
    _, state, _ = run_layout(small_config(data=8), jax.devices(), data)
    ck = Checkpointer(tmp_path / "ck", keep=1, async_save=False)
    ck.save(2, state, {"step": 2})
    ck.wait()
    want = train_state.fingerprint(state)
    for cfg, devices in ((small_config(data=2, fsdp=4), jax.devices()), (small_config(data=1), jax.devices()[:1])):
        mc = ModelConfig.from_dict(cfg.model.to_dict())
        mesh = sharding.make_mesh(cfg, devices)
        abstract = jax.eval_shape(lambda: train_state.init_train_state(cfg, mc, data[0])[1])  # nothing materialised
        sh = sharding.state_shardings(abstract, mesh, cfg)
        step, restored, _ = ck.restore(abstract_like(abstract, sh))
        assert step == 2 and train_state.fingerprint(restored) == want
        assert jax.tree_util.tree_all(jax.tree_util.tree_map(lambda a, s: a.sharding == s, restored, sh))
    ck.close()


@pytest.mark.parametrize("module,arg", [(trm_sudoku, "mlp,cpu"), (trm_sudoku, "att,cpu"), ("hrm", "cpu")])
def test_every_weight_matrix_is_fsdp_sharded(module, arg):
    """On (data, fsdp) = (2, 4) each parameter with a dimension divisible by 4 is sharded over fsdp."""
    from flax import nnx

    from experiments import hrm_sudoku
    from recur_jax.core.layers import Buffer
    from recur_jax.core.models import build_model

    c = (hrm_sudoku if module == "hrm" else module).get_config(arg)
    c.model.hidden_size = c.model.puzzle_emb_ndim = 32
    mc = ModelConfig.from_dict(c.model.to_dict())
    params = nnx.split(nnx.eval_shape(lambda: build_model(mc, nnx.Rngs(0))), nnx.Param, Buffer)[1]
    mesh = sharding.make_mesh(small_config(data=2, fsdp=4))
    specs = jax.tree_util.tree_leaves_with_path(sharding.param_shardings(params, mesh, c),
                                                is_leaf=lambda x: isinstance(x, NamedSharding))
    shapes = [x.shape for x in jax.tree_util.tree_leaves(params)]
    assert len(specs) == len(shapes) > 5
    for (path, sh), shape in zip(specs, shapes):
        flat = [a for e in sh.spec if e is not None for a in ((e,) if isinstance(e, str) else e)]
        if len(shape) >= 2 and any(n % 4 == 0 for n in shape):
            assert "fsdp" in flat, (jax.tree_util.keystr(path), shape, sh.spec)
        for n, e in zip(shape, sh.spec):  # every sharded dimension divides
            axes = () if e is None else ((e,) if isinstance(e, str) else e)
            assert n % int(np.prod([mesh.shape[a] for a in axes])) == 0
