"""Bit packing: Larq Compute Engine's layout checked by hand and word by word against a loop
packer, the one routine run by NumPy and by JAX giving the same words, the pack/unpack round
trip, and both popcounts against Python's bit count."""

import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from bnnlab.kernels import bitpack


def numpy_pack(x):
    """Bit b of word w is 1 iff x[..., 32·w + b] < 0 (LSB first); tail bits 0."""
    k = x.shape[-1]
    words = np.zeros((*x.shape[:-1], -(-k // 32)), np.uint64)
    for i in range(k):
        words[..., i // 32] |= (x[..., i] < 0).astype(np.uint64) << np.uint64(i % 32)
    return words.astype(np.uint32)


def test_hand_worked_word():
    # Values −1 at positions 0, 3 and 31: bits 0, 3, 31 → 1 + 8 + 2**31.
    x = np.ones(32, np.float32)
    x[[0, 3, 31]] = -1
    assert int(bitpack.pack(jnp.asarray(x)).words[0]) == 1 + 8 + 2**31


@pytest.mark.parametrize("xp", [jnp, np], ids=["jnp", "np"])
def test_hand_worked_three_values(xp):
    # [−1, +1, −1]: bits 0 and 2 set, tail bits 3..31 zero → 0b101 = 5.
    words = bitpack.pack_words(xp.asarray([-1.0, 1.0, -1.0]), xp)
    assert words.shape == (1,) and words.dtype == np.uint32
    assert int(words[0]) == 0b101 == 5
    # Two words: −1 at position 32 is bit 0 of the second word.
    x = np.ones(40, np.float32)
    x[[1, 32, 39]] = -1
    assert [int(v) for v in bitpack.pack_words(xp.asarray(x), xp)] == [0b10, 1 + 2**7]


@pytest.mark.parametrize("k", [1, 3, 31, 32, 33, 100])
def test_numpy_and_jax_run_the_one_routine_to_the_same_words(k):
    x = np.random.default_rng(k).normal(size=(2, 5, k)).astype(np.float32)
    x[0, 0, 0], x[1, 0, 0] = 0.0, -0.0  # both +1
    host = bitpack.pack_words(x, np)
    assert isinstance(host, np.ndarray) and host.dtype == np.uint32  # no device round trip
    np.testing.assert_array_equal(host, numpy_pack(x))
    np.testing.assert_array_equal(host, bitpack.pack(jnp.asarray(x)).words)


def test_zero_packs_as_plus_one_and_tail_bits_are_zero():
    x = jnp.asarray([0.0, -0.5, 2.0, -0.0])  # −0.0 is not negative: sign(−0) = +1 too
    packed = bitpack.pack(x)
    assert packed.k == 4 and packed.words.shape == (1,)
    assert int(packed.words[0]) == 0b0010


@pytest.mark.parametrize("k", [1, 31, 32, 33, 64, 100, 576])
def test_pack_matches_numpy_and_round_trips(k):
    x = np.random.default_rng(k).normal(size=(3, 2, k)).astype(np.float32)
    packed = bitpack.pack(jnp.asarray(x))
    assert packed.words.dtype == jnp.uint32
    assert packed.shape == x.shape
    np.testing.assert_array_equal(packed.words, numpy_pack(x))
    np.testing.assert_array_equal(bitpack.unpack(packed), np.where(x < 0, -1.0, 1.0))
    again = bitpack.pack(bitpack.unpack(packed))
    np.testing.assert_array_equal(again.words, packed.words)


@given(st.lists(st.integers(0, 2**32 - 1), min_size=1, max_size=64))
def test_popcounts_match_python(values):
    words = jnp.asarray(np.asarray(values, np.uint32))
    expected = [bin(v).count("1") for v in values]
    np.testing.assert_array_equal(bitpack.popcount(words), expected)
    np.testing.assert_array_equal(bitpack.popcount_swar(words), expected)


@given(st.integers(1, 200), st.integers(0, 10_000))
def test_packed_dot_identity(k, seed):
    # K − 2·popcount(a ⊕ b) is the ±1 dot product, whatever K mod 32.
    rng = np.random.default_rng(seed)
    a, b = rng.choice([-1.0, 1.0], size=(2, k))
    pa, pb = bitpack.pack(jnp.asarray(a)), bitpack.pack(jnp.asarray(b))
    dot = k - 2 * int(jnp.sum(bitpack.popcount(pa.words ^ pb.words)))
    assert dot == int(a @ b)
