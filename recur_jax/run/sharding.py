"""Device mesh, logical-axis rules and NamedShardings for the training state, batch and ACT carry.

The mesh comes from `config.mesh` (axes `data`, `fsdp`, `model`; one size may be -1 = "the rest of
the devices"). How arrays map onto it is config data, in `config.sharding`:

  * `param_rules`: ordered (regex, logical axes) pairs. A parameter's path (e.g.
    `L_level/layers/0/mlp/gate_up_proj/kernel`) takes the logical axes of the first regex that
    `re.search`es it, one name (or None) per array dimension.
  * `logical_axis_rules`: (logical name, mesh axis / tuple of mesh axes / None) pairs, as in MaxText:
    `embed -> fsdp` is FSDP, `mlp/heads/vocab -> model` is tensor parallelism, `batch -> (data, fsdp)`
    shards the rows of the batch and of the ACT carry, `puzzle -> (data, fsdp)` the rows of the
    puzzle-embedding table.

Resolution of one array dimension of size n with logical name a (rules give mesh axes m1, m2, ...):
the mesh axes are taken in order while their running product divides n, and a mesh axis already used
by another dimension of the same array is skipped; so a dimension that does not divide falls back to
fewer axes and finally to replication (never an error). A parameter whose resolved spec leaves the
`fsdp` axis (size > 1) unused gets it on its largest still-unsharded dimension divisible by the fsdp
size (`fsdp_fallback`, matrices only), so every weight matrix big enough is FSDP-sharded; vectors
(biases) and matrices with no divisible dimension stay replicated over fsdp.

Optimizer state (AdamATan2 `mu`, `nu`) and the EMA have the parameters' structure and get the same
specs (their paths end with the parameter's path); step counters, H_init/L_init [D] are replicated.
The puzzle table [N, d] is sharded by rows over `puzzle`'s axes: its row count is padded to a
multiple of `sharding.puzzle_rows_multiple` (only when N exceeds it), so that the padded shape, and
with it the checkpoint, does not depend on the mesh; padded rows are never looked up or updated.

The batch and every carry leaf ([B, ...]) are sharded by rows over `batch`'s axes. Each process
holds the contiguous rows [p * B/P, (p + 1) * B/P) of the global batch (what the loader reads);
`make_mesh` orders the devices so that this holds and `check_process_rows` verifies it.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from typing import Any

import jax
import ml_collections
import numpy as np
from jax.experimental import mesh_utils, multihost_utils
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

MESH_AXES = ("data", "fsdp", "model")

DEFAULT_LOGICAL_AXIS_RULES = (
    ("batch", ("data", "fsdp")),
    ("puzzle", ("data", "fsdp")),
    ("embed", "fsdp"),
    ("mlp", "model"),
    ("heads", "model"),
    ("vocab", "model"),
    ("seq", None),
)

# (regex searched in the parameter path, logical axes per dimension). First match wins.
DEFAULT_PARAM_RULES = (
    (r"embed_tokens/embedding$", ("vocab", "embed")),  # [V, D]
    (r"embed_pos/embedding$", ("seq", "embed")),  # [P+S, D]
    (r"lm_head/kernel$", ("embed", "vocab")),  # [D, V]
    (r"q_head/kernel$", ("embed", None)),  # [D, 2]
    (r"q_head/bias$", (None,)),  # [2]
    (r"qkv_proj/kernel$", ("embed", "heads")),  # [D, (H + 2K) * hd]
    (r"o_proj/kernel$", ("heads", "embed")),  # [H * hd, D]
    (r"mlp_t/gate_up_proj/kernel$", ("seq", "mlp")),  # [P+S, 2I] (token mixing)
    (r"mlp_t/down_proj/kernel$", ("mlp", "seq")),  # [I, P+S]
    (r"gate_up_proj/kernel$", ("embed", "mlp")),  # [D, 2I]
    (r"down_proj/kernel$", ("mlp", "embed")),  # [I, D]
    (r".*", ()),  # anything else: replicated, then the fsdp fallback
)


def mesh_config() -> ml_collections.ConfigDict:
    """`config.mesh`: the mesh shape. -1 (at most one axis) = all remaining devices."""
    m = ml_collections.ConfigDict()
    m.data = -1
    m.fsdp = 1
    m.model = 1
    return m


def sharding_config() -> ml_collections.ConfigDict:
    """`config.sharding`: logical-axis rules and parameter rules (see the module docstring)."""
    s = ml_collections.ConfigDict()
    s.logical_axis_rules = DEFAULT_LOGICAL_AXIS_RULES
    s.param_rules = DEFAULT_PARAM_RULES
    s.fsdp_fallback = True
    s.puzzle_rows_multiple = 1024
    return s


def _get(config: ml_collections.ConfigDict, name: str, default: ml_collections.ConfigDict):
    """config.<name>, or the defaults for configs written before the field existed (old run.json)."""
    return config[name] if name in config else default


def mesh_shape(config: ml_collections.ConfigDict, num_devices: int) -> dict[str, int]:
    """Resolves `config.mesh` against the device count.

    Returns:
      {"data": d, "fsdp": f, "model": m} with d * f * m == num_devices.
    Raises:
      ValueError: naming `config.mesh.<axis>` for a size that is 0 or < -1, more than one -1, a
        remainder that does not divide, or a product different from the device count.
    """
    m = _get(config, "mesh", mesh_config())
    sizes = {a: int(m[a]) if a in m else 1 for a in MESH_AXES}
    for a, v in sizes.items():
        if v == 0 or v < -1:
            raise ValueError(f"config.mesh.{a}={v}: expected a positive size or -1 (the remaining devices)")
    free = [a for a, v in sizes.items() if v == -1]
    if len(free) > 1:
        raise ValueError(f"config.mesh: at most one axis may be -1, got {', '.join('mesh.' + a for a in free)}")
    fixed = math.prod(v for v in sizes.values() if v != -1)
    if free:
        if num_devices % fixed:
            raise ValueError(f"config.mesh.{free[0]}=-1: the other axes ({fixed} devices) do not divide the "
                             f"{num_devices} devices")
        sizes[free[0]] = num_devices // fixed
    elif fixed != num_devices:
        raise ValueError(f"config.mesh: data*fsdp*model = {sizes['data']}*{sizes['fsdp']}*{sizes['model']} = "
                         f"{fixed}, but there are {num_devices} devices")
    return sizes


def make_mesh(config: ml_collections.ConfigDict, devices: Sequence[jax.Device] | None = None) -> Mesh:
    """The ("data", "fsdp", "model") mesh of `config.mesh` over `devices` (default: all devices).

    Uses the topology-aware order of `mesh_utils.create_device_mesh` when each process then owns a
    contiguous block of the row axis (data, fsdp), which the loader's per-process row ranges and
    `jax.make_array_from_process_local_data` need (`processes_contiguous`); otherwise the devices
    are ordered by (process index, id) before the reshape.
    """
    devices = list(jax.devices() if devices is None else devices)
    shape = mesh_shape(config, len(devices))
    dims = tuple(shape[a] for a in MESH_AXES)
    try:  # topology-aware on TPU/GPU; kept only if every process owns a contiguous block of rows
        arr = mesh_utils.create_device_mesh(dims, devices)
    except (ValueError, NotImplementedError, AssertionError, AttributeError):
        arr = None
    if arr is None or not processes_contiguous(arr):
        arr = np.asarray(sorted(devices, key=lambda d: (d.process_index, d.id))).reshape(dims)
    return Mesh(arr, MESH_AXES)


def processes_contiguous(devices: np.ndarray) -> bool:
    """True if, read in row-major order (data, fsdp, model), the devices of each process form one
    contiguous run and the runs come in process order (process p owns rows [p G/P, (p+1) G/P))."""
    procs = [d.process_index for d in np.asarray(devices).reshape(-1)]
    runs = [p for i, p in enumerate(procs) if i == 0 or p != procs[i - 1]]
    return runs == sorted(set(procs))


def _rules(config: ml_collections.ConfigDict) -> tuple[dict[str, tuple[str, ...]], list, bool, int]:
    s = _get(config, "sharding", sharding_config())
    logical: dict[str, tuple[str, ...]] = {}
    for item in s.logical_axis_rules:
        name, axes = item
        axes = () if axes is None else ((axes,) if isinstance(axes, str) else tuple(axes))
        bad = [a for a in axes if a not in MESH_AXES]
        if bad:
            raise ValueError(f"config.sharding.logical_axis_rules: {name!r} maps to unknown mesh axes {bad}; "
                             f"expected some of {list(MESH_AXES)}")
        logical[name] = axes
    params = []
    for item in s.param_rules:
        regex, names = item
        try:
            params.append((re.compile(regex), tuple(names)))
        except re.error as e:
            raise ValueError(f"config.sharding.param_rules: invalid regex {regex!r} ({e})") from None
    return logical, params, bool(s.fsdp_fallback), int(s.puzzle_rows_multiple)


def resolve_spec(shape: Sequence[int], names: Sequence[str | None], mesh: Mesh,
                 logical: dict[str, tuple[str, ...]], fsdp_fallback: bool = False) -> P:
    """The PartitionSpec of an array of `shape` whose dimensions carry logical `names`.

    Args:
      shape: the array shape.
      names: one logical name (a key of `logical`, or None) per leading dimension; missing trailing
        names are None.
      mesh: the mesh (its axis sizes decide divisibility).
      logical: logical name -> mesh axes.
      fsdp_fallback: put an unused `fsdp` axis on the largest divisible unsharded dimension (ndim >= 2).
    Returns:
      A PartitionSpec with one entry per dimension (None, one axis name, or a tuple of names).
    Raises:
      ValueError: more names than dimensions, or a name without a rule.
    """
    if len(names) > len(shape):
        raise ValueError(f"logical axes {tuple(names)} have more entries than the array's shape {tuple(shape)}")
    used: set[str] = set()
    entries: list[tuple[str, ...]] = []
    for i, n in enumerate(shape):
        name = names[i] if i < len(names) else None
        if name is not None and name not in logical:
            raise ValueError(f"logical axis {name!r} has no entry in config.sharding.logical_axis_rules")
        chosen: list[str] = []
        for ax in logical.get(name, ()) if name is not None else ():
            size = mesh.shape[ax]
            if ax in used or size == 1:
                continue
            if n % (math.prod(mesh.shape[a] for a in chosen) * size) == 0:
                chosen.append(ax)
        used.update(chosen)
        entries.append(tuple(chosen))
    f = mesh.shape.get("fsdp", 1)
    if fsdp_fallback and f > 1 and "fsdp" not in used and len(shape) >= 2:
        free = [i for i, n in enumerate(shape) if not entries[i] and n % f == 0]
        if free:
            i = max(free, key=lambda j: (shape[j], -j))
            entries[i] = ("fsdp",)
    return P(*[None if not e else (e[0] if len(e) == 1 else e) for e in entries])


def _path_str(path) -> str:
    parts = []
    for k in path:
        key = getattr(k, "key", getattr(k, "name", getattr(k, "idx", None)))
        if key is None:
            key = str(k)
        if key == "value":  # nnx.Variable's payload
            continue
        parts.append(str(key))
    return "/".join(parts)


def param_spec(path: str, shape: Sequence[int], mesh: Mesh, config: ml_collections.ConfigDict) -> P:
    """The PartitionSpec of the parameter at `path` (e.g. "lm_head/kernel") by `config.sharding`."""
    logical, rules, fallback, _ = _rules(config)
    return _param_spec(path, shape, mesh, logical, rules, fallback)


def _param_spec(path, shape, mesh, logical, rules, fallback) -> P:
    if len(shape) == 0:
        return P()
    for regex, names in rules:
        if regex.search(path):
            return resolve_spec(shape, names[:len(shape)], mesh, logical, fallback)
    return resolve_spec(shape, (), mesh, logical, fallback)


def param_shardings(tree: Any, mesh: Mesh, config: ml_collections.ConfigDict) -> Any:
    """NamedShardings for a pytree of parameters (or of optimizer moments / EMA with their paths)."""
    logical, rules, fallback, _ = _rules(config)
    return jax.tree_util.tree_map_with_path(
        lambda p, x: NamedSharding(mesh, _param_spec(_path_str(p), np.shape(x), mesh, logical, rules, fallback)),
        tree)


def compute_shardings(param_sh: Any) -> Any:
    """The parameters' shardings for computing: `param_sh` with the `fsdp` axis removed.

    FSDP here means: parameters, optimizer moments and EMA are *stored* sharded over `fsdp`; at the
    start of a step the parameters are all-gathered over `fsdp` (kept sharded over `model`), the
    forward/backward runs data-parallel over the rows, the gradients are summed over the rows in
    the same layout, and each device updates only its stored shard (optimizer maths on 1/fsdp of
    the parameters). `step.make_train_step` constrains parameters and gradients to these
    shardings; without that XLA may reshard the [B, L, D] activations to match the weights
    instead (slow: "involuntary full rematerialization"). The transient full copy of parameters
    and gradients is small for these models (tens of MB at most).
    """
    def drop_fsdp(sh: NamedSharding) -> NamedSharding:
        entries = []
        for e in sh.spec:
            axes = () if e is None else ((e,) if isinstance(e, str) else tuple(e))
            axes = tuple(a for a in axes if a != "fsdp")
            entries.append(None if not axes else (axes[0] if len(axes) == 1 else axes))
        return NamedSharding(sh.mesh, P(*entries))

    return jax.tree_util.tree_map(drop_fsdp, param_sh, is_leaf=lambda x: isinstance(x, NamedSharding))


def padded_puzzle_rows(num_ids: int, config: ml_collections.ConfigDict) -> int:
    """Rows of the puzzle table: `num_ids` rounded up to `sharding.puzzle_rows_multiple` when it exceeds it.

    Small tables (<= the multiple) keep their size and are replicated when the mesh does not divide
    them; large ones get at most multiple-1 padding rows (zero, never looked up), which makes them
    divisible by any power-of-two mesh up to the multiple, independently of the mesh in use.
    """
    multiple = _rules(config)[3]
    if multiple < 1:
        raise ValueError(f"config.sharding.puzzle_rows_multiple={multiple}: expected an integer >= 1")
    if num_ids <= multiple:
        return num_ids
    return -(-num_ids // multiple) * multiple


def batch_sharding(mesh: Mesh, config: ml_collections.ConfigDict) -> NamedSharding:
    """Rows over the `batch` rule's mesh axes (default data x fsdp), other dimensions replicated.

    The spec has one entry, so the same sharding serves [B] and [B, S, ...] arrays.
    """
    logical = _rules(config)[0]
    axes = tuple(a for a in logical.get("batch", ()) if mesh.shape[a] > 1) or None
    if axes is not None and len(axes) == 1:
        axes = axes[0]
    return NamedSharding(mesh, P(axes))


def batch_row_shards(mesh: Mesh, config: ml_collections.ConfigDict) -> int:
    """Number of row shards of the batch (data * fsdp with the default rules)."""
    spec = batch_sharding(mesh, config).spec[0]
    axes = () if spec is None else ((spec,) if isinstance(spec, str) else spec)
    return math.prod(mesh.shape[a] for a in axes)


def validate(config: ml_collections.ConfigDict, num_devices: int, num_processes: int = 1) -> dict[str, int]:
    """Checks `config.mesh`, `config.sharding` and the batch sizes against the devices.

    Returns:
      The resolved mesh shape.
    Raises:
      ValueError: naming the field: a bad mesh size or product (`config.mesh.<axis>`), a bad rule
        (`config.sharding.*`), or `config.global_batch_size` / `config.eval.global_batch_size` not a
        multiple of the batch row shards (data*fsdp with the default rules) or of the processes.
    """
    shape = mesh_shape(config, num_devices)
    logical, _, _, multiple = _rules(config)
    if multiple < 1:
        raise ValueError(f"config.sharding.puzzle_rows_multiple={multiple}: expected an integer >= 1")
    shards = math.prod(shape[a] for a in logical.get("batch", ()))
    sizes = [("global_batch_size", int(config.global_batch_size))]
    if "eval" in config and int(config.eval.global_batch_size) > 0:
        sizes.append(("eval.global_batch_size", int(config.eval.global_batch_size)))
    for name, size in sizes:
        if size % shards:
            axes = "*".join(logical.get("batch", ()))
            raise ValueError(f"config.{name}={size}: expected a multiple of the {shards} batch row shards "
                             f"(mesh {axes} = {'*'.join(str(shape[a]) for a in logical.get('batch', ()))})")
        if size % num_processes:
            raise ValueError(f"config.{name}={size}: expected a multiple of the {num_processes} processes")
    return shape


def check_process_rows(sharding: NamedSharding, global_rows: int) -> None:
    """Verifies that this process's devices hold rows [p * G/P, (p + 1) * G/P) of a [G, ...] array.

    Raises:
      ValueError: when the mesh gives a process non-contiguous or differently placed rows (the loader
        would then feed the wrong examples).
    """
    p, n = jax.process_index(), jax.process_count()
    local = global_rows // n
    idx = sharding.addressable_devices_indices_map((global_rows,))
    rows = set()
    for sl in idx.values():
        s = sl[0]
        rows.update(range(*s.indices(global_rows)))
    if rows != set(range(p * local, (p + 1) * local)):
        raise ValueError(f"process {p}: the mesh gives this process rows {sorted(rows)[:4]}... of the global "
                         f"batch, not [{p * local}, {(p + 1) * local}); order the mesh devices by process")


def state_shardings(abstract_state: Any, mesh: Mesh, config: ml_collections.ConfigDict) -> Any:
    """NamedShardings for a `state.TrainState` (given abstractly, e.g. by `jax.eval_shape`).

    params, opt_state moments, ema_params: by `param_rules` (FSDP over `fsdp`, tensor parallel over
    `model`); puzzle_table: rows over the `puzzle` rule's axes; carry: rows over the `batch` rule's
    axes; everything else (step, buffers, counters) replicated.
    """
    replicated = NamedSharding(mesh, P())
    logical, rules, fallback, _ = _rules(config)

    def params_like(tree):
        return jax.tree_util.tree_map_with_path(
            lambda p, x: NamedSharding(mesh, _param_spec(_path_str(p), np.shape(x), mesh, logical, rules, fallback)),
            tree)

    def rows(tree, name):
        return jax.tree_util.tree_map(
            lambda x: NamedSharding(mesh, resolve_spec(np.shape(x), (name,), mesh, logical)) if np.ndim(x) else
            replicated, tree)

    s = abstract_state
    return s.replace(
        step=replicated,
        params=params_like(s.params),
        buffers=jax.tree_util.tree_map(lambda _: replicated, s.buffers),
        opt_state=params_like(s.opt_state),  # count: scalar -> P(); mu, nu: the params' specs
        ema_params=None if s.ema_params is None else params_like(s.ema_params),
        puzzle_table=None if s.puzzle_table is None else rows(s.puzzle_table, "puzzle"),
        puzzle_opt_state=jax.tree_util.tree_map(lambda _: replicated, s.puzzle_opt_state),
        carry=rows(s.carry, "batch"),
    )


def init_sharded(init_fn: Callable[[], tuple[Any, Any]], mesh: Mesh, config: ml_collections.ConfigDict
                 ) -> tuple[Any, Any, Any]:
    """Builds a TrainState directly in its shardings (no full copy on one device first).

    Args:
      init_fn: () -> (graphdef, TrainState), e.g. `lambda: state.init_train_state(config, model_cfg, example)`.
    Returns:
      (graphdef, shardings of the state (`state_shardings`), the state placed accordingly).
    """
    box = {}

    def init():
        box["graphdef"], state = init_fn()
        return state

    shardings = state_shardings(jax.eval_shape(init), mesh, config)
    state = jax.jit(init, out_shardings=shardings)()
    return box["graphdef"], shardings, state


def barrier(name: str) -> None:
    """Blocks until every process reaches the barrier `name` (no-op on one process)."""
    if jax.process_count() > 1:
        multihost_utils.sync_global_devices(name)


def put_local_batch(local: dict[str, np.ndarray], sharding: NamedSharding) -> dict[str, jax.Array]:
    """Global arrays from this process's rows of a batch (`jax.make_array_from_process_local_data`).

    Args:
      local: dict of [G/P, ...] numpy arrays (this process's rows, from the loader).
      sharding: the rows' sharding (`batch_sharding`); other dimensions are replicated.
    """
    return {k: jax.make_array_from_process_local_data(sharding, v) for k, v in local.items()}


def to_host(tree: Any) -> Any:
    """numpy copies of a pytree of (possibly multi-process sharded) arrays, on every process."""
    def one(x):
        if isinstance(x, jax.Array) and not x.is_fully_addressable:
            return np.asarray(multihost_utils.process_allgather(x, tiled=True))
        return np.asarray(jax.device_get(x))

    return jax.tree_util.tree_map(one, tree)


def describe(shardings: Any) -> dict[str, str]:
    """{path: PartitionSpec as text} of a pytree of NamedShardings (for run.json)."""
    return {_path_str(path): str(sh.spec) for path, sh in jax.tree_util.tree_leaves_with_path(
        shardings, is_leaf=lambda x: isinstance(x, NamedSharding))}


__all__ = ["DEFAULT_LOGICAL_AXIS_RULES", "DEFAULT_PARAM_RULES", "MESH_AXES", "barrier", "batch_row_shards",
           "batch_sharding", "check_process_rows", "compute_shardings", "describe", "init_sharded", "make_mesh",
           "mesh_config", "mesh_shape", "padded_puzzle_rows", "param_shardings", "param_spec", "processes_contiguous",
           "put_local_batch", "resolve_spec", "sharding_config", "state_shardings", "to_host", "validate"]
