"""Weight and activation statistics BNN papers argue with, as pure (jit-able) functions.

ReCU's dead weights and the entropy/quantization-error trade-off (docs/recu.md), SiMaN's
point that Laplacian latent weights cost bit entropy (docs/siman.md), larq's flip ratio.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

Array = jax.Array

GAUSSIAN_ENTROPY_BITS = 0.5 * math.log2(2 * math.pi * math.e)  # unit variance: 2.047 bits
LAPLACE_ENTROPY_BITS = math.log2(2 * math.e / math.sqrt(2))  # unit variance: 1.943 bits


def binary_entropy(p: Array) -> Array:
    """H(p) = −p·log₂p − (1−p)·log₂(1−p) in bits, with 0·log 0 = 0."""
    p = jnp.clip(jnp.asarray(p, jnp.float32), 0.0, 1.0)

    def term(q):
        return jnp.where(q > 0, -q * jnp.log2(jnp.where(q > 0, q, 1.0)), 0.0)

    return term(p) + term(1.0 - p)


def bit_entropy(codes: Array, axis=None) -> Array:
    """Entropy of binary codes (±1, or {0, 1}): H(fraction of positive codes), in bits.

    1 bit when exactly half are +1 (SiMaN's balanced code), 0 when all agree. ``axis=0`` on an
    (n, C_out) view gives one value per filter.
    """
    return binary_entropy(jnp.mean(codes > 0, axis=axis))


def differential_entropy(w: Array, bins: int = 128) -> Array:
    """Histogram estimate of the differential entropy (bits) of the standardised values.

    Standardising makes it scale-free: a Gaussian gives 2.047 bits and a Laplace 1.943 bits
    (``GAUSSIAN_ENTROPY_BITS``, ``LAPLACE_ENTROPY_BITS``); heavier tails give less.
    """
    x = jnp.ravel(w).astype(jnp.float32)
    x = (x - jnp.mean(x)) / jnp.maximum(jnp.std(x), 1e-12)
    counts, edges = jnp.histogram(x, bins=bins, range=(-6.0, 6.0))
    width = edges[1] - edges[0]
    p = counts / jnp.maximum(jnp.sum(counts), 1)
    return -jnp.sum(jnp.where(p > 0, p * jnp.log2(jnp.where(p > 0, p, 1.0) / width), 0.0))


def distribution_fit(w: Array) -> dict[str, Array]:
    """Laplace-vs-Gaussian fit of a tensor's values (maximum likelihood for each).

    Returns the Laplace scale b = mean|w − median|, the Gaussian σ, the excess kurtosis (0 for
    a Gaussian, 3 for a Laplace) and the mean log-likelihood gap
    ``laplace_minus_gauss`` (> 0: the Laplace fits better).
    """
    x = jnp.ravel(w).astype(jnp.float32)
    n = x.size
    median = jnp.sort(x)[(n - 1) // 2]
    b = jnp.maximum(jnp.mean(jnp.abs(x - median)), 1e-12)
    mean = jnp.mean(x)
    sigma = jnp.maximum(jnp.std(x), 1e-12)
    kurtosis = jnp.mean(((x - mean) / sigma) ** 4) - 3.0
    laplace_ll = -jnp.log(2.0 * b) - 1.0  # mean log-likelihood at the MLE
    gauss_ll = -0.5 * jnp.log(2.0 * jnp.pi * sigma**2) - 0.5
    return {
        "laplace_b": b,
        "gauss_sigma": sigma,
        "kurtosis": kurtosis,
        "laplace_minus_gauss": laplace_ll - gauss_ll,
    }


def flip_ratio(before, after) -> Array:
    """Fraction of binary values whose sign differs between two arrays or pytrees (larq's
    FlipRatio). Codes in {0, 1} and ±1 both work (compared by x > 0)."""
    a, b = jax.tree.leaves(before), jax.tree.leaves(after)
    if len(a) != len(b):
        raise ValueError(f"flip_ratio needs trees of the same structure ({len(a)} vs {len(b)}).")
    flips = sum(jnp.sum((x > 0) != (y > 0)) for x, y in zip(a, b, strict=True))
    return flips / max(sum(x.size for x in a), 1)


def quantization_error(w: Array, alpha: Array, b: Array) -> Array:
    """‖W − α·B‖² / ‖W‖²: 0 when W is exactly the scaled binary tensor."""
    w = w.astype(jnp.float32)
    return jnp.sum((w - alpha * b) ** 2) / jnp.maximum(jnp.sum(w**2), 1e-30)


def optimal_scale(w: Array, b: Array) -> Array:
    """Per-filter least-squares α = ⟨W_f, B_f⟩ / ⟨B_f, B_f⟩ (last axis = filters)."""
    axes = tuple(range(w.ndim - 1))
    return jnp.sum(w * b, axis=axes, keepdims=True) / jnp.maximum(
        jnp.sum(b * b, axis=axes, keepdims=True), 1e-30
    )


def sign_balance(x: Array) -> Array:
    """Fraction of +1 after binarising by sign (0.5 = balanced, maximal entropy)."""
    return jnp.mean(x >= 0)
