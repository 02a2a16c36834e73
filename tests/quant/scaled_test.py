"""Magnitude-aware (Bi-Real/ReActNet) and XNOR-Net scaled binary weights."""

import jax
import jax.numpy as jnp
import numpy as np

from bnnlab import quant

import reference


def kernel(seed=0, shape=(3, 3, 4, 5)):
    return np.random.default_rng(seed).normal(0, 0.8, shape).astype(np.float32)


def test_magnitude_aware_forward_and_gradient():
    w = kernel()
    alpha = np.abs(reference.per_filter(w)).mean(0)  # per output channel
    q = quant.get("magnitude_aware_sign")
    np.testing.assert_allclose(q(jnp.asarray(w)), alpha * reference.sign(w), rtol=1e-6)
    g = np.random.default_rng(1).normal(size=w.shape).astype(np.float32)
    got = jax.grad(lambda v: jnp.sum(q(v) * g))(jnp.asarray(w))
    # Released PyTorch code: STE through clip(W, -1, 1), scale detached and not in the gradient.
    np.testing.assert_allclose(got, g * (np.abs(w) <= 1), rtol=1e-6)


def test_xnor_forward_and_paper_gradient():
    w = kernel(2)
    n = w.size // w.shape[-1]
    alpha = np.abs(reference.per_filter(w)).sum(0) / n  # ‖W_f‖₁ / n
    q = quant.get("xnor_sign")
    np.testing.assert_allclose(q(jnp.asarray(w)), alpha * reference.sign(w), rtol=1e-6)
    g = np.random.default_rng(3).normal(size=w.shape).astype(np.float32)
    got = jax.grad(lambda v: jnp.sum(q(v) * g))(jnp.asarray(w))
    np.testing.assert_allclose(got, g * (1.0 / n + alpha * (np.abs(w) <= 1)), rtol=1e-5)


def test_scaled_encode_decodes_exactly():
    w = jnp.asarray(kernel(4))
    for name in ("magnitude_aware_sign", "xnor_sign"):
        q = quant.get(name)
        enc = q.encode(w)
        assert enc.codes.dtype == jnp.int8 and enc.scale.shape == (1, 1, 1, 5)
        np.testing.assert_array_equal(enc.decode(), q(w))
