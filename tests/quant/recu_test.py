"""ReCU: every numerical check of docs/recu.md, closed-form gradients, and property tests."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from bnnlab import quant
from bnnlab.quant import recu

import reference

HAND_W = np.array([1.0, 2.0, 3.0, 4.0], np.float32).reshape(2, 2, 1, 1)  # one 1×1×2×2 filter
HAND_W_TILDE = [-3.286325, -1.095442, 1.095442, 3.286325]


def recu_tilde_np(w):
    return reference.standardize(reference.per_filter(w.astype(np.float64)), 1e-5, 2 * math.sqrt(2))


def test_hand_example_standardisation():
    w_tilde = recu.standardize_weights(jnp.asarray(HAND_W))
    np.testing.assert_allclose(w_tilde.ravel(), HAND_W_TILDE, rtol=1e-5)
    np.testing.assert_allclose(jnp.mean(jnp.abs(w_tilde)), 2.190884, rtol=1e-5)


@pytest.mark.parametrize(
    "tau,q,w_r,mask",
    [
        (0.85, 2.637764, [-2.637764, -1.095442, 1.095442, 2.637764], [0, 1, 1, 0]),
        (0.99, 8.570787, HAND_W_TILDE, [1, 1, 1, 1]),
    ],
)
def test_hand_example_clamp(tau, q, w_r, mask):
    w_tilde = recu.standardize_weights(jnp.asarray(HAND_W))
    got_q = recu.clamp_threshold(w_tilde, tau)
    np.testing.assert_allclose(got_q, q, rtol=1e-5)
    np.testing.assert_allclose(jnp.clip(w_tilde, -got_q, got_q).ravel(), w_r, rtol=1e-5)
    grad = jax.grad(lambda wt: jnp.sum(recu.clamp_sign(wt, got_q)))(w_tilde)
    np.testing.assert_array_equal(grad.ravel(), mask)
    np.testing.assert_array_equal(
        quant.get("recu", tau=tau)(jnp.asarray(HAND_W)).ravel(), [-1, -1, 1, 1]
    )


def test_tau_one_is_no_clamp():
    assert np.isinf(recu.laplace_quantile(jnp.float32(2.19), 1.0))
    w_tilde = recu.standardize_weights(jnp.asarray(HAND_W))
    grad = jax.grad(lambda wt: jnp.sum(recu.clamp_sign(wt, jnp.inf)))(w_tilde)
    np.testing.assert_array_equal(grad, 1.0)


def test_standardisation_statistics():
    rng = np.random.default_rng(0)
    # PyTorch (64, 64, 3, 3) is Flax (3, 3, 64, 64).
    gauss = rng.normal(0, 0.05, (3, 3, 64, 64)).astype(np.float32)
    stds = reference.per_filter(np.asarray(recu.standardize_weights(jnp.asarray(gauss)))).std(
        0, ddof=1
    )
    np.testing.assert_allclose(stds, 2.8228, atol=2e-3)  # ε pulls it just below 2√2 = 2.8284
    assert stds.max() < 2 * math.sqrt(2)
    lap = reference.laplace(rng, (3, 3, 64, 64), 0.05)
    b_hat = jnp.mean(jnp.abs(recu.standardize_weights(jnp.asarray(lap))))
    np.testing.assert_allclose(b_hat, 1.995, atol=0.02)


@pytest.mark.parametrize(
    "dist,tau,expected,tol",
    [
        ("laplace", 0.85, 0.2998, 0.01),
        ("laplace", 0.99, 0.0205, 0.003),
        ("gauss", 0.85, 0.3344, 0.01),
        ("gauss", 0.99, 0.0013, 0.002),
    ],
)
def test_clamp_fraction(dist, tau, expected, tol):
    rng = np.random.default_rng(1)
    shape = (3, 3, 64, 64)
    w = reference.laplace(rng, shape, 0.05) if dist == "laplace" else rng.normal(0, 0.05, shape)
    w = jnp.asarray(w, jnp.float32)
    frac = quant.get("recu", tau=tau).dead_fraction(w)
    assert abs(float(frac) - expected) < tol
    # The same fraction from the gradient mask, with Q computed here from the formula.
    w_tilde = recu_tilde_np(np.asarray(w))
    q = -np.abs(w_tilde).mean() * np.log(2 - 2 * tau)
    assert abs(float(np.mean(np.abs(w_tilde) > q)) - float(frac)) < 1e-4


@pytest.mark.parametrize("tau", [0.6, 0.85, 0.95, 0.99])
def test_forward_invariance(tau):
    w = np.random.default_rng(2).normal(0.1, 0.05, (3, 3, 8, 16)).astype(np.float32)
    centred_sign = reference.sign(w - w.mean(axis=(0, 1, 2), keepdims=True))
    np.testing.assert_array_equal(quant.get("recu", tau=tau)(jnp.asarray(w)), centred_sign)


def test_activation_sign_same_in_train_and_eval():
    x = jnp.asarray(np.random.default_rng(3).normal(0.2, 1, (4, 5, 5, 3)), jnp.float32)
    q = quant.get("recu_act")
    np.testing.assert_array_equal(q(x, train=True), q(x, train=False))
    np.testing.assert_array_equal(q(x, train=False), reference.sign(np.asarray(x)))


def test_activation_surrogate_values():
    x = jnp.array([[0.0, 0.25, -0.25, 0.5, -0.5, 1.0, -1.0, 1.2]])
    g = jax.grad(lambda v: jnp.sum(quant.get("recu_act")(v, train=False)))(x)
    np.testing.assert_allclose(g.ravel(), [2, 1.5, 1.5, 1, 1, 0, 0, 0], atol=1e-6)


def test_activation_gradient_through_training_scaling():
    rng = np.random.default_rng(4)
    x = rng.normal(0.3, 0.7, (3, 4, 4, 2)).astype(np.float64)
    g = rng.normal(size=x.shape)
    cols = x.reshape(3, -1).T  # one column per sample
    x_tilde = reference.standardize(cols, 1e-5, center=False)
    h = g.reshape(3, -1).T * reference.approx_sign_grad(x_tilde)
    expected = reference.standardize_vjp(cols, h, 1e-5, center=False).T.reshape(x.shape)
    q = quant.get("recu_act")
    got = jax.grad(lambda v: jnp.sum(q(v, train=True) * g.astype(np.float32)))(
        jnp.asarray(x, jnp.float32)
    )
    np.testing.assert_allclose(got, expected, rtol=1e-3, atol=1e-5)


def test_weight_gradient_closed_form():
    rng = np.random.default_rng(5)
    w = reference.laplace(rng, (3, 3, 4, 6), 0.1).astype(np.float64)
    g = rng.normal(size=w.shape)
    tau = 0.85
    cols = reference.per_filter(w)
    w_tilde = reference.standardize(cols, 1e-5, 2 * math.sqrt(2))
    q = -np.abs(w_tilde).mean() * np.log(2 - 2 * tau)
    h = reference.per_filter(g) * (np.abs(w_tilde) <= q)
    expected = reference.standardize_vjp(cols, h, 1e-5, 2 * math.sqrt(2)).reshape(w.shape)
    got = jax.grad(lambda v: jnp.sum(quant.get("recu", tau=tau)(v) * g.astype(np.float32)))(
        jnp.asarray(w, jnp.float32)
    )
    np.testing.assert_allclose(got, expected, rtol=1e-3, atol=1e-4)


@pytest.mark.parametrize(
    "epoch,total,tau",
    [
        (0, 600, 0.85),
        (150, 600, 0.873141),
        (300, 600, 0.902856),
        (450, 600, 0.941010),
        (599, 600, 0.989631),
        (199, 200, 0.988895),
        (600, 600, 0.99),
    ],
)
def test_tau_schedule(epoch, total, tau):
    np.testing.assert_allclose(recu.tau_schedule(epoch / total), tau, atol=1e-6)


def test_tau_schedule_monotone():
    taus = np.asarray(recu.tau_schedule(jnp.linspace(0, 1, 601)))
    assert np.all(np.diff(taus) > 0)


def test_scheduled_quantizer_uses_progress():
    q = quant.get("recu")
    np.testing.assert_allclose(q.current_tau(150 / 600), 0.873141, atol=1e-6)
    np.testing.assert_allclose(q.current_tau(None), 0.99, atol=1e-6)


@pytest.mark.parametrize(
    "field,value", [("tau", 0.5), ("tau", 1.0), ("tau", 0.3), ("tau_min", 1.2)]
)
def test_tau_out_of_range(field, value):
    with pytest.raises(ValueError, match=rf"{field} must lie in \(0.5, 1\).*got {value}"):
        quant.get("recu", **{field: value})


@given(st.floats(0.6, 0.99), st.integers(0, 2**16))
def test_property_mask_fraction_on_laplace(tau, seed):
    w = reference.laplace(np.random.default_rng(seed), (3, 3, 32, 64), 0.05)
    got = jax.grad(lambda v: jnp.sum(recu.clamp_sign(v, recu.clamp_threshold(v, tau))))(
        recu.standardize_weights(jnp.asarray(w))
    )
    dead = 1.0 - float(jnp.mean(got))
    assert abs(dead - 2 * (1 - tau)) < 0.015
