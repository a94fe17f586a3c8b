"""Reading files that may be hostile or torn, and writing files so that a kill never leaves half of one.

* `read_json(path, max_bytes=...)`: refuses a file larger than the limit before reading it, and
  a document nested deeper than `max_depth` (Python's parser would otherwise recurse until it fails),
  with errors naming the file.
* `resolve_inside(base, relative)`: a path taken from a data file, resolved under `base`; absolute
  paths, `..` and symlinks that lead out of `base` are refused.
* `check_size(path, max_bytes)`: the size guard on its own (CSV readers, torch checkpoints).
* `read_npz(path, what)`: the arrays of an `.npz` archive, never unpickling; a single `.npy`, a
  pickle, a text file or a torn archive is one error naming the file and what was expected.
* `write_json_atomic(path, obj)` / `write_text_atomic`: write to a temporary file in the same
  directory, flush and fsync it, then `os.replace` it over the target: readers see the old file or the
  new one, never a torn one (a cloud URL: one whole-object write, see `recur_jax.io.paths`).

`check_size`, `read_json` and the writers take local paths or cloud URLs (`recur_jax.io.paths`).
"""

from __future__ import annotations

import json
import os
import zipfile
from typing import Any

import numpy as np

from recur_jax.io import paths
from recur_jax.io.paths import write_text_atomic  # re-exported: the writer lives in the path layer

DEFAULT_MAX_JSON_BYTES = 64 << 20  # run records and metadata are kilobytes; data files are issue-specific
DEFAULT_MAX_JSON_DEPTH = 64


class UnsafeInputError(ValueError):
    """A file exceeds a size/shape limit or names a path outside its data directory (message names it)."""


def read_npz(path: str | os.PathLike, what: str) -> dict[str, np.ndarray]:
    """name -> array of an `.npz` archive of plain arrays, read whole; object arrays are never unpickled.

    Args:
      path: the file; what: what it should be, for the errors (e.g. "golden-value fixture").
    Raises:
      ValueError: not an .npz archive (a single .npy, text, a torn archive) or one holding Python
        objects; the message names the file and `what`, and never suggests allow_pickle.
      OSError: the file cannot be opened (FileNotFoundError names it).
    """
    path = os.fspath(path)
    try:
        npz = np.load(path, allow_pickle=False)
        if not isinstance(npz, np.lib.npyio.NpzFile):
            raise ValueError(f"{path}: a single .npy array, not a {what} (.npz archive)")
        with npz:
            return {k: npz[k] for k in npz.files}
    except ValueError as e:
        if "pickle" in str(e).lower():
            raise ValueError(f"{path}: holds Python objects, not a {what} (.npz of plain arrays); refused "
                             f"without unpickling") from None
        if str(e).startswith(path):
            raise
        raise ValueError(f"{path}: not a {what} (.npz archive): {e}") from None
    except (zipfile.BadZipFile, EOFError) as e:
        raise ValueError(f"{path}: not a {what} (.npz archive): {e}") from None


def check_size(path: str | os.PathLike, max_bytes: int, what: str = "file") -> int:
    """Returns the size of `path` in bytes.

    Raises:
      UnsafeInputError: the file is larger than `max_bytes` (names the file, its size and the limit).
      OSError: the file cannot be stat'ed.
    """
    size = paths.size(path)
    if size > max_bytes:
        raise UnsafeInputError(f"{os.fspath(path)}: {what} of {size} bytes is larger than the limit of "
                               f"{max_bytes} bytes; expected a smaller file (or raise the limit)")
    return size


def _depth(obj: Any, limit: int) -> int:
    """Nesting depth of a parsed JSON value, stopping once `limit` is exceeded (iterative)."""
    deepest, stack = 0, [(obj, 1)]
    while stack:
        node, d = stack.pop()
        if isinstance(node, (dict, list)):
            deepest = max(deepest, d)
            if deepest > limit:
                return deepest
            stack.extend((v, d + 1) for v in (node.values() if isinstance(node, dict) else node))
    return deepest


def read_json(path: str | os.PathLike, *, max_bytes: int = DEFAULT_MAX_JSON_BYTES,
              max_depth: int = DEFAULT_MAX_JSON_DEPTH) -> Any:
    """Parses a JSON file after checking its size; the result's nesting is bounded too.

    Args:
      path: the file.
      max_bytes: larger files are refused before a byte is read.
      max_depth: deeper documents are refused (Python's parser recurses per level; a file of a
        million '[' would otherwise end in a RecursionError deep inside json).
    Returns:
      The parsed value.
    Raises:
      UnsafeInputError: too large or too deep (names the file and the limit).
      ValueError: not valid JSON (names the file, line and column) or not UTF-8.
      OSError: the file cannot be read.
    """
    file = os.fspath(path)
    check_size(file, max_bytes, "JSON file")
    raw = paths.read_bytes(file, max_bytes)
    if len(raw) > max_bytes:  # grew since the stat
        raise UnsafeInputError(f"{file}: JSON file is larger than the limit of {max_bytes} bytes")
    try:
        value = json.loads(raw)
    except json.JSONDecodeError as e:
        raise ValueError(f"{file}:{e.lineno}:{e.colno}: invalid JSON ({e.msg}); expected a JSON document") from None
    except UnicodeDecodeError as e:
        raise ValueError(f"{file}: not UTF-8 ({e.reason} at byte {e.start}); expected a JSON document") from None
    except RecursionError:
        raise UnsafeInputError(f"{file}: JSON nested too deeply to parse; expected at most {max_depth} "
                               f"levels") from None
    if _depth(value, max_depth) > max_depth:
        raise UnsafeInputError(f"{file}: JSON nested deeper than {max_depth} levels; expected at most "
                               f"{max_depth}")
    return value


def resolve_inside(base: str | os.PathLike, relative: str, *, source: str = "") -> str:
    """The real path of `relative` under `base`, refusing anything that escapes `base`.

    Args:
      base: the data directory.
      relative: a path read from a file (e.g. a file list or an index).
      source: where `relative` came from (file:line), for the message.
    Returns:
      An absolute path inside `realpath(base)` (symlinks resolved).
    Raises:
      UnsafeInputError: `relative` is absolute, empty, contains a NUL byte, or resolves (through `..`
        or symlinks) outside `base`.
    """
    where = f"{source}: " if source else ""
    if not relative or "\x00" in relative:
        raise UnsafeInputError(f"{where}path {relative!r}: expected a non-empty relative path")
    if os.path.isabs(relative) or os.path.splitdrive(relative)[0]:
        raise UnsafeInputError(f"{where}path {relative!r} is absolute; expected a path relative to {base}")
    root = os.path.realpath(base)
    target = os.path.realpath(os.path.join(root, relative))
    if os.path.commonpath([root, target]) != root:
        raise UnsafeInputError(f"{where}path {relative!r} leads to {target}, outside the data directory "
                               f"{root}; expected a path inside it")
    return target


def write_json_atomic(path: str | os.PathLike, obj: Any, **dump_kwargs: Any) -> None:
    """`json.dumps(obj, **dump_kwargs)` written with `write_text_atomic`."""
    write_text_atomic(path, json.dumps(obj, **dump_kwargs))


__all__ = ["UnsafeInputError", "check_size", "read_json", "resolve_inside", "write_json_atomic",
           "write_text_atomic"]
