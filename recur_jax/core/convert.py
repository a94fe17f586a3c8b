"""Official PyTorch checkpoints <-> recur_jax parameters (TRM.md 2.9, HRM.md 2.10).

The official state_dict names (optionally behind `_orig_mod.` from torch.compile and `model.inner.`
from the ACT wrappers) map one to one onto our module tree:

    embed_tokens.embedding_weight          -> embed_tokens/embedding          [V, D]
    embed_pos.embedding_weight             -> embed_pos/embedding             [P+S, D]
    lm_head.weight [V, D]                  -> lm_head/kernel                  [D, V]   (transposed)
    q_head.weight [2, D], q_head.bias [2]  -> q_head/kernel [D, 2], q_head/bias [2]
    {H,L}_level.layers.{i}.{self_attn,mlp,mlp_t}.{qkv_proj,o_proj,gate_up_proj,down_proj}.weight
                                           -> .../kernel [in, out]             (transposed)
    H_init, L_init [D]                     -> buffers H_init, L_init
    puzzle_emb.weights [N, ndim]           -> the separate puzzle table

Every Linear weight is transposed from [out, in] to [in, out]; the row order of the fused qkv
([q heads | k heads | v heads]) and of gate_up ([gate | up]) is kept, so a transpose is all it takes.
torch is optional and imported only in `load_torch_checkpoint`, always with `weights_only=True`.
"""

from __future__ import annotations

import os
import pickle
from collections.abc import Mapping
from typing import Any

import numpy as np
from flax import nnx

from recur_jax.core.layers import Buffer, accum_dtype
from recur_jax.core.models.common import RecursiveReasoner

PREFIXES = ("_orig_mod.", "model.inner.", "model.")
PUZZLE_KEY = "puzzle_emb.weights"
BUFFER_KEYS = ("H_init", "L_init")


def strip_prefix(name: str) -> str:
    """Removes the `_orig_mod.` and `model.inner.` prefixes of official checkpoint keys."""
    changed = True
    while changed:
        changed = False
        for p in PREFIXES:
            if name.startswith(p):
                name, changed = name[len(p):], True
    return name


def _torch_to_path(name: str) -> tuple[tuple[Any, ...], bool]:
    """Reference key (prefix stripped) -> (our state path, transpose?)."""
    parts = name.split(".")
    path: list[Any] = [int(p) if p.isdigit() else p for p in parts[:-1]]
    leaf = parts[-1]
    if leaf == "embedding_weight":
        return tuple(path + ["embedding"]), False
    if leaf == "weight":
        return tuple(path + ["kernel"]), True
    if leaf == "bias":
        return tuple(path + ["bias"]), False
    return tuple(path + [leaf]), False


def _path_to_torch(path: tuple[Any, ...]) -> tuple[str, bool]:
    """Our state path -> (reference key without prefix, transpose?)."""
    *head, leaf = [str(p) for p in path]
    if leaf == "embedding":
        return ".".join(head + ["embedding_weight"]), False
    if leaf == "kernel":
        return ".".join(head + ["weight"]), True
    return ".".join(head + [leaf]), False


def _flatten(tree: Mapping, prefix: tuple = ()) -> dict[tuple, Any]:
    out = {}
    for k, v in tree.items():
        if isinstance(v, Mapping):
            out.update(_flatten(v, prefix + (k,)))
        else:
            out[prefix + (k,)] = v
    return out


def _unflatten(flat: Mapping[tuple, Any]) -> dict:
    out: dict = {}
    for path, v in flat.items():
        node = out
        for k in path[:-1]:
            node = node.setdefault(k, {})
        node[path[-1]] = v
    return out


def load_state_dict(model: RecursiveReasoner, state_dict: Mapping[str, Any], *,
                    source: str = "state_dict") -> np.ndarray | None:
    """Loads an official state_dict into `model` (in place) and returns its puzzle table.

    Args:
      model: a freshly built model whose config matches the checkpoint.
      state_dict: name -> array (numpy arrays or CPU torch tensors), with or without prefixes.
      source: a label for error messages (the file name).
    Returns:
      The puzzle-embedding table [num_puzzle_identifiers, puzzle_emb_ndim] float32 (float64 for a float64
      model), or None if the checkpoint has none.
    Raises:
      ValueError: naming the missing keys, the unexpected keys, or a key whose shape differs from the
        model's (with both shapes); nothing in `model` is changed then.
    """
    arrays = {strip_prefix(k): _to_numpy(v) for k, v in state_dict.items()}
    table = arrays.pop(PUZZLE_KEY, None)
    _, params, buffers = nnx.split(model, nnx.Param, Buffer)
    want = {**_flatten(nnx.to_pure_dict(params)), **_flatten(nnx.to_pure_dict(buffers))}
    got: dict[tuple, np.ndarray] = {}
    unexpected = []
    for name, value in arrays.items():
        path, transpose = _torch_to_path(name)
        if path not in want:
            unexpected.append(name)
            continue
        got[path] = value.T if transpose else value
    missing = sorted(_path_to_torch(p)[0] for p in want if p not in got)
    if missing or unexpected:
        raise ValueError(f"{source}: checkpoint does not match model.arch={model.config.arch!r}: "
                         f"missing keys {missing}, unexpected keys {sorted(unexpected)}")
    for path, value in got.items():
        if tuple(value.shape) != tuple(want[path].shape):
            name = _path_to_torch(path)[0]
            raise ValueError(f"{source}: key {name!r} has shape {tuple(value.shape)} (after transpose), "
                             f"the model expects {tuple(want[path].shape)}; check the model config")
    flat_params = _flatten(nnx.to_pure_dict(params))
    new_params = _unflatten({p: got[p].astype(want[p].dtype) for p in flat_params})  # float32 (float64 models: float64)
    new_buffers = _unflatten({p: got[p].astype(want[p].dtype) for p in _flatten(nnx.to_pure_dict(buffers))})
    nnx.replace_by_pure_dict(params, new_params)
    nnx.replace_by_pure_dict(buffers, new_buffers)
    nnx.update(model, params, buffers)
    if table is not None:
        c = model.config
        if table.ndim != 2 or table.shape[1] != c.puzzle_emb_ndim:
            raise ValueError(f"{source}: {PUZZLE_KEY} has shape {table.shape}, expected [N, {c.puzzle_emb_ndim}]")
        table = table.astype(accum_dtype(c.dtype))
    return table


def to_state_dict(model: RecursiveReasoner, puzzle_table: np.ndarray | None = None,
                  prefix: str = "_orig_mod.model.inner.") -> dict[str, np.ndarray]:
    """Exports `model` (and the puzzle table) under the official names, weights as [out, in].

    Returns:
      name -> float32 numpy array (H_init/L_init in the model's compute dtype), the layout of an
      official checkpoint (loadable by the reference with `load_state_dict`).
    """
    _, params, buffers = nnx.split(model, nnx.Param, Buffer)
    out = {}
    for tree in (params, buffers):
        for path, value in _flatten(nnx.to_pure_dict(tree)).items():
            name, transpose = _path_to_torch(path)
            arr = np.asarray(value)
            out[prefix + name] = arr.T if transpose else arr
    if puzzle_table is not None:
        out[prefix + PUZZLE_KEY] = np.asarray(puzzle_table, np.float32)
    return out


def _to_numpy(value: Any) -> np.ndarray:
    if hasattr(value, "detach"):  # a torch tensor
        value = value.detach().cpu()
        if str(value.dtype) == "torch.bfloat16":
            value = value.float()
        value = value.numpy()
    return np.asarray(value)


MAX_TORCH_CHECKPOINT_BYTES = 8 << 30  # the paper models are ~30 MB; ARC puzzle tables add a few hundred MB


def load_torch_checkpoint(path: str | os.PathLike, *, max_bytes: int = MAX_TORCH_CHECKPOINT_BYTES
                          ) -> dict[str, np.ndarray]:
    """Reads an official checkpoint file (a state_dict saved by `torch.save`) as numpy arrays.

    Uses `torch.load(..., map_location="cpu", weights_only=True)`: no arbitrary unpickling (a file that
    names any other global, e.g. `os.system`, is refused before anything runs).

    Args:
      path: the file.
      max_bytes: larger files are refused before they are read.
    Raises:
      ImportError: torch is not installed (install the `torch` extra).
      safe_io.UnsafeInputError (a ValueError): the file is larger than `max_bytes`.
      ValueError: naming the file when it is not a state_dict of tensors, holds other objects than
        tensors (refused by the weights-only unpickler), or is not a torch file at all.
    """
    try:
        import torch  # noqa: PLC0415 (optional dependency)
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError("reading PyTorch checkpoints needs torch: pip install 'recur_jax[torch]'") from e
    from recur_jax.io.safe_io import check_size

    check_size(path, max_bytes, "PyTorch checkpoint")
    try:
        obj = torch.load(os.fspath(path), map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError, AttributeError) as e:
        boilerplate = ("Weights only load failed", "Please file an issue", "Check the documentation")
        lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
        detail = next((ln for ln in lines if not ln.startswith(boilerplate)), lines[0] if lines else type(e).__name__)
        raise ValueError(f"{os.fspath(path)}: refused, not a plain PyTorch state_dict of tensors ({detail}); "
                         f"recur_jax loads only tensors (torch.load weights_only=True)") from None
    if isinstance(obj, Mapping) and "state_dict" in obj and isinstance(obj["state_dict"], Mapping):
        obj = obj["state_dict"]
    if not isinstance(obj, Mapping) or not all(hasattr(v, "detach") for v in obj.values()):
        raise ValueError(f"{path}: expected a state_dict (a mapping of names to tensors)")
    return {k: _to_numpy(v) for k, v in obj.items()}
