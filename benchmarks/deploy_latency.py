"""Batch-1 latency of the ImageNet-size binary models as deployed, on this CPU, in one run.

    python benchmarks/deploy_latency.py [--repeats=20] [--models=bireal_r18,quicknet]

For Bi-Real ResNet-18 and QuickNet at 224×224×3 (random weights: speed does not depend on
them), one and two threads:

- **bnnlab packed**: ``export.load(...)(x)`` — the native XNOR kernel (AVX-512 here) for the
  binary convs, XLA for the rest, one jitted call;
- **XLA float32**: the same architecture with float convs, jitted;
- **TFLite float32 + XNNPACK**: the float model written by ``bnnlab.export.tflite`` and run by
  TFLite's interpreter with the XNNPACK delegate (the interpreter of LCE's wheel), the best
  float CPU runtime installable here;
- **LCE on x86**: the binary ``.tflite`` file in LCE's interpreter. On x86 LCE has no
  optimised binary kernels (its fast kernels are ARM's): a reference point, not LCE's speed.

Threads: bnnlab and XLA run in a child process pinned to 1 or 2 cores (``taskset``); TFLite
and LCE take ``num_threads``. Each number is the median of ``--repeats`` calls after a warm-up
call. LCE's published ARM numbers are printed beside them for context (other hardware).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import pathlib
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

ROOT = pathlib.Path(__file__).parents[1]
SHAPE = (224, 224, 3)
RECIPES = {"bireal_r18": ("bireal_r18", "imagenet"), "quicknet": ("quicknet", "")}
# LCE README (benchmarked 2021-06-11), single thread: QuickNet 25.5 ms Pixel 1, 45.0 ms
# Raspberry Pi 4B; no Bi-Real number is published there.
PUBLISHED = {"quicknet": "Pixel 1 25.5 ms, RPi 4B 45.0 ms (LCE README, 1 thread)"}


def _config(name: str):
    file, arg = RECIPES[name]
    spec = importlib.util.spec_from_file_location(file, ROOT / "experiments" / f"{file}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config(arg or None)


def _write_models(name: str, directory: pathlib.Path) -> None:
    """The binary and float exports (.npz) and their .tflite files."""
    import jax

    from bnnlab import export, models, runs
    from bnnlab.export import tflite

    config = _config(name)
    for kind in ("binary", "float"):
        ref = runs.model_ref(config, num_classes=1000)
        if kind == "float":
            ref["quant"] = dict(ref["quant"], kernel=None, inputs=None, scale=None)
        model = models.from_ref(ref)
        x = np.zeros((1, *SHAPE), np.float32)
        variables = jax.jit(lambda x, m=model: m.init(jax.random.key(0), x))(x)
        variables = {k: v for k, v in variables.items() if k != "intermediates"}
        npz = directory / f"{name}_{kind}.npz"
        export.export(ref, variables, SHAPE, npz, model=model)
        tflite.write(npz, directory / f"{name}_{kind}.tflite")


def _time_jax(directory: pathlib.Path, name: str, repeats: int) -> dict:
    """In the child process: bnnlab packed and XLA float32 latencies (seconds)."""
    import jax

    from bnnlab import export

    x = np.random.default_rng(0).uniform(0, 1, (1, *SHAPE)).astype(np.float32)
    out = {}
    for kind, key in (("binary", "bnnlab packed"), ("float", "XLA float32")):
        packed = export.load(directory / f"{name}_{kind}.npz")
        jax.block_until_ready(packed(x))
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            jax.block_until_ready(packed(x))
            times.append(time.perf_counter() - start)
        out[key] = statistics.median(times)
    return out


def _time_tflite(directory, name, repeats, threads) -> dict:
    from bnnlab.export.tflite import lce

    x = np.random.default_rng(0).uniform(0, 1, (1, *SHAPE)).astype(np.float32)
    float_file = directory / f"{name}_float.tflite"
    binary_file = directory / f"{name}_binary.tflite"
    return {
        "TFLite float32 + XNNPACK": float(
            np.median(lce.run(float_file, x, threads=threads, xnnpack=True, repeat=repeats))
        ),
        "LCE on x86": float(
            np.median(lce.run(binary_file, x, reference=False, threads=threads, repeat=repeats))
        ),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--models", default="bireal_r18,quicknet")
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--directory", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        result = _time_jax(pathlib.Path(args.directory), args.worker, args.repeats)
        print(json.dumps(result))
        return

    from bnnlab.export.tflite import lce

    if not lce.available():
        sys.exit("error: no LCE interpreter: python -m bnnlab.export.tflite.lce --setup")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        directory = pathlib.Path(tmp)
        for name in args.models.split(","):
            _write_models(name, directory)
            for threads in (1, 2):
                cores = ",".join(str(c) for c in range(threads))
                done = subprocess.run(
                    [
                        "taskset",
                        "-c",
                        cores,
                        sys.executable,
                        __file__,
                        f"--worker={name}",
                        f"--directory={directory}",
                        f"--repeats={args.repeats}",
                    ],
                    capture_output=True,
                    text=True,
                    check=True,
                )
                times = json.loads(done.stdout.strip().splitlines()[-1])
                times.update(_time_tflite(directory, name, args.repeats, threads))
                rows.append((name, threads, times))
    columns = ["bnnlab packed", "XLA float32", "TFLite float32 + XNNPACK", "LCE on x86"]
    print(
        "| model | threads | "
        + " | ".join(f"{c} ms" for c in columns)
        + " | XNNPACK float / bnnlab packed | LCE published (ARM) |"
    )
    print("|---|---:|" + "---:|" * len(columns) + "---:|---|")
    for name, threads, times in rows:
        cells = " | ".join(f"{1e3 * times[c]:.1f}" for c in columns)
        ratio = times["TFLite float32 + XNNPACK"] / times["bnnlab packed"]
        print(f"| {name} | {threads} | {cells} | {ratio:.2f}× | {PUBLISHED.get(name, '—')} |")


if __name__ == "__main__":
    main()
