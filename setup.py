"""bnnlab: binary and low-precision neural networks in JAX/Flax.

A pure-Python package: the native CPU kernels (bnnlab/kernels/csrc/*.cc) ship as sources and are
compiled on first use against the installed jaxlib's XLA FFI headers (bnnlab/kernels/
native_build.py), so the install needs neither a compiler nor jaxlib in pip's build environment.
"""

import pathlib

from setuptools import find_packages, setup

HERE = pathlib.Path(__file__).parent

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
        # The .tflite writer: TFLite's flatc-generated schema builders, flexbuffers for LCE.
        "tflite>=2.18",
        "flatbuffers>=24",
    ],
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
