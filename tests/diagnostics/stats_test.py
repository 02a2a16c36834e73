"""Diagnostics statistics against their definitions and known distributions."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bnnlab.diagnostics import stats

import reference


def test_bit_entropy():
    half = jnp.array([1, -1] * 50)
    assert float(stats.bit_entropy(half)) == 1.0
    assert float(stats.bit_entropy(jnp.ones(100))) == 0.0
    assert float(stats.bit_entropy(jnp.zeros(100))) == 0.0  # {0, 1} codes, all 0
    p = 0.25
    expected = -p * math.log2(p) - (1 - p) * math.log2(1 - p)
    np.testing.assert_allclose(stats.bit_entropy(jnp.array([1, 0, 0, 0] * 10)), expected, rtol=1e-6)
    per_filter = stats.bit_entropy(jnp.array([[1, 1], [-1, 1]]), axis=0)
    np.testing.assert_array_equal(per_filter, [1.0, 0.0])


def test_differential_entropy_of_known_distributions():
    rng = np.random.default_rng(0)
    gauss = stats.differential_entropy(jnp.asarray(rng.normal(size=400_000) * 3 + 1))
    laplace = stats.differential_entropy(jnp.asarray(rng.laplace(size=400_000) * 0.1))
    assert abs(float(gauss) - stats.GAUSSIAN_ENTROPY_BITS) < 0.02
    assert abs(float(laplace) - stats.LAPLACE_ENTROPY_BITS) < 0.03
    np.testing.assert_allclose(stats.GAUSSIAN_ENTROPY_BITS, 2.0471, atol=1e-4)


def test_distribution_fit():
    rng = np.random.default_rng(1)
    lap = stats.distribution_fit(jnp.asarray(rng.laplace(0.0, 0.05, size=200_000)))
    assert abs(float(lap["laplace_b"]) - 0.05) < 1e-3
    assert abs(float(lap["kurtosis"]) - 3.0) < 0.2
    assert float(lap["laplace_minus_gauss"]) > 0
    gauss = stats.distribution_fit(jnp.asarray(rng.normal(0.0, 2.0, size=200_000)))
    assert abs(float(gauss["gauss_sigma"]) - 2.0) < 0.02
    assert abs(float(gauss["kurtosis"])) < 0.1
    assert float(gauss["laplace_minus_gauss"]) < 0


def test_flip_ratio():
    rng = np.random.default_rng(2)
    tree = {"a": jnp.asarray(rng.normal(size=(3, 4))), "b": jnp.asarray(rng.normal(size=10))}
    assert float(stats.flip_ratio(tree, tree)) == 0.0
    flipped = jax.tree.map(lambda x: -x, tree)
    assert float(stats.flip_ratio(tree, flipped)) == 1.0
    partial = {"a": tree["a"], "b": -tree["b"]}
    np.testing.assert_allclose(stats.flip_ratio(tree, partial), 10 / 22)
    with pytest.raises(ValueError, match="same structure"):
        stats.flip_ratio(tree, {"a": tree["a"]})


def test_quantization_error():
    rng = np.random.default_rng(3)
    b = jnp.asarray(reference.sign(rng.normal(size=(3, 3, 4, 5))))
    alpha = jnp.asarray(rng.uniform(0.1, 2.0, size=5))
    w = alpha * b
    assert float(stats.quantization_error(w, alpha, b)) == 0.0
    np.testing.assert_allclose(stats.optimal_scale(w, b).ravel(), alpha, rtol=1e-6)
    noisy = w + 0.1
    expected = np.sum((noisy - w) ** 2) / np.sum(noisy**2)
    np.testing.assert_allclose(stats.quantization_error(noisy, alpha, b), expected, rtol=1e-5)


def test_sign_balance():
    assert float(stats.sign_balance(jnp.asarray([-1.0, 0.0, 2.0, -3.0]))) == 0.5
