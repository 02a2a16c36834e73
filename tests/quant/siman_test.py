"""SiMaN: every check of docs/siman.md that concerns the quantizer, closed-form gradients,
and property tests (the layer-level eval freezing and weight-decay checks are in tests/layers)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bnnlab import quant
from bnnlab.quant import siman

import reference

HAND_W = np.array([0.1, -0.5, 0.3, -0.2], np.float32).reshape(2, 2, 1, 1)


def test_hand_example():
    centred = siman.clip_latent(jnp.asarray(HAND_W), 0.0)  # p = 0: centring only
    np.testing.assert_allclose(centred.ravel(), [0.175, -0.425, 0.375, -0.125], rtol=1e-5)
    w_hat = siman.standardize_weights(centred)
    np.testing.assert_allclose(w_hat.ravel(), [0.49998, -1.214236, 1.071385, -0.357128], rtol=1e-5)
    code = siman.magnitude_code(w_hat)
    np.testing.assert_array_equal(code.ravel(), [0, 1, 1, 0])
    # The large *negative* latent −0.5 maps to +1: magnitude, not sign.
    np.testing.assert_array_equal(quant.get("siman")(centred).ravel(), [-1, 1, 1, -1])
    np.testing.assert_array_equal(quant.get("siman")(jnp.asarray(HAND_W)).ravel(), [-1, 1, 1, -1])


def test_balance_exactly_half_ones():
    w = np.random.default_rng(0).normal(size=(3, 3, 64, 64)).astype(np.float32)
    wb = np.asarray(quant.get("siman")(jnp.asarray(w)))
    np.testing.assert_array_equal((wb == 1).sum(axis=(0, 1, 2)), 288)
    np.testing.assert_array_equal(wb.sum(axis=(0, 1, 2)), 0)


def test_eval_uses_stored_code():
    w = jnp.asarray(np.random.default_rng(1).normal(size=(3, 3, 4, 8)), jnp.float32)
    q = quant.get("siman")
    code = q.next_state(w)
    perturbed = w + jnp.asarray(np.random.default_rng(2).normal(size=w.shape), jnp.float32)
    np.testing.assert_array_equal(q(perturbed, train=False, state=code), q(w))
    # A given state is used in either mode (the layer passes the code it just computed in
    # training); without one the code is recomputed from the weights.
    np.testing.assert_array_equal(q(perturbed, train=True, state=code), q(w))
    assert not np.array_equal(q(perturbed, train=True), q(w))
    np.testing.assert_array_equal(q.init_state(w), (np.asarray(w) >= 0).astype(np.float32))


def test_straight_through_on_magnitude():
    w_hat = jnp.asarray(np.random.default_rng(3).normal(size=(3, 3, 4, 8)), jnp.float32)
    grad = jax.grad(lambda v: jnp.sum(siman.magnitude_binarize(v)))(w_hat)
    np.testing.assert_array_equal(grad, reference.sign(np.asarray(w_hat)))


def test_weight_gradient_closed_form():
    rng = np.random.default_rng(4)
    w = rng.normal(size=(3, 3, 4, 6)).astype(np.float64)
    g = rng.normal(size=w.shape)
    cols = reference.per_filter(w)
    w_hat = reference.standardize(cols, 1e-5)
    expected = reference.standardize_vjp(cols, reference.per_filter(g) * np.sign(w_hat), 1e-5)
    got = jax.grad(lambda v: jnp.sum(quant.get("siman")(v) * g.astype(np.float32)))(
        jnp.asarray(w, jnp.float32)
    )
    np.testing.assert_allclose(got, expected.reshape(w.shape), rtol=1e-3, atol=1e-5)


def test_clipping_step():
    rng = np.random.default_rng(5)
    w = reference.laplace(rng, (3, 3, 64, 64), 0.05) + 0.01
    clipped = np.asarray(quant.get("siman").project(jnp.asarray(w), progress=0.0))  # p = 15
    d = w - w.mean(axis=(0, 1, 2), keepdims=True)
    lo, hi = np.percentile(np.abs(d), [15, 85])
    mag = np.abs(clipped)
    assert abs(np.mean(np.isclose(mag, lo, rtol=1e-6)) - 0.15) < 0.005
    assert abs(np.mean(np.isclose(mag, hi, rtol=1e-6)) - 0.15) < 0.005
    np.testing.assert_array_equal(np.sign(clipped), np.sign(d))
    assert np.abs(clipped.mean(axis=(0, 1, 2))).max() < 0.1 * np.abs(clipped).mean()
    np.testing.assert_allclose(clipped, np.sign(d) * np.clip(np.abs(d), lo, hi), rtol=1e-5)


@pytest.mark.parametrize("epoch,p", [(0, 15.0), (1, 14.9625), (200, 7.5), (399, 0.0375)])
def test_clip_schedule(epoch, p):
    np.testing.assert_allclose(siman.clip_percent(epoch / 400), p, rtol=1e-5)


def test_activation_thresholds_at_sample_mean():
    x = 3.0 + 0.01 * np.random.default_rng(6).normal(size=(8, 6, 6, 4)).astype(np.float32)
    simaN_frac = float(jnp.mean(quant.get("siman_act")(jnp.asarray(x)) == -1))
    recu_frac = float(jnp.mean(quant.get("recu_act")(jnp.asarray(x)) == -1))
    assert abs(simaN_frac - 0.5) < 0.05
    assert recu_frac == 0.0


def test_activation_gradient_closed_form():
    rng = np.random.default_rng(7)
    x = rng.normal(0.5, 1.0, (3, 4, 4, 2)).astype(np.float64)
    g = rng.normal(size=x.shape)
    cols = x.reshape(3, -1).T
    h = g.reshape(3, -1).T * reference.approx_sign_grad(reference.standardize(cols, 1e-5))
    expected = reference.standardize_vjp(cols, h, 1e-5).T.reshape(x.shape)
    got = jax.grad(lambda v: jnp.sum(quant.get("siman_act")(v) * g.astype(np.float32)))(
        jnp.asarray(x, jnp.float32)
    )
    np.testing.assert_allclose(got, expected, rtol=1e-3, atol=1e-5)


def test_no_weight_decay_flag():
    assert quant.get("siman").weight_decay is False
    assert quant.get("recu").weight_decay is True


@settings(max_examples=8)  # every example is a new shape, i.e. a new compile
@given(st.integers(1, 5), st.integers(1, 6), st.sampled_from([1, 2, 3]), st.integers(0, 2**16))
def test_property_ones_per_filter(c_in, c_out, k, seed):
    """exact_half: ⌊n/2⌋ ones per filter always; median: ⌊n/2⌋ minus the ties at the lower
    median above its position (2-element filters always tie, so they get none)."""
    w = np.random.default_rng(seed).normal(size=(k, k, c_in, c_out)).astype(np.float32)
    n = k * k * c_in
    exact = quant.get("siman(ties='exact_half')").encode(jnp.asarray(w)).codes
    np.testing.assert_array_equal(np.asarray(exact).reshape(n, c_out).sum(0), n // 2)
    w_hat = reference.per_filter(np.asarray(siman.standardize_weights(jnp.asarray(w))))
    median = np.asarray(quant.get("siman").encode(jnp.asarray(w)).codes).reshape(n, c_out)
    np.testing.assert_array_equal(median, reference.siman_code(w_hat, "median"))
    assert (median.sum(0) <= n // 2).all()


def test_tie_rules_on_a_plateau():
    """The clip's plateaus make ties: with four equal magnitudes at the median, the released
    rule leaves them all at 0 and exact_half gives the first ones by position a 1."""
    w = np.array([3.0, -1.0, 1.0, -1.0, 1.0, -3.0], np.float32).reshape(1, 1, 6, 1)
    # Mean exactly 0, so |Ŵ| = |W|/s keeps the plateau of four 1s exactly.
    median = np.asarray(quant.get("siman")(jnp.asarray(w))).ravel()
    exact = np.asarray(quant.get("siman(ties='exact_half')")(jnp.asarray(w))).ravel()
    magnitudes = np.abs(w.ravel())
    np.testing.assert_array_equal(median, np.where(magnitudes > np.sort(magnitudes)[2], 1, -1))
    np.testing.assert_array_equal(median, [1, -1, -1, -1, -1, 1])
    np.testing.assert_array_equal(exact, [1, 1, -1, -1, -1, 1])
    with pytest.raises(ValueError, match="ties must be one of"):
        quant.get("siman(ties='random')")
