"""Bit-packed binary matmul and conv2d: dot = K − 2·popcount(a XOR w), with an optional fused
output transform (per-channel multiplier and bias — a folded BatchNorm and scale — after an
optional clamp) and optional bit-packed output.

Layout (``bitpack``): LCE's 32-bit words, LSB first, bit 1 = −1, packed along the contraction
axis (input channels of NHWC activations; the I axis of HWIO kernels, per tap). Convolutions
pad with +1 by default (``pad_value=1``: free, a padded word is 0); ``pad_value=0`` (what the
PyTorch reference code computes) subtracts the padded taps' contribution afterwards, a per-
position, per-channel correction computed once from the kernel (LCE's zero-padding correction).

Backends (``backend.BACKENDS``): the Pallas kernel (compiled on GPU/TPU, interpreted anywhere),
the native CPU kernel (``kernels.cpu``: AVX-512 / AVX2 / scalar, the CPU default), plain XLA,
and ``*_reference`` functions that unpack to ±1 floats — the independent check. "auto" picks
per platform when the function is lowered (``kernels.platforms``). Each backend's options come
grouped (``kernels.options``): ``pallas=PallasOptions(...)``, ``native=NativeOptions(...)``.

The Pallas kernels (``PallasOptions.algorithm``):
  popcount  accumulates over K words one word at a time into an int32 (block_m, block_n) tile,
            acc += popcount(a[:, w] ⊕ b[w, :]): no integer reduction (unsupported on Mosaic
            TPU), both operands read as K-major slices. ``PallasOptions(popcount="swar")``
            replaces the popcount instruction for a backend without one.
  dot       (for GPU tensor cores) unpacks 32-word chunks of both operands to ±1 int8 bit
            planes on chip and sums the planes' int8 dots in int32: Σ_bit plane_a·plane_b is
            the same ±1 dot with K permuted identically on both sides, so it is exact.
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
from jax import lax
from jax.experimental import pallas as pl

from bnnlab.kernels import backend as backend_lib
from bnnlab.kernels import bitpack, cpu, patches
from bnnlab.kernels import options as options_lib
from bnnlab.kernels import platforms as platforms_lib
from bnnlab.kernels.bitpack import PackedBits
from bnnlab.kernels.options import DEFAULT_NATIVE, DEFAULT_PALLAS, NativeOptions, PallasOptions

Array = jax.Array


@dataclasses.dataclass(frozen=True)
class OutputTransform:
    """y = clamp(dot, lo, hi)·multiplier + bias, per output channel (folded BN and scales)."""

    multiplier: Array
    bias: Array
    clamp: tuple[float, float] | None = None


jax.tree_util.register_dataclass(
    OutputTransform, data_fields=["multiplier", "bias"], meta_fields=["clamp"]
)


def apply_transform(dot: Array, transform: OutputTransform | None) -> Array:
    if transform is None:
        return dot
    y = dot.astype(jnp.float32)
    if transform.clamp is not None:
        y = jnp.clip(y, *transform.clamp)
    return y * transform.multiplier + transform.bias


# --------------------------------------------------------------------------- matmul kernels

# Rows from which "auto" takes the tensor-core path on GPU. Below it the product is a GEMV in
# all but name: memory-bound, both paths read the same 1-bit weights, and the popcount path
# wastes no rows on the dot's 16-row minimum tile. An estimate until measured on hardware:
# ``benchmarks/device_check.py`` times both paths per shape.
DOT_MIN_ROWS = 64
WORD_CHUNK = 32  # words per tensor-core step: each bit plane is a K = 32 int8 dot


def _epilogue(dot, refs, transformed: bool, clamp):
    if transformed:
        m_ref, b_ref, o_ref = refs
        y = dot.astype(jnp.float32)
        if clamp is not None:
            y = jnp.clip(y, clamp[0], clamp[1])
        o_ref[...] = y * m_ref[...] + b_ref[...]
    else:
        (o_ref,) = refs
        o_ref[...] = dot


def _xnor_kernel(a_ref, bt_ref, *refs, k: int, words: int, count, transformed: bool, clamp):
    def word(w, acc):
        return acc + count(a_ref[:, pl.ds(w, 1)] ^ bt_ref[pl.ds(w, 1), :])

    acc = lax.fori_loop(0, words, word, jnp.zeros(refs[-1].shape, jnp.int32))
    _epilogue(k - 2 * acc, refs, transformed, clamp)


def _bit_plane(words: Array, bit: int) -> Array:
    """±1 int8 of bit ``bit`` of every word (bit 1 = −1)."""
    return 1 - 2 * ((words >> bit) & jnp.uint32(1)).astype(jnp.int8)


def _unpack_dot_kernel(a_ref, bt_ref, *refs, pad_bits: int, chunks: int, transformed, clamp):
    """acc += Σ_bit plane(a, bit)·plane(b, bit): the same ±1 dot with K permuted (bit-major
    within each chunk of words, the same permutation on both sides), on the tensor cores with
    exact int32 accumulation. Zero padding words and tail bits are +1 on both sides, so each
    adds exactly 1: ``pad_bits`` = 32·words − K is subtracted at the end."""

    def chunk(c, acc):
        start = pl.multiple_of(c * WORD_CHUNK, WORD_CHUNK)
        a = a_ref[:, pl.ds(start, WORD_CHUNK)]
        b = bt_ref[pl.ds(start, WORD_CHUNK), :]
        for bit in range(32):
            acc += jnp.dot(_bit_plane(a, bit), _bit_plane(b, bit), preferred_element_type=jnp.int32)
        return acc

    acc = lax.fori_loop(0, chunks, chunk, jnp.zeros(refs[-1].shape, jnp.int32))
    _epilogue(acc - pad_bits, refs, transformed, clamp)


def choose_algorithm(algorithm: str, platform: str, rows: int) -> str:
    """The Pallas matmul's inner product: "popcount" (XOR + popcount on vector/CUDA cores) or
    "dot" (unpack to ±1 int8 on chip, tensor-core dot); "auto": "dot" on GPU from
    ``DOT_MIN_ROWS`` rows, else "popcount". ``algorithm`` is a ``PallasOptions.algorithm``,
    checked when the options were made."""
    if algorithm != "auto":
        return algorithm
    gpu = platform in platforms_lib.GPU_PLATFORMS
    return "dot" if gpu and rows >= DOT_MIN_ROWS else "popcount"


def _matmul_pallas(
    a: Array, b: Array, k: int, transform, *, platform: str, options: PallasOptions
) -> Array:
    """``platform``: "cuda", "rocm", "tpu" (compiled) or "interpret"."""
    m, n = a.shape[0], b.shape[0]
    block_m, block_n = options.block_m, options.block_n
    algorithm = choose_algorithm(options.algorithm, platform, m)
    if algorithm == "dot":
        words = backend_lib.next_power_of_2(max(a.shape[1], WORD_CHUNK))
        block_m = max(16, min(block_m, backend_lib.next_power_of_2(m)))  # tl.dot's minimum
    else:
        words = backend_lib.next_power_of_2(a.shape[1])  # zero words add nothing
        if platform in platforms_lib.GPU_PLATFORMS:  # no padding a GEMV's row to 32
            block_m = min(block_m, backend_lib.next_power_of_2(m))
    mp, np_ = backend_lib.round_up(m, block_m), backend_lib.round_up(n, block_n)
    a = jnp.pad(a, [(0, mp - m), (0, words - a.shape[1])])
    bt = jnp.pad(b, [(0, np_ - n), (0, words - b.shape[1])]).T  # K-major: a word is a row
    in_specs = [
        pl.BlockSpec((block_m, words), lambda i, j: (i, 0)),
        pl.BlockSpec((words, block_n), lambda i, j: (0, j)),
    ]
    args = [a, bt]
    if transform is not None:
        for v in (transform.multiplier, transform.bias):
            args.append(jnp.pad(jnp.asarray(v, jnp.float32).reshape(1, n), [(0, 0), (0, np_ - n)]))
            in_specs.append(pl.BlockSpec((1, block_n), lambda i, j: (0, j)))
    epilogue = dict(
        transformed=transform is not None, clamp=None if transform is None else transform.clamp
    )
    if algorithm == "dot":
        kernel = functools.partial(
            _unpack_dot_kernel, pad_bits=32 * words - k, chunks=words // WORD_CHUNK, **epilogue
        )
    else:
        count = bitpack.popcount if options.popcount == "native" else bitpack.popcount_swar
        kernel = functools.partial(_xnor_kernel, k=k, words=words, count=count, **epilogue)
    interpret = platform == "interpret"
    out = pl.pallas_call(
        kernel,
        out_shape=jax.ShapeDtypeStruct((mp, np_), jnp.int32 if transform is None else jnp.float32),
        grid=(mp // block_m, np_ // block_n),
        in_specs=in_specs,
        out_specs=pl.BlockSpec((block_m, block_n), lambda i, j: (i, j)),
        interpret=interpret,
        compiler_params=None if interpret else platforms_lib.compiler_params(platform),
    )(*args)
    return out[:m, :n]


def _matmul_xla(a: Array, b: Array, k: int) -> Array:
    """Accumulates one word at a time: an (M, N) int32 plane, never (M, N, words)."""

    def word(w, acc):
        return acc + bitpack.popcount(a[:, w][:, None] ^ b[:, w][None, :])

    acc = lax.fori_loop(
        0, a.shape[1], word, jnp.zeros((a.shape[0], b.shape[0]), jnp.int32), unroll=4
    )
    return k - 2 * acc


@functools.partial(jax.jit, static_argnums=0, static_argnames="pallas")
def _matmul_by(kind: str, a, b, transform, native: NativeOptions, *, pallas: PallasOptions):
    """The product by one implementation: "xla", "native", or a Pallas platform (compiled for
    "cuda" / "rocm" / "tpu", or "interpret"), each reading only its own options. Jitted per
    shape (layers of one shape share a lowering); safe inside per-platform branches because
    ``kind`` names the platform: JAX reuses a nested jit's lowering for every platform of a
    multi-platform lowering, so a nested jit there must not decide the platform itself (as
    ``xnor_matmul`` does)."""
    if kind == "xla":
        dots = _matmul_xla(a.words, b.words, a.k)
    elif kind == "native":
        if native.b_panels is not None and cpu.panel_isa(native.isa) is not None:
            dots = cpu.matmul_panels(a.words, native.b_panels, a.k, b.words.shape[0], native.isa)
        else:
            dots = cpu.matmul(a.words, b.words, a.k, native.isa)
    else:
        return _matmul_pallas(a.words, b.words, a.k, transform, platform=kind, options=pallas)
    return apply_transform(dots, transform)


@functools.partial(jax.jit, static_argnames=("backend", "packed_output", "pallas"))
def xnor_matmul(
    a: PackedBits,
    b: PackedBits,
    transform: OutputTransform | None = None,
    *,
    backend: str = "auto",
    packed_output: bool = False,
    pallas: PallasOptions = DEFAULT_PALLAS,
    native: NativeOptions = DEFAULT_NATIVE,
):
    """(M, N) ±1 dot products of packed rows ``a`` (M, K) and ``b`` (N, K).

    Returns int32 dots, the float transform of them, or (``packed_output``) the signs of the
    transformed values packed along N (a per-channel threshold, written as bits). ``pallas``:
    the Pallas kernel's tiles and inner product (``PallasOptions``); ``native``: the native
    kernel's instruction set and ``b_panels`` = ``cpu.panels(b.words)``, laid out ahead of time
    (``NativeOptions``). Each is read only by its backend.
    """
    if a.k != b.k:
        raise ValueError(f"Packed operands have different K: {a.k} and {b.k}.")
    options_lib.check(pallas, native)
    impl = functools.partial(_matmul_by, pallas=pallas)
    xla, native_impl = functools.partial(impl, "xla"), functools.partial(impl, "native")
    out = backend_lib.run(
        backend, (a, b, transform, native), xla=xla, pallas=impl, native=native_impl
    )
    return bitpack.pack(out) if packed_output else out


def xnor_matmul_reference(a: PackedBits, b: PackedBits) -> Array:
    """Unpack to ±1 and multiply: the independent reference."""
    return jnp.dot(bitpack.unpack(a, jnp.int32), bitpack.unpack(b, jnp.int32).T)


# --------------------------------------------------------------------------- convolution


@dataclasses.dataclass(frozen=True)
class PackedKernel:
    """An HWIO binary kernel packed per tap along I: ``words`` (O, k_h·k_w·ceil(I/32)),
    ``tap_sums`` (k_h, k_w, 1, O) = Σ_i w (for the zero-padding correction), and optionally
    ``panels``, the words in the native vector kernels' layout (``native_layout``)."""

    words: Array
    tap_sums: Array
    shape: tuple[int, int, int, int]
    panels: Array | None = None

    @property
    def k(self) -> int:
        kh, kw, cin, _ = self.shape
        return kh * kw * cin

    @classmethod
    def from_words(cls, words: Array, shape) -> PackedKernel:
        """The kernel whose ``pack_kernel(w).words`` are ``words``, for HWIO ``shape``: tap sums
        recomputed from the bits (an export stores the words alone)."""
        kh, kw, cin, cout = shape
        words = jnp.asarray(words)
        signs = bitpack.unpack(PackedBits(words.reshape(cout, kh, kw, -1), cin))
        tap_sums = jnp.transpose(jnp.sum(signs, axis=-1, keepdims=True), (1, 2, 3, 0))
        return cls(words, tap_sums, tuple(shape))


jax.tree_util.register_dataclass(
    PackedKernel, data_fields=["words", "tap_sums", "panels"], meta_fields=["shape"]
)


def native_layout(kernel: PackedKernel) -> PackedKernel:
    """``kernel`` with its words also laid out for the native vector paths (done once, at load
    time), where this CPU has one (AVX2 or AVX-512); otherwise ``kernel`` unchanged."""
    if cpu.panel_isa() is None:
        return kernel
    return dataclasses.replace(kernel, panels=cpu.panels(kernel.words))


def kernel_words(w, xp=jnp):
    """The words of an HWIO kernel ``w``: (O, k_h·k_w·ceil(I/32)) uint32, each filter's signs
    packed per tap along I (``bitpack.pack_words``), taps in (k_h, k_w) order like the
    features of ``patches.patches``. ``xp``: ``jax.numpy``, or ``numpy`` for host-side packing
    (the export); the same words either way."""
    per_tap = bitpack.pack_words(xp.transpose(w, (3, 0, 1, 2)), xp)  # (O, kh, kw, words)
    return per_tap.reshape(w.shape[3], -1)


def pack_kernel(w: Array) -> PackedKernel:
    """Packs the signs of an HWIO kernel (sign(0) = +1)."""
    signs = jnp.where(w < 0, -1.0, 1.0)
    return PackedKernel(kernel_words(w), jnp.sum(signs, axis=2, keepdims=True), tuple(w.shape))


def _pad_correction(kernel: PackedKernel, in_spatial, strides, pads) -> Array:
    """(H', W', O): Σ over padded taps of Σ_i w, what +1 padding adds at each position."""
    outside = jnp.pad(
        jnp.zeros((1, *in_spatial, 1), jnp.float32), [(0, 0), *pads, (0, 0)], constant_values=1.0
    )
    corr = lax.conv_general_dilated(
        outside, kernel.tap_sums, strides, "VALID", dimension_numbers=("NHWC", "HWIO", "NHWC")
    )
    return corr[0].astype(jnp.int32)


def xnor_conv2d(
    x,
    kernel,
    transform: OutputTransform | None = None,
    *,
    strides=(1, 1),
    padding="SAME",
    pad_value: float = 1.0,
    backend: str = "auto",
    packed_output: bool = False,
    pallas: PallasOptions = DEFAULT_PALLAS,
    native: NativeOptions = DEFAULT_NATIVE,
):
    """Binary conv2d of NHWC activations and an HWIO kernel, both by their signs.

    ``x``: float NHWC (binarised by sign, sign(0) = +1) or ``PackedBits`` packed along C.
    ``kernel``: float HWIO or ``PackedKernel``. ``pad_value``: 1 (+1 padding, free) or 0 (zero
    padding, as the PyTorch reference code; corrected after the popcount). Returns int32 dot
    products (N, H', W', O), their ``transform``, or those signs packed along O. ``pallas``,
    ``native``: as for ``xnor_matmul``, except that the native kernel's weight panels come
    with ``kernel`` (``native_layout``), so ``native.b_panels`` must be None.
    """
    if pad_value not in (0.0, 1.0):
        raise ValueError(f"pad_value must be 0 or 1, got {pad_value!r}.")
    options_lib.check(pallas, native)
    if native.b_panels is not None:
        raise ValueError(
            "xnor_conv2d takes the native panels from its PackedKernel (xnor.native_layout); "
            "NativeOptions.b_panels is for xnor_matmul."
        )
    kernel = kernel if isinstance(kernel, PackedKernel) else pack_kernel(kernel)
    x = x if isinstance(x, PackedBits) else bitpack.pack(x)
    kh, kw, cin, cout = kernel.shape
    if x.k != cin:
        raise ValueError(f"Input has {x.k} channels, the kernel expects {cin}.")
    strides = tuple(strides)
    pads = patches.explicit_padding(padding, x.words.shape[1:3], (kh, kw), strides)
    correct = pad_value == 0.0 and any(p != (0, 0) for p in pads)
    n, (h, w) = x.words.shape[0], x.words.shape[1:3]
    ho = (h + sum(pads[0]) - kh) // strides[0] + 1
    wo = (w + sum(pads[1]) - kw) // strides[1] + 1

    # The branches below run in the lowering's own trace: they use their arguments, never
    # arrays closed over from this one.
    def finish(dots, kernel, transform, fused: bool):
        out = dots.reshape(n, ho, wo, cout)
        if correct:
            out = out - _pad_correction(kernel, (h, w), strides, pads)
        return out if fused else apply_transform(out, transform)

    def via_patches(kind):
        def run(x, kernel, transform):
            cols = patches.patches(x.words, (kh, kw), strides, pads)  # padded words are 0 → +1
            # The matmul fuses the transform unless the padding correction must come first.
            dots = _matmul_by(
                kind,
                PackedBits(cols.reshape(n * ho * wo, -1), kernel.k),
                PackedBits(kernel.words, kernel.k),
                None if correct else transform,
                NativeOptions(native.isa, kernel.panels if kind == "native" else None),
                pallas=pallas,
            )
            return finish(dots, kernel, transform, fused=not correct)

        return run

    def native_impl(x, kernel, transform):
        if kernel.panels is None or cpu.panel_isa(native.isa) is None:
            return via_patches("native")(x, kernel, transform)
        # Patches gathered inside the kernel, no patch matrix.
        dots = cpu.conv2d_panels(
            x.words, kernel.panels, kernel.k, cout, (kh, kw), strides, pads, (ho, wo), native.isa
        )
        return finish(dots, kernel, transform, fused=False)

    def pallas_impl(platform, x, kernel, transform):
        return via_patches(platform)(x, kernel, transform)

    out = backend_lib.run(
        backend,
        (x, kernel, transform),
        xla=via_patches("xla"),
        pallas=pallas_impl,
        native=native_impl,
    )
    return bitpack.pack(out) if packed_output else out


def xnor_conv2d_reference(
    x: Array, w: Array, *, strides=(1, 1), padding="SAME", pad_value: float = 1.0
) -> Array:
    """Float convolution of the ±1 tensors with explicit padding: the independent reference."""
    xb, wb = jnp.where(x < 0, -1.0, 1.0), jnp.where(w < 0, -1.0, 1.0)
    pads = patches.explicit_padding(padding, x.shape[1:3], w.shape[:2], tuple(strides))
    xb = jnp.pad(xb, [(0, 0), *pads, (0, 0)], constant_values=pad_value)
    y = lax.conv_general_dilated(
        xb,
        wb,
        tuple(strides),
        "VALID",
        dimension_numbers=("NHWC", "HWIO", "NHWC"),
        precision=lax.Precision.HIGHEST,
    )
    return jnp.round(y).astype(jnp.int32)


# ------------------------------------------------------------- differentiable wrappers


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3, 4, 5))
def binary_conv2d(
    x: Array,
    w: Array,
    strides=(1, 1),
    padding="SAME",
    pad_value: float = 0.0,
    backend: str = "auto",
) -> Array:
    """conv(sign(x), sign(w)) computed by the packed kernel, differentiable with the clipped
    straight-through estimator of the float layer: ∂/∂x = (∂L/∂y ⋆ sign(w))·1{|x| ≤ 1},
    ∂/∂w = (sign(x) ⋆ ∂L/∂y)·1{|w| ≤ 1}."""
    return xnor_conv2d(
        x, w, strides=strides, padding=padding, pad_value=pad_value, backend=backend
    ).astype(x.dtype)


def _float_ste_conv(x, w, strides, padding, pad_value):
    from bnnlab.quant import sign as sign_lib  # kernels sit beside quant; no cycle

    ste = sign_lib.SteSign()
    pads = patches.explicit_padding(padding, x.shape[1:3], w.shape[:2], tuple(strides))
    xb = jnp.pad(ste(x), [(0, 0), *pads, (0, 0)], constant_values=pad_value)
    return lax.conv_general_dilated(
        xb, ste(w), tuple(strides), "VALID", dimension_numbers=("NHWC", "HWIO", "NHWC")
    )


def _binary_conv2d_fwd(x, w, strides, padding, pad_value, backend):
    return binary_conv2d(x, w, strides, padding, pad_value, backend), (x, w)


def _binary_conv2d_bwd(strides, padding, pad_value, backend, residuals, g):
    del backend  # Unused: the backward is the float STE.
    x, w = residuals
    _, vjp = jax.vjp(lambda x, w: _float_ste_conv(x, w, strides, padding, pad_value), x, w)
    return vjp(g)


binary_conv2d.defvjp(_binary_conv2d_fwd, _binary_conv2d_bwd)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def binary_dense(x: Array, w: Array, backend: str = "auto") -> Array:
    """sign(x) @ sign(w) (w is (in, out)) by the packed kernel, with the float STE backward."""
    return xnor_matmul(bitpack.pack(x), bitpack.pack(w.T), backend=backend).astype(x.dtype)


def _binary_dense_fwd(x, w, backend):
    return binary_dense(x, w, backend), (x, w)


def _binary_dense_bwd(backend, residuals, g):
    del backend  # Unused.
    from bnnlab.quant import sign as sign_lib

    ste = sign_lib.SteSign()
    _, vjp = jax.vjp(lambda x, w: ste(x) @ ste(w), *residuals)
    return vjp(g)


binary_dense.defvjp(_binary_dense_fwd, _binary_dense_bwd)
