"""One path layer for a run's files: local paths and cloud URLs (`gs://bucket/run`, `s3://...`).

Everything a run writes or reads in its workdir (run.json, metrics.jsonl, summary.json, TensorBoard
events, evaluation results, reports, the lock record) goes through these functions; checkpoints go
through Orbax, which takes the same URLs. Local paths use `os` directly (atomic replace, fsync, flock,
appends); URLs go through `etils.epath` (fsspec underneath, e.g. gcsfs for `gs://`, installed by the
`.[gcs]` extra), as Orbax does.

What differs on an object store, and how it is handled:
  * no rename-over: `write_text_atomic` writes the object whole (an object store replaces objects
    atomically: readers see the old object or the new one);
  * no append: `append_text` reads the object and writes it back with the lines added (metrics.jsonl is
    kilobytes; one rewrite per logged line);
  * no file locks: `launch.main`'s workdir lock becomes a heartbeat record (see `run/workdir.py`);
  * no directories: `makedirs` is a no-op where the store has none.

Generated data (`data.data_dir`) is built with TFDS/ArrayRecord, which write local files: a run with a
cloud workdir builds its data in a local cache unless `data.data_dir` names a local directory (see
`local_data_dir`).
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
from typing import IO, Any

_URL = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")


def is_url(path: str | os.PathLike) -> bool:
    """Whether `path` is a URL with a scheme (`gs://b/x`, `s3://b/x`), not a local path.

    `file://` counts as a URL too (epath handles it); a bare `gs:` folder name does not.
    """
    return bool(_URL.match(os.fspath(path)))


def _epath(path: str | os.PathLike):
    from etils import epath  # imported lazily: local runs never need it
    return epath.Path(os.fspath(path))


def absolute(path: str | os.PathLike) -> str:
    """`os.path.abspath` for local paths; a URL is returned as given, less trailing slashes."""
    path = os.fspath(path)
    return path.rstrip("/") if is_url(path) else os.path.abspath(path)


def join(base: str | os.PathLike, *parts: str) -> str:
    """`os.path.join` for local paths; for a URL, parts joined with '/' (never the OS separator)."""
    base = os.fspath(base)
    if not is_url(base):
        return os.path.join(base, *parts)
    return "/".join([base.rstrip("/")] + [p.strip("/") for p in parts if p])


def dirname(path: str | os.PathLike) -> str:
    """The parent of `path` (a URL keeps its scheme)."""
    path = os.fspath(path)
    return path.rstrip("/").rsplit("/", 1)[0] if is_url(path) else os.path.dirname(path)


def basename(path: str | os.PathLike) -> str:
    """The last component of `path`."""
    return os.fspath(path).rstrip("/").rsplit("/", 1)[-1]


def exists(path: str | os.PathLike) -> bool:
    """Whether a file or directory (for a URL: an object or a prefix) exists at `path`."""
    return _epath(path).exists() if is_url(path) else os.path.exists(path)


def lexists(path: str | os.PathLike) -> bool:
    """`exists`, counting a dangling local symlink as present."""
    return _epath(path).exists() if is_url(path) else os.path.lexists(path)


def isdir(path: str | os.PathLike) -> bool:
    """Whether `path` is a directory (for a URL: a prefix with objects under it)."""
    return _epath(path).is_dir() if is_url(path) else os.path.isdir(path)


def isfile(path: str | os.PathLike) -> bool:
    """Whether `path` is a regular file (for a URL: an object)."""
    return _epath(path).is_file() if is_url(path) else os.path.isfile(path)


def makedirs(path: str | os.PathLike) -> None:
    """Creates `path` and its parents if missing (`exist_ok`)."""
    if is_url(path):
        _epath(path).mkdir(parents=True, exist_ok=True)
    else:
        os.makedirs(path, exist_ok=True)


def listdir(path: str | os.PathLike) -> list[str]:
    """Names (not paths) of the entries directly under `path`, sorted.

    Raises:
      FileNotFoundError: `path` does not exist.
    """
    if is_url(path):
        p = _epath(path)
        if not p.exists():
            raise FileNotFoundError(f"{os.fspath(path)}: no such directory")
        return sorted(c.name for c in p.iterdir())
    return sorted(os.listdir(path))


def size(path: str | os.PathLike) -> int:
    """Size of the file at `path` in bytes (OSError if it cannot be stat'ed)."""
    return int(_epath(path).stat().length) if is_url(path) else os.stat(path).st_size


def open_file(path: str | os.PathLike, mode: str = "r", encoding: str | None = None) -> IO[Any]:
    """Opens `path` for reading or writing ("r", "rb", "w", "wb"); a URL opens through epath.

    Raises:
      ValueError: an append or update mode on a URL (object stores write objects whole: use
        `append_text`).
    """
    if not is_url(path):
        return open(path, mode, encoding=encoding)
    if "a" in mode or "+" in mode:
        raise ValueError(f"{os.fspath(path)}: mode {mode!r} is not available on an object store; expected 'r' "
                         f"or 'w' (use append_text to add lines)")
    return _epath(path).open(mode)


def read_bytes(path: str | os.PathLike, max_bytes: int | None = None) -> bytes:
    """The bytes of `path`, at most `max_bytes + 1` of them (the caller checks the limit)."""
    with open_file(path, "rb") as f:
        return f.read() if max_bytes is None else f.read(max_bytes + 1)


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    """Replaces `path` with `text` so that a reader never sees half of it.

    Local: a temporary file in the same directory, flushed and fsync'ed, then `os.replace`d over the
    target. URL: one whole-object write (object stores replace objects atomically).
    """
    path = os.fspath(path)
    if is_url(path):
        _epath(path).write_text(text)
        return
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def append_text(path: str | os.PathLike, text: str) -> None:
    """Adds `text` at the end of `path` (created if missing).

    Local: an append. URL: read, then write back whole (no appends on object stores); fine for the
    kilobyte logs it is used for.
    """
    if not is_url(path):
        with open(path, "a") as f:
            f.write(text)
        return
    p = _epath(path)
    old = p.read_text() if p.exists() else ""
    p.write_text(old + text)


def rename(src: str | os.PathLike, dst: str | os.PathLike) -> None:
    """Moves a file or directory (for URLs: copy then delete, object by object).

    Raises:
      FileExistsError: `dst` exists.
    """
    if is_url(src) or is_url(dst):
        _epath(src).rename(_epath(dst))
    else:
        if os.path.lexists(dst):
            raise FileExistsError(f"{os.fspath(dst)} exists; expected a free name to move {os.fspath(src)} to")
        os.rename(src, dst)


def remove(path: str | os.PathLike) -> None:
    """Deletes the file at `path` (FileNotFoundError if it is missing)."""
    if is_url(path):
        p = _epath(path)
        if not p.exists():
            raise FileNotFoundError(os.fspath(path))
        p.unlink()
    else:
        os.unlink(path)


def copy(src: str | os.PathLike, dst: str | os.PathLike) -> None:
    """Copies the file `src` to `dst` (either may be a URL), overwriting `dst`."""
    with open_file(src, "rb") as f:
        data = f.read()
    with open_file(dst, "wb") as f:
        f.write(data)


def local_data_dir(workdir: str) -> str:
    """Where a run builds its generated data when `data.data_dir` is empty.

    Local workdir: `<workdir>/data`. Cloud workdir: a local cache,
    `$RECUR_JAX_DATA_CACHE` or `~/.cache/recur_jax/data`, then a short hash of the workdir URL (TFDS and
    ArrayRecord write local files; every host builds the same deterministic splits).
    """
    if not is_url(workdir):
        return os.path.join(workdir, "data")
    root = os.environ.get("RECUR_JAX_DATA_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "recur_jax",
                                                                   "data")
    return os.path.join(root, hashlib.sha256(absolute(workdir).encode()).hexdigest()[:16])


__all__ = ["absolute", "append_text", "basename", "copy", "dirname", "exists", "is_url", "isdir", "isfile", "join",
           "lexists", "listdir", "local_data_dir", "makedirs", "open_file", "read_bytes", "remove", "rename", "size",
           "write_text_atomic"]
