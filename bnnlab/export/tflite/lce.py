"""Larq Compute Engine's interpreter as an oracle for ``.tflite`` exports, run in its own
virtualenv (LCE 0.16 needs NumPy < 2, JAX needs NumPy ≥ 2).

  python -m bnnlab.export.tflite.lce --setup      # once: the virtualenv, ~290 MB
  logits = lce.run("model.tflite", images)        # images as the file's input takes them

The virtualenv is ``$BNNLAB_LCE_PYTHON`` (its interpreter) if set, else
``~/.cache/bnnlab/lce``. On x86 LCE runs its portable kernels: bit-exact, not a speed
benchmark; ``reference=True`` picks its reference binary conv, the one whose zero padding is
exact (the optimised kernels correct it in float, within ~1e-4).
"""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys
import tempfile

import numpy as np

LCE_REQUIREMENTS = ("larq-compute-engine==0.16.0", "numpy<2")
RUNNER = pathlib.Path(__file__).with_name("lce_runner.py")


class LCEUnavailable(RuntimeError):
    """No LCE virtualenv here (the message says how to make one)."""


class LCEFailed(RuntimeError):
    """LCE refused or crashed on a file (the message carries its error)."""


def venv_dir() -> pathlib.Path:
    return pathlib.Path.home() / ".cache" / "bnnlab" / "lce"


def python() -> pathlib.Path:
    chosen = os.environ.get("BNNLAB_LCE_PYTHON")
    if chosen:
        return pathlib.Path(chosen)
    return venv_dir() / "bin" / "python"


def available() -> bool:
    return python().exists()


def setup(directory: pathlib.Path | None = None) -> pathlib.Path:
    """Makes the LCE virtualenv (idempotent); returns its Python."""
    directory = directory or venv_dir()
    exe = directory / "bin" / "python"
    if not exe.exists():
        subprocess.run([sys.executable, "-m", "venv", str(directory)], check=True)
    subprocess.run(
        [
            str(exe),
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            *LCE_REQUIREMENTS,
        ],
        check=True,
    )
    check = subprocess.run(
        [
            str(exe),
            "-c",
            f"import runpy; runpy.run_path({str(RUNNER)!r}, run_name='x')['interpreter_class']()",
        ],
        capture_output=True,
        text=True,
    )
    if check.returncode != 0:
        raise LCEFailed(f"LCE's interpreter does not load in {exe}: {check.stderr[-1500:]}")
    return exe


def run(
    model_path,
    images,
    reference: bool = True,
    threads: int = 1,
    xnnpack: bool = False,
    repeat: int = 0,
) -> np.ndarray:
    """The file's outputs for ``images`` (float32, the file's input shape less the batch),
    run batch by batch in LCE's interpreter; ``repeat`` > 0: the seconds of that many timed
    calls on the first batch instead (``xnnpack``: TFLite's XNNPACK delegate on the float
    ops)."""
    exe = python()
    if not exe.exists():
        raise LCEUnavailable(
            f"no LCE interpreter at {exe}: run `python -m bnnlab.export.tflite.lce --setup` "
            "(or point BNNLAB_LCE_PYTHON at a Python with larq-compute-engine 0.16 and numpy<2)"
        )
    with tempfile.TemporaryDirectory() as tmp:
        inputs, outputs = pathlib.Path(tmp, "in.npy"), pathlib.Path(tmp, "out.npy")
        np.save(inputs, np.ascontiguousarray(images, np.float32))
        flags = [f"--threads={threads}", f"--repeat={repeat}"]
        flags += ["--reference"] * reference + ["--xnnpack"] * xnnpack
        done = subprocess.run(
            [str(exe), str(RUNNER), str(model_path), str(inputs), str(outputs), *flags],
            capture_output=True,
            text=True,
        )
        if done.returncode != 0:
            how = f"signal {-done.returncode}" if done.returncode < 0 else done.returncode
            raise LCEFailed(
                f"LCE's interpreter failed on {model_path} (exit {how}): {done.stderr[-2000:]}"
            )
        return np.load(outputs)


def main(argv) -> int:
    if argv[1:] != ["--setup"]:
        print("usage: python -m bnnlab.export.tflite.lce --setup", file=sys.stderr)
        return 2
    print(setup())
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
