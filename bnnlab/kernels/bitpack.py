"""Bit packing in Larq Compute Engine's layout: 32-bit words, least significant bit first,
packed along the last (contraction/channel) axis, bit 1 = −1 (a negative value), tail bits 0
(= +1), the true length K kept beside the words.

With this layout the ±1 dot product of two packed vectors of true length K is
K − 2·popcount(a XOR b): tail bits are 0 in both operands, so they never count.

``pack_words`` is the one routine that writes the layout; everything that packs (``pack``, the
XNOR kernels' ``pack_kernel``, the export's host-side packing in NumPy) goes through it.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

Array = jax.Array
WORD_BITS = 32


@dataclasses.dataclass(frozen=True)
class PackedBits:
    """``words`` (..., ceil(K/32)) uint32 and the true length ``k`` of the packed axis."""

    words: Array
    k: int

    @property
    def shape(self) -> tuple[int, ...]:
        """Shape of the unpacked tensor."""
        return (*self.words.shape[:-1], self.k)


jax.tree_util.register_dataclass(PackedBits, data_fields=["words"], meta_fields=["k"])


def num_words(k: int) -> int:
    """ceil(k / 32): the words that hold k bits."""
    return -(-k // WORD_BITS)


def pack_words(x, xp=jnp):
    """The layout: (..., ceil(K/32)) uint32 words of ``x`` (..., K), where bit b of word w is
    1 iff x[..., 32·w + b] < 0 (zero, −0 and positive → 0, matching sign(0) = +1; bits past K
    → 0). ``xp`` is the array namespace that computes it: ``jax.numpy`` (traceable) or
    ``numpy`` (host work such as the export, where per-shape XLA compiles would dominate);
    both run this same code and give the same words."""
    k = x.shape[-1]
    n = num_words(k)
    bits = (x < 0).astype(xp.uint32)
    bits = xp.pad(bits, [(0, 0)] * (x.ndim - 1) + [(0, n * WORD_BITS - k)])
    bits = bits.reshape(*x.shape[:-1], n, WORD_BITS)
    shifts = xp.arange(WORD_BITS, dtype=xp.uint32)
    return xp.sum(bits << shifts, axis=-1, dtype=xp.uint32)  # disjoint bits: sum == OR


def pack(x: Array) -> PackedBits:
    """Packs the signs of ``x`` along its last axis (``pack_words``) with its true length."""
    return PackedBits(pack_words(x), x.shape[-1])


def unpack(packed: PackedBits, dtype=jnp.float32) -> Array:
    """The ±1 tensor a ``PackedBits`` encodes."""
    shifts = jnp.arange(WORD_BITS, dtype=jnp.uint32)
    bits = (packed.words[..., None] >> shifts) & jnp.uint32(1)
    bits = bits.reshape(*packed.words.shape[:-1], -1)[..., : packed.k]
    return (1 - 2 * bits.astype(jnp.int32)).astype(dtype)


def popcount(x: Array) -> Array:
    """Set bits of each uint32 word, as int32 (XLA lowers this to the CPU's popcnt)."""
    return jax.lax.population_count(x).astype(jnp.int32)


def popcount_swar(x: Array) -> Array:
    """The same count with shifts, masks and one multiply (for backends without a popcount
    instruction, e.g. Mosaic GPU)."""
    x = x - ((x >> 1) & jnp.uint32(0x55555555))
    x = (x & jnp.uint32(0x33333333)) + ((x >> 2) & jnp.uint32(0x33333333))
    x = (x + (x >> 4)) & jnp.uint32(0x0F0F0F0F)
    return ((x * jnp.uint32(0x01010101)) >> 24).astype(jnp.int32)
