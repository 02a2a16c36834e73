"""Activation layers against their formulas."""

import jax
import jax.numpy as jnp
import numpy as np

from bnnlab import layers

import reference

X = jnp.asarray(np.random.default_rng(0).normal(size=(2, 3, 3, 4)), jnp.float32)


def test_rsign_forward_and_gradient():
    layer = layers.RSign()
    v = layer.init(jax.random.key(0), X)
    bias = np.array([0.5, -0.5, 0.0, 2.0], np.float32)
    p = {"bias": jnp.asarray(bias)}
    shifted = np.asarray(X) + bias
    np.testing.assert_array_equal(layer.apply({"params": p}, X), reference.sign(shifted))
    gx, gp = jax.grad(lambda x, p: jnp.sum(layer.apply({"params": p}, x)), argnums=(0, 1))(X, p)
    np.testing.assert_allclose(gx, reference.approx_sign_grad(shifted), atol=1e-6)
    np.testing.assert_allclose(
        gp["bias"], reference.approx_sign_grad(shifted).sum((0, 1, 2)), rtol=1e-5
    )
    np.testing.assert_array_equal(v["params"]["bias"], 0.0)


def test_rprelu_formula():
    layer = layers.RPReLU()
    v = layer.init(jax.random.key(0), X)
    np.testing.assert_array_equal(v["params"]["beta"], 0.25)
    p = {
        "gamma": jnp.array([0.1, -0.2, 0.0, 0.3]),
        "beta": jnp.array([0.25, 0.5, 0.1, 1.0]),
        "zeta": jnp.array([1.0, 0.0, -1.0, 0.5]),
    }
    u = np.asarray(X) - np.asarray(p["gamma"])
    expected = np.where(u >= 0, u, np.asarray(p["beta"]) * u) + np.asarray(p["zeta"])
    np.testing.assert_allclose(layer.apply({"params": p}, X), expected, rtol=1e-6)


def test_prelu_and_hardtanh():
    layer = layers.PReLU()
    v = layer.init(jax.random.key(0), X)
    np.testing.assert_array_equal(v["params"]["beta"], np.full(4, 0.25, np.float32))
    x = np.asarray(X)
    np.testing.assert_allclose(layer.apply(v, X), np.where(x >= 0, x, 0.25 * x), rtol=1e-6)
    np.testing.assert_array_equal(layers.hardtanh(X), np.clip(x, -1, 1))
