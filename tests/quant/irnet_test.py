"""IR-Net (Libra-PB + EDE): the docs/baselines.md checks and closed-form gradients."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bnnlab import quant
from bnnlab.quant import irnet

import reference


def test_libra_pb_standardisation_and_power_of_two_scale():
    w = np.random.default_rng(0).normal(0.3, 0.05, size=(3, 3, 64, 32)).astype(np.float32)
    w_hat, scale = irnet._libra_pb(jnp.asarray(w))
    cols = reference.per_filter(np.asarray(w_hat, np.float64))
    assert np.abs(cols.mean(0)).max() < 1e-6
    np.testing.assert_allclose(cols.std(0, ddof=1), 1.0, rtol=1e-5)
    # Gaussian: mean|Ŵ| ≈ √(2/π) ≈ 0.8 → round(log2 0.8) = 0 → scale 1.
    np.testing.assert_array_equal(scale, 1.0)
    y = quant.get("ir_net")(jnp.asarray(w))
    np.testing.assert_array_equal(y, reference.sign(np.asarray(w_hat)))


def test_scale_is_power_of_two():
    w = np.random.default_rng(1).uniform(-1, 1, size=(5, 7)).astype(np.float32)
    w[:, 0] = [10, -10, 0.01, 0.02, 0.03]  # heavy-tailed filter: mean|Ŵ| far from 1
    enc = quant.get("ir_net").encode(jnp.asarray(w))
    log2 = np.log2(np.asarray(enc.scale))
    np.testing.assert_array_equal(log2, np.round(log2))


@pytest.mark.parametrize("epoch,t,k", [(0, 0.1, 10.0), (200, 1.0, 1.0), (399, 9.886, 1.0)])
def test_ede_schedule(epoch, t, k):
    got_t, got_k = irnet.ede_schedule(epoch / 400)
    np.testing.assert_allclose([got_t, got_k], [t, k], rtol=1e-3)


def test_ede_gradient_closed_form():
    x = np.linspace(-2, 2, 41).astype(np.float32)
    t, k = 1 / 3, 3.0  # at progress p: t = 0.1·100^p → p = log10(10/3)/2
    p = np.log10(t / 0.1) / 2
    g = jax.grad(lambda v: jnp.sum(quant.get("ede_sign")(v, progress=p)))(jnp.asarray(x))
    np.testing.assert_allclose(g, k * t * (1 - np.tanh(t * x) ** 2), rtol=1e-4)


def test_ir_net_weight_gradient_closed_form():
    rng = np.random.default_rng(2)
    w = rng.normal(size=(3, 3, 4, 6)).astype(np.float64)
    g = rng.normal(size=w.shape)
    p = 0.5  # t = 1, k = 1
    cols = reference.per_filter(w)
    w_hat = reference.standardize(cols, eps=0.0)
    s = 2.0 ** np.round(np.log2(np.abs(w_hat).mean(0, keepdims=True)))
    h = reference.per_filter(g) * s * (1 - np.tanh(w_hat) ** 2)
    expected = reference.standardize_vjp(cols, h, eps=0.0).reshape(w.shape)
    got = jax.grad(lambda v: jnp.sum(quant.get("ir_net")(v, progress=p) * g.astype(np.float32)))(
        jnp.asarray(w, jnp.float32)
    )
    np.testing.assert_allclose(got, expected, rtol=1e-3, atol=1e-5)


def test_schedule_bounds():
    with pytest.raises(ValueError, match="t_max must exceed t_min"):
        quant.get("ede_sign", t_min=1.0, t_max=0.5)
    with pytest.raises(ValueError, match=r"progress must be in \[0, 1\]"):
        irnet.ede_schedule(1.5)
