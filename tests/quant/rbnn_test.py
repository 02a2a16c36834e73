"""Rotated-BNN pieces (bi-rotation shape, training-aware sign): docs/baselines.md checks and the
closed-form gradient."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bnnlab import quant
from bnnlab.quant import rbnn


@pytest.mark.parametrize("n,ab", [(576, (24, 24)), (144, (12, 12)), (27, (3, 9)), (7, (1, 7))])
def test_birotation_shape(n, ab):
    assert rbnn.birotation_shape(n) == ab


@pytest.mark.parametrize("epoch,t,k", [(0, 0.01, 100.0), (500, 0.3162, 3.162), (999, 9.931, 1.0)])
def test_rbnn_schedule(epoch, t, k):
    got_t, got_k = rbnn.rbnn_schedule(epoch / 1000)
    np.testing.assert_allclose([got_t, got_k], [t, k], rtol=1e-3)


def test_rbnn_gradient_closed_form():
    x = np.linspace(-1, 1, 21).astype(np.float32)
    t, k = 10**-0.5, 10**0.5
    got = jax.grad(lambda v: jnp.sum(quant.get("rbnn_sign")(v, progress=0.5)))(jnp.asarray(x))
    np.testing.assert_allclose(
        got, k * np.maximum(0, np.sqrt(2) * t - t * t * np.abs(x)), rtol=1e-4
    )
    # Activations: k = 1, t = max(t, 1) = 1 → max(0, √2 − |x|).
    act = quant.get("rbnn_sign", activations=True)
    got = jax.grad(lambda v: jnp.sum(act(v, progress=0.5)))(jnp.asarray(x))
    np.testing.assert_allclose(got, np.maximum(0, np.sqrt(2) - np.abs(x)), rtol=1e-5)
