"""The native CPU XNOR-popcount matmul (``csrc/xnor_cpu.cc``), an XLA FFI custom call.

``pip install -e .`` compiles it with the system C++ compiler into ``_xnor_cpu.so`` beside this
file (``setup.py``'s build step; ``python setup.py build_native`` rebuilds it). It runs inside
``jit`` like any XLA op and picks its instruction set at run time: AVX-512 VPOPCNTDQ, AVX2, or
portable scalar code (``isa`` forces one). When the library is missing or fails to load,
``available()`` is False with the reason in ``unavailable_reason()``, and ``backend="auto"``
falls back to the XLA path with one warning.
"""

from __future__ import annotations

import ctypes
import functools
import pathlib

import jax
import jax.numpy as jnp
import numpy as np

LIBRARY = pathlib.Path(__file__).with_name("_xnor_cpu.so")
TARGET = "bnnlab_xnor_matmul"
PANELS_TARGET = "bnnlab_xnor_matmul_panels"
CONV_TARGET = "bnnlab_xnor_conv2d_panels"
ISAS = ("auto", "scalar", "avx2", "avx512")  # index = the kernel's `isa` attribute


@functools.cache
def _load() -> tuple[ctypes.CDLL | None, str | None]:
    if not LIBRARY.exists():
        return None, (
            f"{LIBRARY.name} was not built (no C++ compiler at install time?); reinstall with "
            "`pip install -e .` or run `python setup.py build_native`"
        )
    try:
        lib = ctypes.CDLL(str(LIBRARY))
        for target, symbol in (
            (TARGET, lib.BnnlabXnorMatmul),
            (PANELS_TARGET, lib.BnnlabXnorMatmulPanels),
            (CONV_TARGET, lib.BnnlabXnorConv2dPanels),
        ):
            jax.ffi.register_ffi_target(target, jax.ffi.pycapsule(symbol), platform="cpu")
    except (OSError, AttributeError, ValueError) as e:
        return None, f"{LIBRARY.name} failed to load: {e}"
    lib.bnnlab_supported_isas.restype = ctypes.c_int64
    return lib, None


def available() -> bool:
    return _load()[0] is not None


def unavailable_reason() -> str | None:
    return _load()[1]


def supported_isas() -> tuple[str, ...]:
    """The instruction-set paths this CPU runs (best last); empty without the library."""
    lib, _ = _load()
    if lib is None:
        return ()
    bits = lib.bnnlab_supported_isas()
    return tuple(name for i, name in enumerate(ISAS) if i and bits >> i & 1)


def matmul(a: jax.Array, b: jax.Array, k: int, isa: str = "auto") -> jax.Array:
    """(M, N) int32 k − 2·popcount(a[i] ⊕ b[j]) of packed words a (M, W), b (N, W)."""
    if isa not in ISAS:
        raise ValueError(f"Unknown instruction set {isa!r}; use one of {ISAS}.")
    lib, reason = _load()
    if lib is None:
        raise RuntimeError(f"The native CPU kernel is unavailable: {reason}.")
    if isa != "auto" and isa not in supported_isas():
        raise ValueError(f"This CPU cannot run the {isa!r} path; it supports {supported_isas()}.")
    call = jax.ffi.ffi_call(
        TARGET, jax.ShapeDtypeStruct((a.shape[0], b.shape[0]), jnp.int32), vmap_method="sequential"
    )
    return call(
        a.astype(jnp.uint32), b.astype(jnp.uint32), k=np.int64(k), isa=np.int64(ISAS.index(isa))
    )


def panels(b: jax.Array) -> jax.Array:
    """``b`` (N, W) words in the AVX-512 path's layout: (ceil(N/8), ceil(W/2)·16) uint32, i.e.
    (N/8, W/2, 8) uint64 with 64-bit word t of row 8g + lane at [g, t, lane]. Built once for
    a layer's weights (``xnor.native_layout``) instead of on every call."""
    n, w = b.shape
    g, w64 = -(-n // 8), -(-w // 2)
    b = jnp.pad(b.astype(jnp.uint32), [(0, 8 * g - n), (0, 2 * w64 - w)])
    return b.reshape(g, 8, w64, 2).transpose(0, 2, 1, 3).reshape(g, w64 * 16)


def matmul_panels(a: jax.Array, b_panels: jax.Array, k: int, n: int) -> jax.Array:
    """``matmul`` with ``b`` given as ``panels(b)`` (AVX-512 path only)."""
    if "avx512" not in supported_isas():
        raise ValueError(
            f"Panel-layout weights need the avx512 path; this CPU has {supported_isas()}."
        )
    call = jax.ffi.ffi_call(
        PANELS_TARGET, jax.ShapeDtypeStruct((a.shape[0], n), jnp.int32), vmap_method="sequential"
    )
    return call(a.astype(jnp.uint32), b_panels, k=np.int64(k), n=np.int64(n))


def conv2d_panels(
    x: jax.Array, b_panels: jax.Array, k: int, n: int, kernel_size, strides, pads, out_spatial
) -> jax.Array:
    """Binary conv2d of packed NHWC words ``x`` (N, H, W, C/32) with an HWIO kernel given as
    ``panels`` of its (O, k_h·k_w·C/32) words, +1 padding; (N·H'·W', O) int32 dot products.
    Patches are gathered inside the kernel (AVX-512 path only)."""
    if "avx512" not in supported_isas():
        raise ValueError(f"The native conv needs the avx512 path; this CPU has {supported_isas()}.")
    (kh, kw), (sh, sw), ((pt, _), (pl, _)), (ho, wo) = kernel_size, strides, pads, out_spatial
    call = jax.ffi.ffi_call(
        CONV_TARGET,
        jax.ShapeDtypeStruct((x.shape[0] * ho * wo, n), jnp.int32),
        vmap_method="sequential",
    )
    ints = dict(k=k, n=n, kh=kh, kw=kw, sh=sh, sw=sw, pt=pt, pl=pl, ho=ho, wo=wo)
    return call(x.astype(jnp.uint32), b_panels, **{a: np.int64(v) for a, v in ints.items()})
