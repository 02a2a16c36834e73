"""Bit-packed XNOR-popcount and AdderNet L1 kernels: Pallas (compiled on GPU/TPU, interpreted
anywhere), plain XLA, and a pure-jnp reference per op.

  bitpack    pack/unpack ±1 tensors in Larq Compute Engine's 32-bit layout; popcount, SWAR
  xnor       xnor_matmul, xnor_conv2d (fused output transform, packed output), the
             differentiable binary_conv2d / binary_dense (straight-through backward)
  adder      adder_conv2d, the AdderNet layer's op with its gradients
  backend    the ``backend="auto" | "pallas" | "interpret" | "xla" | "native"`` choice,
             resolved once per call
  options    PallasOptions, NativeOptions: each backend's options of the XNOR ops
  platforms  which implementation runs on the platform being lowered for
  patches    im2col from strided slices
  cpu        the native CPU kernel
  native_build  compiles the C++ kernels on first use, into a cache (``build``: ahead of time)
"""

from bnnlab.kernels import adder, backend, bitpack, options, patches, xnor
from bnnlab.kernels.bitpack import PackedBits, pack, unpack
from bnnlab.kernels.options import NativeOptions, PallasOptions
from bnnlab.kernels.xnor import (
    OutputTransform,
    PackedKernel,
    binary_conv2d,
    binary_dense,
    pack_kernel,
    xnor_conv2d,
    xnor_matmul,
)

__all__ = [
    "NativeOptions",
    "OutputTransform",
    "PackedBits",
    "PackedKernel",
    "PallasOptions",
    "adder",
    "backend",
    "binary_conv2d",
    "binary_dense",
    "bitpack",
    "options",
    "pack",
    "pack_kernel",
    "patches",
    "unpack",
    "xnor",
    "xnor_conv2d",
    "xnor_matmul",
]
