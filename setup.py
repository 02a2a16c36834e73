"""bnnlab: binary and low-precision neural networks in JAX/Flax.

The build step also compiles the native CPU XNOR kernel (bnnlab/kernels/csrc/xnor_cpu.cc) with
the system C++ compiler against the XLA FFI headers shipped in jaxlib. If that fails (no
compiler, not x86-64), the install still succeeds with a warning and bnnlab uses its XLA path;
`python setup.py build_native` retries in place.
"""

import importlib.util
import os
import pathlib
import platform
import shutil
import subprocess
import sys
from typing import ClassVar

from setuptools import Command, find_packages, setup
from setuptools.command.build_py import build_py

HERE = pathlib.Path(__file__).parent
NATIVE_SOURCE = "bnnlab/kernels/csrc/xnor_cpu.cc"
NATIVE_LIBRARY = "bnnlab/kernels/_xnor_cpu.so"


def _ffi_include_dir():
    spec = importlib.util.find_spec("jaxlib")
    if spec is None or not spec.submodule_search_locations:
        return None
    include = pathlib.Path(next(iter(spec.submodule_search_locations))) / "include"
    return include if (include / "xla" / "ffi" / "api" / "ffi.h").exists() else None


def compile_native(target: pathlib.Path) -> bool:
    """Compiles the kernel to ``target``; warns and returns False on any failure."""

    def skip(why):
        print(
            f"WARNING: bnnlab native CPU kernel not built ({why}); the XLA path will be used.",
            file=sys.stderr,
        )
        return False

    if platform.machine().lower() not in ("x86_64", "amd64"):
        return skip(f"x86-64 only, this is {platform.machine()}")
    compiler = os.environ.get("CXX") or shutil.which("c++") or shutil.which("g++")
    if compiler is None:
        return skip("no C++ compiler found; set CXX")
    include = _ffi_include_dir()
    if include is None:
        return skip("jaxlib's XLA FFI headers not found")
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_suffix(".tmp.so")
    command = [
        compiler,
        "-O3",
        "-std=c++17",
        "-shared",
        "-fPIC",
        "-Wno-attributes",
        "-Wno-return-type",
        "-I",
        str(include),
        str(HERE / NATIVE_SOURCE),
        "-o",
        str(tmp),
    ]
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode == 0:
        os.replace(tmp, target)
        return True
    tmp.unlink(missing_ok=True)
    return skip(f"{compiler} failed:\n{result.stderr[-2000:]}")


class BuildPyWithNative(build_py):
    """build_py, then the native kernel (into the source tree for editable installs)."""

    def run(self):
        super().run()
        if getattr(self, "editable_mode", False):
            compile_native(HERE / NATIVE_LIBRARY)
        else:
            compile_native(pathlib.Path(self.build_lib) / NATIVE_LIBRARY)


class BuildNative(Command):
    """`python setup.py build_native`: (re)build the kernel in place."""

    description = "compile the native CPU XNOR kernel in place"
    user_options: ClassVar[list] = []

    def initialize_options(self):
        pass

    def finalize_options(self):
        pass

    def run(self):
        if not compile_native(HERE / NATIVE_LIBRARY):
            raise SystemExit(1)


setup(
    name="bnnlab",
    version="0.1.0",
    description="Binary and low-precision neural networks in JAX/Flax: quantizers, layers, "
    "paper recipes, diagnostics and bit-packed kernels.",
    long_description=(HERE / "README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    packages=find_packages(include=["bnnlab", "bnnlab.*"]),
    install_requires=[
        "jax>=0.10.2",
        "flax>=0.12",
        "optax>=0.2.5",
        "orbax-checkpoint>=0.11",
        "chex>=0.1.90",
        "absl-py>=2.0",
        "ml_collections>=1.0",
        "numpy>=1.26",
        "scikit-learn>=1.4",
        "tensorflow-datasets>=4.9.6",
        "array-record>=0.5",
        "grain>=0.2.12",
        "tensorboardX>=2.6",
        "tqdm>=4.60",
        "rich>=13",
        "pillow>=10",
        "matplotlib>=3.7",
    ],
    cmdclass={"build_py": BuildPyWithNative, "build_native": BuildNative},
    package_data={"bnnlab.kernels": ["csrc/*.cc"]},
    extras_require={
        "test": [
            "pytest>=8",
            "pytest-xdist>=3.5",
            "hypothesis>=6.100",
            "ruff>=0.6",
            "portpicker>=1.6",
        ],
    },
)
