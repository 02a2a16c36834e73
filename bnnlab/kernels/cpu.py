"""The native CPU XNOR-popcount matmul (``csrc/xnor_cpu.cc``), an XLA FFI custom call.

Its first use compiles it with the system C++ compiler against the installed jaxlib's headers,
into a cache (``native_build``; a few seconds, once per source and jaxlib). It runs inside
``jit`` like any XLA op and picks its instruction set at run time: AVX-512 VPOPCNTDQ, AVX2, or
portable scalar code (``isa`` forces one; the environment variable ``BNNLAB_CPU_ISA=scalar|avx2``
caps the choice, e.g. to run as on an older CPU). When it cannot be built or fails to load,
``available()`` is False with the reason in ``unavailable_reason()``, and ``backend="auto"``
falls back to the XLA path with one warning.
"""

from __future__ import annotations

import ctypes
import functools
import os

import jax
import jax.numpy as jnp
import numpy as np

from bnnlab.kernels import native_build

SOURCE = "xnor_cpu"
TARGET = "bnnlab_xnor_matmul"
PANELS_TARGET = "bnnlab_xnor_matmul_panels"
CONV_TARGET = "bnnlab_xnor_conv2d_panels"
ISAS = ("auto", "scalar", "avx2", "avx512")  # index = the kernel's `isa` attribute


@functools.cache
def _load() -> tuple[ctypes.CDLL | None, str | None]:
    try:
        library = native_build.build(SOURCE)
    except native_build.BuildFailed as e:
        return None, f"the native kernel could not be built: {e}"
    try:
        lib = ctypes.CDLL(str(library))
        for target, symbol in (
            (TARGET, lib.BnnlabXnorMatmul),
            (PANELS_TARGET, lib.BnnlabXnorMatmulPanels),
            (CONV_TARGET, lib.BnnlabXnorConv2dPanels),
        ):
            jax.ffi.register_ffi_target(target, jax.ffi.pycapsule(symbol), platform="cpu")
    except (OSError, AttributeError, ValueError) as e:
        return None, f"{library} failed to load: {e}"
    lib.bnnlab_supported_isas.restype = ctypes.c_int64
    return lib, None


def available() -> bool:
    return _load()[0] is not None


def unavailable_reason() -> str | None:
    return _load()[1]


def supported_isas() -> tuple[str, ...]:
    """The instruction-set paths this CPU runs (best last), up to ``$BNNLAB_CPU_ISA`` if set;
    empty without the library."""
    lib, _ = _load()
    if lib is None:
        return ()
    bits = lib.bnnlab_supported_isas()
    cap = os.environ.get("BNNLAB_CPU_ISA", "avx512")
    if cap not in ISAS[1:]:
        raise ValueError(f"BNNLAB_CPU_ISA={cap!r}; use one of {ISAS[1:]}.")
    return tuple(name for i, name in enumerate(ISAS) if 0 < i <= ISAS.index(cap) and bits >> i & 1)


def matmul(a: jax.Array, b: jax.Array, k: int, isa: str = "auto") -> jax.Array:
    """(M, N) int32 k − 2·popcount(a[i] ⊕ b[j]) of packed words a (M, W), b (N, W)."""
    if isa not in ISAS:
        raise ValueError(f"Unknown instruction set {isa!r}; use one of {ISAS}.")
    lib, reason = _load()
    if lib is None:
        raise RuntimeError(f"The native CPU kernel is unavailable: {reason}.")
    if isa != "auto" and isa not in supported_isas():
        raise ValueError(f"This CPU cannot run the {isa!r} path; it supports {supported_isas()}.")
    isa = supported_isas()[-1] if isa == "auto" else isa  # the best path, within the cap
    call = jax.ffi.ffi_call(
        TARGET, jax.ShapeDtypeStruct((a.shape[0], b.shape[0]), jnp.int32), vmap_method="sequential"
    )
    return call(
        a.astype(jnp.uint32), b.astype(jnp.uint32), k=np.int64(k), isa=np.int64(ISAS.index(isa))
    )


def panels(b: jax.Array) -> jax.Array:
    """``b`` (N, W) words in the vector paths' layout: (ceil(N/8), ceil(W/2)·16) uint32, i.e.
    (N/8, W/2, 8) uint64 with 64-bit word t of row 8g + lane at [g, t, lane]. Built once for
    a layer's weights (``xnor.native_layout``) instead of on every call."""
    n, w = b.shape
    g, w64 = -(-n // 8), -(-w // 2)
    b = jnp.pad(b.astype(jnp.uint32), [(0, 8 * g - n), (0, 2 * w64 - w)])
    return b.reshape(g, 8, w64, 2).transpose(0, 2, 1, 3).reshape(g, w64 * 16)


def panel_isa(isa: str = "auto") -> str | None:
    """The vector path ("avx512" or "avx2") that runs panel-layout weights for ``isa``, or None
    (scalar requested, or no vector path on this CPU)."""
    have = supported_isas()
    if isa == "auto":
        return next((p for p in ("avx512", "avx2") if p in have), None)
    return isa if isa in ("avx512", "avx2") and isa in have else None


def _panel_isa_or_raise(isa: str) -> int:
    resolved = panel_isa(isa)
    if resolved is None:
        raise ValueError(
            f"Panel-layout weights need the avx2 or avx512 path (asked {isa!r}); this CPU runs "
            f"{supported_isas()}."
        )
    return ISAS.index(resolved)


def matmul_panels(
    a: jax.Array, b_panels: jax.Array, k: int, n: int, isa: str = "auto"
) -> jax.Array:
    """``matmul`` with ``b`` given as ``panels(b)`` (vector paths only)."""
    isa_index = _panel_isa_or_raise(isa)
    call = jax.ffi.ffi_call(
        PANELS_TARGET, jax.ShapeDtypeStruct((a.shape[0], n), jnp.int32), vmap_method="sequential"
    )
    return call(
        a.astype(jnp.uint32), b_panels, k=np.int64(k), n=np.int64(n), isa=np.int64(isa_index)
    )


def conv2d_panels(
    x: jax.Array,
    b_panels: jax.Array,
    k: int,
    n: int,
    kernel_size,
    strides,
    pads,
    out_spatial,
    isa: str = "auto",
) -> jax.Array:
    """Binary conv2d of packed NHWC words ``x`` (N, H, W, C/32) with an HWIO kernel given as
    ``panels`` of its (O, k_h·k_w·C/32) words, +1 padding; (N·H'·W', O) int32 dot products.
    Patches are gathered inside the kernel (vector paths only)."""
    isa_index = _panel_isa_or_raise(isa)
    (kh, kw), (sh, sw), ((pt, _), (pl, _)), (ho, wo) = kernel_size, strides, pads, out_spatial
    call = jax.ffi.ffi_call(
        CONV_TARGET,
        jax.ShapeDtypeStruct((x.shape[0] * ho * wo, n), jnp.int32),
        vmap_method="sequential",
    )
    ints = dict(k=k, n=n, kh=kh, kw=kw, sh=sh, sw=sw, pt=pt, pl=pl, ho=ho, wo=wo, isa=isa_index)
    return call(x.astype(jnp.uint32), b_panels, **{a: np.int64(v) for a, v in ints.items()})
