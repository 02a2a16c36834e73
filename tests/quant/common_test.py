"""Behaviour every registered quantizer shares: hashing, jit, encode, no retracing, input-rank
checks, and outputs in the quantizer's value set (the registry itself: quant_test.py)."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from bnnlab import quant

ALL = quant.available()
WEIGHT_ONLY = {"magnitude_aware_sign", "xnor_sign", "ir_net", "recu", "siman"}
ACTIVATION_ONLY = {"recu_act", "siman_act"}


def call_kwargs(q, x):
    kwargs = dict(q.init_learnable(x))
    return kwargs


def sample(seed=0, shape=(4, 3, 3, 6)):
    return jnp.asarray(np.random.default_rng(seed).normal(size=shape), jnp.float32)


@pytest.mark.parametrize("name", ALL)
def test_hashable_and_static_under_jit(name):
    q = quant.get(name)
    assert hash(q) == hash(quant.get(name)) and q == quant.get(name)
    x = sample()

    @jax.jit
    def f(x, kwargs):
        return q(x, **kwargs)

    np.testing.assert_array_equal(f(x, call_kwargs(q, x)), q(x, **call_kwargs(q, x)))


@pytest.mark.parametrize("name", ALL)
def test_encode_decodes_to_forward(name):
    q = quant.get(name)
    x = sample(1)
    kwargs = call_kwargs(q, x)
    enc = q.encode(x, **kwargs)
    assert enc.bits == q.precision
    np.testing.assert_array_equal(enc.decode(), q(x, **kwargs))


@pytest.mark.parametrize("name", ["recu", "siman", "ir_net", "ede_sign", "rbnn_sign"])
def test_progress_change_does_not_retrace(name):
    q = quant.get(name)

    @jax.jit
    @chex.assert_max_traces(n=1)
    def step(w, progress):
        def loss(v):
            return jnp.sum(q(v, progress=progress) ** 2 * jnp.arange(v.size).reshape(v.shape))

        return jax.grad(loss)(w), q.project(w, progress)

    chex.clear_trace_counter()
    w = sample(2)
    for p in [0.0, 0.25, 0.5, 0.999]:
        step(w, jnp.float32(p))


@pytest.mark.parametrize("name", sorted(WEIGHT_ONLY))
def test_per_filter_quantizers_need_a_kernel(name):
    with pytest.raises(ValueError, match=r"needs a kernel with an output-channel axis last"):
        quant.get(name)(jnp.ones((5,)))


@pytest.mark.parametrize("name", sorted(ACTIVATION_ONLY))
def test_per_sample_quantizers_need_a_batch(name):
    with pytest.raises(ValueError, match=r"needs a batch axis first"):
        quant.get(name)(jnp.ones((5,)))


def allowed(name, q, x, kwargs):
    """The value set each quantizer may output, from its definition."""
    y = np.asarray(q(x, **kwargs))
    if name in ("magnitude_aware_sign", "xnor_sign", "ir_net"):
        scale = np.asarray(q.encode(x, **kwargs).scale)
        return np.isin(np.round(y / scale, 6), [-1, 1])
    if name == "ste_heaviside":
        return np.isin(y, [0, 1])
    if name == "dorefa":
        levels = y * 3  # default k_bit = 2, activations: {0, 1/3, 2/3, 1}
        return np.isclose(levels, np.round(levels), atol=1e-5) & (y >= 0) & (y <= 1)
    if name == "lsq":
        r = y / np.asarray(kwargs["step"])
        return np.isclose(r, np.round(r), atol=1e-4) & (r >= -2) & (r <= 1)
    if name in ("ternary_absmean", "binary_absmean", "token_absmax"):
        codes = np.round(y / np.asarray(q.encode(x, **kwargs).full_scale()), 4)
        if name == "token_absmax":  # default 8 bits
            return (codes == np.round(codes)) & (codes >= -128) & (codes <= 127)
        return np.isin(codes, [-1, 0, 1] if name == "ternary_absmean" else [-1, 1])
    if name == "identity":
        return np.ones(y.shape, bool)
    return np.isin(y, [-1, 1])


@given(st.sampled_from(ALL), st.integers(0, 2**16), st.floats(0.0, 1.0))
def test_property_outputs_in_allowed_set(name, seed, progress):
    q = quant.get(name)
    x = sample(seed, (3, 2, 2, 4))
    kwargs = call_kwargs(q, x)
    kwargs["progress"] = progress
    assert allowed(name, q, x, kwargs).all()
