"""Runs a ``.tflite`` file in Larq Compute Engine's standalone interpreter, one image at a
time: ``python lce_runner.py MODEL.tflite IMAGES.npy OUT.npy [--reference] [--threads=N]
[--xnnpack] [--repeat=N]`` (``--repeat``: instead of outputs, OUT.npy gets the seconds of N
timed calls on the first batch, after one warm-up call).

Run by ``bnnlab.export.tflite.lce`` with the interpreter of LCE's own virtualenv: LCE 0.16's
extension is built against NumPy 1.x, which JAX (NumPy ≥ 2) cannot share a process with, so
this file imports NumPy and LCE only, never bnnlab. ``larq_compute_engine/__init__.py`` imports
its converter and through it TensorFlow; a bare package module in its place lets the
interpreter load without them.
"""

import importlib
import importlib.util
import sys
import types

import numpy as np


def interpreter_class():
    spec = importlib.util.find_spec("larq_compute_engine")
    if spec is None:
        raise SystemExit("error: larq_compute_engine is not installed in " + sys.executable)
    package = types.ModuleType("larq_compute_engine")
    package.__path__ = list(spec.submodule_search_locations)
    package.__spec__ = spec
    sys.modules.setdefault("larq_compute_engine", package)
    return importlib.import_module("larq_compute_engine.tflite.python.interpreter").Interpreter


def main(argv):
    model, images, out, *flags = argv
    reference = "--reference" in flags
    threads = next((int(f.split("=")[1]) for f in flags if f.startswith("--threads=")), 1)
    repeat = next((int(f.split("=")[1]) for f in flags if f.startswith("--repeat=")), 0)
    with open(model, "rb") as f:
        data = f.read()
    interpreter = interpreter_class()(
        data, num_threads=threads, use_reference_bconv=reference, use_xnnpack="--xnnpack" in flags
    ).interpreter
    ((batch, *_),) = interpreter.input_shapes
    x = np.load(images)
    if len(x) % batch:
        raise SystemExit(f"error: {len(x)} images do not split into batches of {batch}")
    if repeat:
        import time

        interpreter.predict([x[:batch]])
        times = []
        for _ in range(repeat):
            start = time.perf_counter()
            interpreter.predict([x[:batch]])
            times.append(time.perf_counter() - start)
        np.save(out, np.asarray(times))
        return
    outputs = [interpreter.predict([x[i : i + batch]])[0] for i in range(0, len(x), batch)]
    np.save(out, np.concatenate(outputs))


if __name__ == "__main__":
    main(sys.argv[1:])
