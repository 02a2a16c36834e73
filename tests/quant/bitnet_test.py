"""BitNet's quantizers against NumPy closed forms: ternary absmean, centred binary, per-token
absmax/absmean activations; identity straight-through gradients; group-wise scales."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bnnlab import quant


def normal(shape, seed=0):
    return np.random.default_rng(seed).normal(size=shape).astype(np.float32)


def groups(w, granularity, group_size=None):
    """NumPy view of ``w`` and the axes one scale is shared over (keepdims)."""
    if granularity == "tensor":
        return w, tuple(range(w.ndim))
    if granularity == "channel":
        return w, tuple(range(w.ndim - 1))
    k, n = w.shape[-2:]
    return w.reshape(*w.shape[:-2], k // group_size, group_size, n), (
        *range(w.ndim - 2),
        w.ndim - 1,
    )


CASES = [("tensor", None), ("channel", None), ("group", 4)]


@pytest.mark.parametrize("granularity,group_size", CASES)
def test_ternary_absmean_closed_form(granularity, group_size):
    w = normal((3, 8, 5))
    q = quant.TernaryAbsmean(granularity=granularity, group_size=group_size)
    view, axes = groups(w, granularity, group_size)
    gamma = np.maximum(np.abs(view).mean(axis=axes, keepdims=True), 1e-5)
    want = (np.clip(np.round(view / gamma), -1, 1) * gamma).reshape(w.shape)
    np.testing.assert_allclose(q(jnp.asarray(w)), want, rtol=1e-6)
    enc = q.encode(jnp.asarray(w))
    assert set(np.unique(enc.codes)) <= {-1, 0, 1} and enc.bits == 2
    np.testing.assert_array_equal(enc.decode(), q(jnp.asarray(w)))


def test_ternary_hand_worked_example():
    # mean|W| = (0.1 + 0.5 + 1.0 + 2.4) / 4 = 1.0: W / γ rounds to 0, 0 (0.5 ties to even), 1, 1.
    w = jnp.asarray([[0.1, -0.5], [1.0, -2.4]])
    np.testing.assert_array_equal(quant.TernaryAbsmean()(w), [[0.0, -0.0], [1.0, -1.0]])


@pytest.mark.parametrize("granularity,group_size", CASES)
@pytest.mark.parametrize("center", [True, False])
def test_binary_absmean_closed_form(granularity, group_size, center):
    w = normal((8, 6), seed=1) + 0.3
    q = quant.BinaryAbsmean(granularity=granularity, group_size=group_size, center=center)
    view, axes = groups(w, granularity, group_size)
    beta = np.abs(view).mean(axis=axes, keepdims=True)
    centred = view - view.mean(axis=axes, keepdims=True) if center else view
    want = (np.where(centred >= 0, 1.0, -1.0) * beta).reshape(w.shape)
    np.testing.assert_allclose(q(jnp.asarray(w)), want, rtol=1e-6)


@pytest.mark.parametrize("k_bit,statistic", [(8, "absmax"), (4, "absmax"), (4, "absmean")])
def test_token_absmax_closed_form(k_bit, statistic):
    x = normal((2, 5, 16), seed=2) * 3
    q = quant.TokenAbsmax(k_bit=k_bit, statistic=statistic)
    top = 2 ** (k_bit - 1) - 1
    if statistic == "absmax":
        s = np.abs(x).max(-1, keepdims=True) / top
    else:
        s = np.abs(x).mean(-1, keepdims=True) / np.sqrt(top)
    codes = np.clip(np.round(x / s), -top - 1, top)
    np.testing.assert_allclose(q(jnp.asarray(x)), codes * s, rtol=1e-5, atol=1e-6)
    enc = q.encode(jnp.asarray(x))
    np.testing.assert_array_equal(enc.codes, codes.astype(np.int8))
    if statistic == "absmax":  # never clips: the largest magnitude of each token maps to ±Q
        assert (np.abs(enc.codes).max(-1) == top).all()


@pytest.mark.parametrize(
    "q",
    [
        quant.TernaryAbsmean(),
        quant.TernaryAbsmean(granularity="group", group_size=2),
        quant.BinaryAbsmean(granularity="channel"),
        quant.TokenAbsmax(),
        quant.TokenAbsmax(k_bit=4, statistic="absmean"),
    ],
)
def test_identity_straight_through(q):
    x = jnp.asarray(normal((4, 6), seed=3) * 4)  # absmean clips some of these
    g = jnp.asarray(normal((4, 6), seed=4))
    np.testing.assert_array_equal(jax.grad(lambda v: jnp.sum(q(v) * g))(x), g)


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="group_size"):
        quant.TernaryAbsmean(granularity="group")
    with pytest.raises(ValueError, match="only used with granularity='group'"):
        quant.BinaryAbsmean(group_size=4)
    with pytest.raises(ValueError, match="must divide the kernel's input axis"):
        quant.TernaryAbsmean(granularity="group", group_size=3)(jnp.ones((8, 2)))
    with pytest.raises(ValueError, match="statistic"):
        quant.TokenAbsmax(statistic="rms")
    with pytest.raises(ValueError, match="k_bit"):
        quant.TokenAbsmax(k_bit=1)
