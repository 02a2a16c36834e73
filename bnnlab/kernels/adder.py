"""The AdderNet L1 "convolution" Y = −Σ|X − F| as kernels: XLA, Pallas (compiled or
interpreted) and a broadcast reference, plus the custom VJP the layer uses.

On im2col patches P (R, K) and filters F (K, C_out):
  Y[r, o] = −Σ_k |P[r, k] − F[k, o]|                       (padded taps count |F|)
  ∂L/∂F  = Σ_r G[r, o]·(P[r, k] − F[k, o])                  (full precision, not sgn)
         = (P − P̄)ᵀ G + (P̄ − F)·Σ_r G,  P̄[k] = mean_r P[r, k]   (one matmul, no cancellation)
  ∂L/∂P[r, k] = Σ_o G[r, o]·clip(F[k, o] − P[r, k], −1, 1)  (HardTanh-clipped)

Why centre P: the uncentred identity PᵀG − F·ΣG subtracts two terms of size |P|·Σ|G| to get a
result of size |P − F|·√R·|G|; when patches and filters share an offset (AdderNet filters move
towards the patches they match) it loses digits (2.7·10⁻⁵ relative error at offset 50, against
1.6·10⁻⁷ centred, float32 against float64 on the same inputs). Centring is exact algebra for
any P̄, so nothing else changes.

The XLA forward accumulates an (R, C_out) plane over the K taps and the input gradient an
(R, K) plane over the outputs, in cache-sized row blocks, so the (R, K, C_out) pairwise tensor
never exists (3–30× faster on CPU than XLA's fused reduction of the broadcast). The Pallas
kernel tiles (R, C_out) and loops over K the same way; like every AdderNet implementation it
runs on vector units (no tensor core computes |a − b|).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
from jax import lax
from jax.experimental import pallas as pl

from bnnlab.kernels import backend as backend_lib
from bnnlab.kernels import patches as patches_lib
from bnnlab.kernels import platforms

Array = jax.Array
UNROLL = 4  # fori_loop unrolling: 4 was fastest or near it for every layer shape measured
# Rows per block: keeps the accumulator plane cache-resident (2–3× faster forward on CPU for
# the large first-stage layers than one pass over all rows).
ROW_BLOCK = 4096


def _row_blocks(fn: Callable, rows: Array, *aligned: Array) -> Array:
    """``fn`` over blocks of ``ROW_BLOCK`` rows of ``rows`` (and row-aligned ``aligned``)."""
    r = rows.shape[0]
    if r <= ROW_BLOCK:
        return fn(rows, *aligned)
    pad = -r % ROW_BLOCK

    def split(a):
        a = jnp.pad(a, [(0, pad)] + [(0, 0)] * (a.ndim - 1))
        return a.reshape(-1, ROW_BLOCK, *a.shape[1:])

    out = lax.map(lambda args: fn(*args), (split(rows), *map(split, aligned)))
    return out.reshape(-1, *out.shape[2:])[:r]


def distance_xla(p: Array, f2d: Array) -> Array:
    """Y[r, o] = −Σ_k |P[r, k] − F[k, o]| for patches (R, K) and filters (K, C_out)."""
    p, f2d = jnp.asarray(p), jnp.asarray(f2d)  # NumPy params can't be indexed by a loop counter

    def block(rows):
        pt = rows.T  # (K, rows): each tap's column is contiguous

        def tap(k, acc):
            return acc + jnp.abs(pt[k][:, None] - f2d[k][None, :])

        zeros = jnp.zeros((rows.shape[0], f2d.shape[1]), rows.dtype)
        return -lax.fori_loop(0, f2d.shape[0], tap, zeros, unroll=UNROLL)

    return _row_blocks(block, p)


def _distance_kernel(p_ref, f_ref, o_ref, *, taps: int):
    def tap(k, acc):
        return acc + jnp.abs(p_ref[:, pl.ds(k, 1)] - f_ref[pl.ds(k, 1), :])

    o_ref[...] = -lax.fori_loop(0, taps, tap, jnp.zeros(o_ref.shape, jnp.float32))


def distance_pallas(
    p: Array,
    f2d: Array,
    *,
    block_r: int = 64,
    block_o: int = 128,
    platform: str = "interpret",
) -> Array:
    """``platform``: "cuda", "rocm", "tpu" (compiled) or "interpret"."""
    r, k = p.shape
    o = f2d.shape[1]
    kp = backend_lib.next_power_of_2(k)  # zero taps in both operands add |0 − 0| = 0
    rp, op = backend_lib.round_up(r, block_r), backend_lib.round_up(o, block_o)
    p = jnp.pad(p.astype(jnp.float32), [(0, rp - r), (0, kp - k)])
    f = jnp.pad(f2d.astype(jnp.float32), [(0, kp - k), (0, op - o)])
    interpret = platform == "interpret"
    out = pl.pallas_call(
        functools.partial(_distance_kernel, taps=kp),
        out_shape=jax.ShapeDtypeStruct((rp, op), jnp.float32),
        grid=(rp // block_r, op // block_o),
        in_specs=[
            pl.BlockSpec((block_r, kp), lambda i, j: (i, 0)),
            pl.BlockSpec((kp, block_o), lambda i, j: (0, j)),
        ],
        out_specs=pl.BlockSpec((block_r, block_o), lambda i, j: (i, j)),
        interpret=interpret,
        compiler_params=None if interpret else platforms.compiler_params(platform),
    )(p, f)
    return out[:r, :o]


def distance_reference(p: Array, f2d: Array) -> Array:
    """The broadcast formula itself (materialises R·K·C_out values: small inputs only)."""
    return -jnp.sum(jnp.abs(p[:, :, None] - f2d[None]), axis=1)


def distance(p: Array, f2d: Array, backend: str = "xla") -> Array:
    """Y = −Σ_k |P − F| by ``backend`` ("auto": Pallas on GPU/TPU, XLA on CPU)."""

    def pallas(platform, p, f2d):
        return distance_pallas(p, f2d, platform=platform)

    return backend_lib.run(backend, (p, f2d), xla=distance_xla, pallas=pallas)


def patch_grad(p: Array, f2d: Array, g: Array) -> Array:
    """∂L/∂P[r, k] = Σ_o G[r, o]·clip(F[k, o] − P[r, k], −1, 1)."""
    ft = jnp.asarray(f2d).T

    def block(rows, grads):
        gt = grads.T

        def output(o, acc):
            return acc + jnp.clip(ft[o][None, :] - rows, -1.0, 1.0) * gt[o][:, None]

        return lax.fori_loop(0, f2d.shape[1], output, jnp.zeros_like(rows), unroll=UNROLL)

    return _row_blocks(block, p, g)


def filter_grad(p: Array, f2d: Array, g: Array) -> Array:
    """∂L/∂F[k, o] = Σ_r G[r, o]·(P[r, k] − F[k, o]) as (P − P̄)ᵀG + (P̄ − F)·ΣG (module doc)."""
    p_mean = jnp.mean(p, axis=0, keepdims=True)  # (1, K)
    g_sum = jnp.sum(g, axis=0, keepdims=True)  # (1, C_out)
    return (p - p_mean).T @ g + (p_mean.T - f2d) * g_sum


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3, 4))
def adder_conv2d(x: Array, f: Array, strides: Sequence[int], padding, backend: str = "xla"):
    """AdderNet layer output for NHWC ``x`` and HWIO ``f`` with the paper's gradients."""
    cols = patches_lib.patches(x, f.shape[:2], strides, padding)
    n, h, w, k = cols.shape
    y = distance(cols.reshape(-1, k), f.reshape(-1, f.shape[-1]), backend)
    return y.reshape(n, h, w, f.shape[-1]).astype(x.dtype)


def _adder_conv2d_fwd(x, f, strides, padding, backend):
    return adder_conv2d(x, f, strides, padding, backend), (x, f)


def _adder_conv2d_bwd(strides, padding, backend, residuals, g):
    del backend  # Unused: the backward always runs the XLA formulation.
    x, f = residuals
    cols, to_input = jax.vjp(lambda x: patches_lib.patches(x, f.shape[:2], strides, padding), x)
    n, h, w, k = cols.shape
    p2d, g2d, f2d = cols.reshape(-1, k), g.reshape(-1, f.shape[-1]), f.reshape(-1, f.shape[-1])
    df = filter_grad(p2d, f2d, g2d).reshape(f.shape)
    (dx,) = to_input(patch_grad(p2d, f2d, g2d).reshape(n, h, w, k))
    return dx, df


adder_conv2d.defvjp(_adder_conv2d_fwd, _adder_conv2d_bwd)
