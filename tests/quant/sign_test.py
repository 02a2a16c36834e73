"""Sign-type quantizers: exact forward values and closed-form pseudo-gradients (larq's test set)."""

import hypothesis.extra.numpy as hnp
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from bnnlab import quant
from bnnlab.quant import math as qmath

import reference


def values_with_zeros():
    """Values inside and beyond the clip range, with exact zeros on purpose."""
    x = np.linspace(-3.0, 3.0, 61).astype(np.float32)
    return np.concatenate([x, np.zeros(3, np.float32), [-1.0, 1.0, -0.5, 0.5, -0.25, 0.25]])


def grad_of(q, x, **kwargs):
    return np.asarray(jax.grad(lambda v: jnp.sum(q(v, **kwargs)))(jnp.asarray(x)))


def test_sign_of_zero_is_plus_one():
    np.testing.assert_array_equal(qmath.sign(jnp.array([0.0, -0.0, 1e-30, -1e-30])), [1, 1, 1, -1])


@pytest.mark.parametrize("name", ["ste_sign", "approx_sign", "swish_sign", "ede_sign", "rbnn_sign"])
def test_sign_forward_exact(name):
    x = values_with_zeros()
    y = np.asarray(quant.get(name)(jnp.asarray(x)))
    np.testing.assert_array_equal(y, reference.sign(x))
    # ±1 inputs come back unchanged.
    pm = np.array([-1.0, 1.0, 1.0, -1.0], np.float32)
    np.testing.assert_array_equal(quant.get(name)(jnp.asarray(pm)), pm)


@pytest.mark.parametrize("clip", [0.5, 1.0, 2.0])
def test_ste_sign_gradient(clip):
    x = values_with_zeros()
    expected = (np.abs(x) <= clip).astype(np.float32)
    np.testing.assert_array_equal(grad_of(quant.get("ste_sign", clip_value=clip), x), expected)


def test_approx_sign_gradient_closed_form():
    x = values_with_zeros()
    piecewise = np.select([(x >= -1) & (x < 0), (x >= 0) & (x < 1)], [2 + 2 * x, 2 - 2 * x], 0.0)
    np.testing.assert_allclose(grad_of(quant.get("approx_sign"), x), piecewise, atol=1e-6)


def test_approx_sign_surrogate_values():
    # docs/baselines.md, ApproxSign: 2 at 0, 1.5 at ±0.25, 1.0 at ±0.5, 0 for |x| >= 1.
    x = np.array([0.0, 0.25, -0.25, 0.5, -0.5, 1.0, -1.0, 1.5], np.float32)
    np.testing.assert_allclose(
        grad_of(quant.get("approx_sign"), x), [2, 1.5, 1.5, 1, 1, 0, 0, 0], atol=1e-6
    )


@pytest.mark.parametrize("beta", [1.0, 5.0, 10.0])
def test_swish_sign_gradient_closed_form(beta):
    x = values_with_zeros().astype(np.float64)
    # d/dx [2σ(βx)(1 + βx(1 − σ(βx))) − 1], written out with σ.
    s = 1 / (1 + np.exp(-beta * x))
    expected = 2 * beta * s * (1 - s) * (2 + beta * x * (1 - 2 * s))
    np.testing.assert_allclose(
        grad_of(quant.get("swish_sign", beta=beta), x.astype(np.float32)), expected, atol=1e-5
    )


def test_ste_heaviside():
    x = values_with_zeros()
    q = quant.get("ste_heaviside")
    np.testing.assert_array_equal(q(jnp.asarray(x)), (x > 0).astype(np.float32))
    np.testing.assert_array_equal(grad_of(q, x), (np.abs(x) <= 1).astype(np.float32))


def test_identity_is_noop():
    x = values_with_zeros()
    q = quant.get("identity")
    np.testing.assert_array_equal(q(jnp.asarray(x)), x)
    np.testing.assert_array_equal(grad_of(q, x), np.ones_like(x))
    assert q.precision == 32


@given(
    hnp.arrays(
        np.float32,
        hnp.array_shapes(min_dims=1, max_dims=3, max_side=6),
        elements=st.floats(-4, 4, width=32, allow_subnormal=False),
    ),
    st.sampled_from(["ste_sign", "approx_sign", "swish_sign", "ede_sign", "rbnn_sign"]),
)
def test_property_outputs_are_plus_minus_one(x, name):
    y = np.asarray(quant.get(name)(jnp.asarray(x)))
    assert set(np.unique(y)) <= {-1.0, 1.0}
    np.testing.assert_array_equal(y[x == 0], 1.0)
    np.testing.assert_array_equal(y, reference.sign(x))


@pytest.mark.parametrize("name", ["ste_sign", "ste_heaviside", "swish_sign"])
def test_bad_hyperparameters_raise(name):
    field = "beta" if name == "swish_sign" else "clip_value"
    with pytest.raises(ValueError, match=f"{field} must be > 0, got -1"):
        quant.get(name, **{field: -1.0})
