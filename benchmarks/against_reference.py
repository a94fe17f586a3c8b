"""Side-by-side CPU speed against the official PyTorch code: alternating rounds, the ratio with its spread.

    python benchmarks/against_reference.py --reference_src=~/TinyRecursiveModels \
        --reference_bench=PATH/ref_bench.py --reference_python=~/refvenv/bin/python --rounds=3

Each round runs, for every variant, our `launch.benchmark --config=experiments/bench.py:VARIANT` and then
the reference's timing script on the same settings (hidden 128, 4 heads, batch 32, float32, TRM H 3 x L 6,
HRM 4+4 layers), so both see the same machine load; nothing of the reference is in this repository.
Prints one JSON line per measurement, then a table: examples/s of each side per round and the ratio
ours / reference (mean, min, max over rounds), with the processor model, its ISA flags (AVX2, AVX-512,
AMX), the thread count and the library versions.

Getting the reference: `git clone https://github.com/SamsungSAILMontreal/TinyRecursiveModels` (it carries
both TRM and HRM) and a Python environment with torch (CPU wheels), pydantic and einops. The timing
script (`--reference_bench`) takes `REF_SRC --variant V [--compile]` and prints a JSON line with
`examples_per_s`; the steering repository's `tools/ref_bench.py` is one (`torch.compile` on by default
here, as the reference's pretrain.py does).
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys

from absl import app, flags

flags.DEFINE_string("reference_src", None, "A checkout of the official TinyRecursiveModels code.", required=True)
flags.DEFINE_string("reference_bench", None, "The reference timing script (see the module docstring).", required=True)
flags.DEFINE_string("reference_python", sys.executable, "The Python with torch, pydantic and einops.")
flags.DEFINE_list("variants", ["trm_att", "trm_mlp", "hrm"], "experiments/bench.py args to compare.")
flags.DEFINE_integer("rounds", 3, "Alternating rounds.", lower_bound=1)
flags.DEFINE_integer("iters", 7, "Timed steps of our benchmark per measurement.", lower_bound=1)
flags.DEFINE_bool("compile", True, "torch.compile the reference (its default in pretrain.py).")

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def cpu_description() -> dict[str, object]:
    """The processor model, its vector ISA flags and the thread count (Linux /proc/cpuinfo; else platform)."""
    model, isa = platform.processor() or platform.machine(), []
    try:
        with open("/proc/cpuinfo") as f:
            text = f.read()
        for line in text.splitlines():
            if line.startswith("model name") and model in ("", platform.machine(), platform.processor()):
                model = line.split(":", 1)[1].strip()
            if line.startswith("flags"):
                have = set(line.split(":", 1)[1].split())
                isa = [name for flag, name in (("avx2", "AVX2"), ("avx512f", "AVX-512"), ("avx512_bf16", "AVX-512-BF16"),
                                                ("amx_tile", "AMX")) if flag in have]
                break
    except OSError:
        pass
    return {"processor": model, "isa": isa, "threads": os.cpu_count()}


def _json_line(text: str, what: str) -> dict:
    for line in reversed(text.splitlines()):
        if line.startswith("{"):
            return json.loads(line)
    raise RuntimeError(f"{what} printed no JSON line; its output ended with: {text[-500:]}")


def ours(variant: str, iters: int) -> float:
    """Our examples/s for `experiments/bench.py:variant` (a fresh process, as a user runs it)."""
    cmd = [sys.executable, "-m", "launch.benchmark", f"--config=experiments/bench.py:{variant}", f"--iters={iters}",
           "--eval_iters=1"]
    out = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=1800)
    if out.returncode:
        raise RuntimeError(f"{' '.join(cmd)} failed: {out.stderr.strip().splitlines()[-1:]}")
    return float(_json_line(out.stdout, "launch.benchmark")["examples_per_s"])


def reference(variant: str, f) -> float:
    """The reference's examples/s for `variant` with its own timing script."""
    cmd = [f.reference_python, os.path.expanduser(f.reference_bench), os.path.expanduser(f.reference_src),
           "--variant", variant] + (["--compile"] if f.compile else [])
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=1800)
    if out.returncode:
        raise RuntimeError(f"{' '.join(cmd)} failed: {out.stderr.strip().splitlines()[-1:]}")
    return float(_json_line(out.stdout, "the reference timing script")["examples_per_s"])


def versions(reference_python: str) -> dict[str, str]:
    import jax
    import jaxlib

    torch = subprocess.run([reference_python, "-c", "import torch; print(torch.__version__)"], capture_output=True,
                           text=True).stdout.strip() or "unavailable"
    return {"python": platform.python_version(), "jax": jax.__version__, "jaxlib": jaxlib.__version__, "torch": torch}


def main(argv):
    del argv
    f = flags.FLAGS
    for path, flag in ((f.reference_src, "--reference_src"), (f.reference_bench, "--reference_bench")):
        if not os.path.exists(os.path.expanduser(path)):
            raise app.UsageError(f"{flag}={path}: no such file or directory")
    info = cpu_description() | versions(f.reference_python)
    print(json.dumps(info), flush=True)
    runs: dict[str, list[tuple[float, float]]] = {v: [] for v in f.variants}
    for r in range(f.rounds):
        for v in f.variants:
            a = ours(v, f.iters)
            b = reference(v, f)
            runs[v].append((a, b))
            print(json.dumps({"round": r + 1, "variant": v, "ours_examples_per_s": a, "reference_examples_per_s": b,
                              "ratio": a / b}), flush=True)
    print(f"\n{info['processor']} ({', '.join(info['isa']) or 'no AVX2'}), {info['threads']} threads; jax "
          f"{info['jax']}, torch {info['torch']}{' (compiled)' if f.compile else ''}\n")
    print("| variant | recur_jax ex/s | reference ex/s | ratio mean (min, max) |")
    print("| --- | --- | --- | --- |")
    for v, pairs in runs.items():
        ratios = [a / b for a, b in pairs]
        print(f"| {v} | {', '.join(f'{a:.1f}' for a, _ in pairs)} | {', '.join(f'{b:.1f}' for _, b in pairs)} | "
              f"{statistics.mean(ratios):.2f}x ({min(ratios):.2f}, {max(ratios):.2f}) |")


if __name__ == "__main__":
    app.run(main)
