"""DoReFa k-bit quantizers: value sets, hand-worked values, closed-form gradients."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from bnnlab import quant


@pytest.mark.parametrize("k", [1, 2, 3, 8])
def test_activation_values(k):
    n = 2**k - 1
    x = np.linspace(-1, 2, 3001).astype(np.float32)  # ≥ 4 points per level in [0, 1]
    y = np.asarray(quant.get("dorefa", k_bit=k)(jnp.asarray(x)))
    expected = np.floor(np.clip(x, 0, 1) * n + 0.5) * np.float32(1 / n)
    np.testing.assert_array_equal(y, expected.astype(np.float32))
    assert len(np.unique(y)) == n + 1


def test_two_bit_activation_hand_example():
    x = jnp.array([-0.3, 0.0, 0.1, 0.2, 0.5, 0.6, 0.9, 1.4])
    # levels {0, 1/3, 2/3, 1}; 0.5·3 = 1.5 rounds half up to 2.
    np.testing.assert_allclose(
        quant.get("dorefa(k_bit=2)")(x), [0, 0, 0, 1 / 3, 2 / 3, 2 / 3, 1, 1], rtol=1e-6
    )


def test_activation_gradient_is_unit_window():
    x = np.array([-0.5, 0.0, 0.3, 1.0, 1.2], np.float32)
    g = jax.grad(lambda v: jnp.sum(quant.get("dorefa", k_bit=3)(v)))(jnp.asarray(x))
    np.testing.assert_array_equal(g, [0, 1, 1, 1, 0])


@pytest.mark.parametrize("k", [1, 2, 4])
def test_weight_values(k):
    w = np.random.default_rng(k).normal(size=(3, 3, 2, 4)).astype(np.float32)
    n = 2**k - 1
    t = np.tanh(w)
    u = t / (2 * np.abs(t).max()) + 0.5
    expected = np.floor(u * n + 0.5) * np.float32(2 / n) - 1
    y = np.asarray(quant.get("dorefa", k_bit=k, mode="weights")(jnp.asarray(w)))
    np.testing.assert_allclose(y, expected, atol=1e-6)
    levels = (y + 1) * n / 2  # must be integers 0 … n
    np.testing.assert_allclose(levels, np.round(levels), atol=1e-4)
    assert levels.min() > -1e-4 and levels.max() < n + 1e-4


def test_weight_gradient_closed_form():
    rng = np.random.default_rng(0)
    w = rng.normal(size=(3, 3, 2, 4)).astype(np.float64)
    g = rng.normal(size=w.shape)
    t = np.tanh(w)
    k = np.argmax(np.abs(t))
    m = np.abs(t).flat[k]
    # ∂/∂w_j Σ g_i t_i / m  (the gradient path 2u − 1 = t / m)
    expected = g * (1 - t**2) / m
    expected.flat[k] -= np.sign(t.flat[k]) * (1 - t.flat[k] ** 2) * (g * t).sum() / m**2
    q = quant.get("dorefa", k_bit=2, mode="weights")
    got = jax.grad(lambda v: jnp.sum(q(v) * g.astype(np.float32)))(jnp.asarray(w, jnp.float32))
    np.testing.assert_allclose(got, expected, rtol=2e-4, atol=1e-6)


@given(st.integers(1, 8), st.sampled_from(["activations", "weights"]), st.integers(0, 2**16))
def test_property_values_in_level_set(k, mode, seed):
    x = np.random.default_rng(seed).normal(0, 2, size=(4, 6)).astype(np.float32)
    q = quant.get("dorefa", k_bit=k, mode=mode)
    enc = q.encode(jnp.asarray(x))
    codes = np.asarray(enc.codes).astype(int)
    assert codes.min() >= 0 and codes.max() <= 2**k - 1
    np.testing.assert_array_equal(enc.decode(), q(jnp.asarray(x)))


@pytest.mark.parametrize("k", [0, 9, 2.0, True])
def test_k_out_of_range(k):
    with pytest.raises(ValueError, match=r"k_bit must be an integer in \[1, 8\]"):
        quant.get("dorefa", k_bit=k)


def test_bad_mode():
    with pytest.raises(ValueError, match="mode must be one of"):
        quant.get("dorefa", mode="kernel")
