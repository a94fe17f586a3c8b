"""Parity check against golden values of the official PyTorch code.

Usage: python -m launch.parity FILE.npz [FILE.npz ...]

Prints one JSON line per file with the worst relative errors per quantity and whether
halted/steps agree at every step; exits 1 if any file is outside the fixtures' tolerances,
2 if a file cannot be read.
"""

import json
import os
import sys
import zipfile

from absl import app


def main(argv):
    os.environ.setdefault("JAX_PLATFORMS", "cpu")
    import jax

    jax.config.update("jax_default_matmul_precision", "highest")
    from recur_jax.parity import check_file

    files = argv[1:]
    if not files:
        print("usage: python -m launch.parity FILE.npz [FILE.npz ...]", file=sys.stderr)
        return 2
    status = 0
    for f in files:
        try:
            report = check_file(f)
        except (OSError, ValueError, KeyError, zipfile.BadZipFile) as e:
            print(json.dumps({"file": f, "ok": False, "error": str(e)}))
            status = max(status, 2)
            continue
        print(json.dumps(report))
        if not report["ok"]:
            status = max(status, 1)
    return status


if __name__ == "__main__":
    app.run(main)
