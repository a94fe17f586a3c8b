"""A local emulation of Google Cloud Storage for offline tests: `gs://bucket/key` lives at `<root>/bucket/key`.

`install(root)` routes both ways a run reaches `gs://` to the same local directory:
  * fsspec's "gs"/"gcs" protocol (what `etils.epath`, and so `recur_jax.io.paths` and Orbax's metadata
    files, use): `FakeGCS`, a `DirFileSystem` over `root` that refuses appends as GCS does;
  * Orbax's TensorStore array writes: `gcs_utils.get_kvstore_for_gcs` returns a `file` kvstore under
    `root` instead of the `gcs` driver, and the bucket is flat (no hierarchical namespace).
`uninstall()` puts the originals back. Nothing reaches the network.

Run a command on it (e.g. to try a cloud workdir by hand):
  python tests/fake_gcs.py --root=/tmp/fake_gcs -m launch.main --workdir=gs://bucket/run
"""

from __future__ import annotations

import io
import os
import runpy
import sys
import tempfile

import fsspec
from fsspec.implementations.dirfs import DirFileSystem
from fsspec.implementations.local import LocalFileSystem

_ROOT: str | None = None
_SAVED: dict = {}


class FakeGCS(DirFileSystem):
    """`gs://bucket/key` -> `<root>/bucket/key`; paths come back as `bucket/key`, as gcsfs returns them."""

    protocol = ("gs", "gcs")
    cachable = False

    def __init__(self, *args, finalize_on_close: bool = False, **kwargs):  # epath passes finalize_on_close
        if _ROOT is None:
            raise RuntimeError("fake_gcs.install(root) was not called")
        super().__init__(path=_ROOT, fs=LocalFileSystem(auto_mkdir=True))

    @classmethod
    def _strip_protocol(cls, path):
        path = os.fspath(path)
        for prefix in ("gs://", "gcs://"):
            if path.startswith(prefix):
                path = path[len(prefix):]
        return path.rstrip("/")

    def _open(self, path, mode="rb", *args, **kwargs):
        return self.open(path, mode, *args, **kwargs)

    def open(self, path, mode="rb", *args, **kwargs):
        """Reads as a local file; a write becomes visible whole at close (GCS uploads an object in one
        piece: a reader sees the old object or the new one)."""
        if "a" in mode or "+" in mode:
            raise NotImplementedError(f"{path}: GCS objects cannot be opened in mode {mode!r}")
        if "w" not in mode and "x" not in mode:
            return super().open(path, mode, *args, **kwargs)
        target = self._join(self._strip_protocol(path))
        obj = _Upload(target)
        return obj if "b" in mode else io.TextIOWrapper(obj, encoding=kwargs.get("encoding") or "utf-8")


class _Upload(io.BytesIO):
    """Bytes buffered until close, then moved into place atomically (temporary file + os.replace)."""

    def __init__(self, target: str):
        super().__init__()
        self.target = target

    def close(self) -> None:
        if not self.closed:
            os.makedirs(os.path.dirname(self.target), exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=os.path.dirname(self.target), prefix=".upload.")
            with os.fdopen(fd, "wb") as f:
                f.write(self.getvalue())
            os.replace(tmp, self.target)
        super().close()


def install(root: str) -> None:
    """Serves `gs://` from the local directory `root` (created) until `uninstall()`."""
    global _ROOT
    from etils.epath import backend
    from orbax.checkpoint._src.path import gcs_utils

    _ROOT = os.path.abspath(root)
    os.makedirs(_ROOT, exist_ok=True)
    if not _SAVED:
        _SAVED.update(kvstore=gcs_utils.get_kvstore_for_gcs, hns=gcs_utils.is_hierarchical_namespace_enabled,
                      registry={p: fsspec.registry.get(p) for p in ("gs", "gcs")})

    def kvstore(path: str) -> dict:
        bucket, key = gcs_utils.parse_gcs_path(path, add_trailing_slash=False)
        return {"driver": "file", "path": os.path.join(_ROOT, bucket, key)}

    gcs_utils.get_kvstore_for_gcs = kvstore
    gcs_utils.is_hierarchical_namespace_enabled = lambda path: False
    for p in ("gs", "gcs"):
        fsspec.register_implementation(p, FakeGCS, clobber=True)
    backend.fsspec_backend._get_filesystem.cache_clear()


def uninstall() -> None:
    """Restores fsspec's gs/gcs protocols and Orbax's GCS functions."""
    global _ROOT
    from etils.epath import backend
    from orbax.checkpoint._src.path import gcs_utils

    if not _SAVED:
        return
    gcs_utils.get_kvstore_for_gcs = _SAVED["kvstore"]
    gcs_utils.is_hierarchical_namespace_enabled = _SAVED["hns"]
    for p, impl in _SAVED["registry"].items():
        if impl is None:
            from fsspec.registry import _registry

            _registry.pop(p, None)  # loaded lazily again from fsspec's known implementations
        else:
            fsspec.register_implementation(p, impl, clobber=True)
    backend.fsspec_backend._get_filesystem.cache_clear()
    _SAVED.clear()
    _ROOT = None


def main(argv: list[str]) -> None:
    """`--root=DIR -m MODULE ARGS...`: runs MODULE as __main__ with gs:// served from DIR."""
    if len(argv) < 3 or not argv[0].startswith("--root=") or argv[1] != "-m":
        raise SystemExit("usage: python tests/fake_gcs.py --root=DIR -m MODULE [ARGS...]")
    install(argv[0].split("=", 1)[1])
    sys.argv = [argv[2], *argv[3:]]
    sys.path.insert(0, os.getcwd())
    runpy.run_module(argv[2], run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main(sys.argv[1:])
