"""Order statistics used by SiMaN, against NumPy, including ties, zeros and traced inputs."""

import hypothesis.extra.numpy as hnp
import jax
import jax.numpy as jnp
import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from bnnlab import quant
from bnnlab.quant import math as qmath

MAGNITUDES = hnp.arrays(
    np.float32,
    st.tuples(st.integers(1, 40), st.integers(1, 4)),
    elements=st.sampled_from([0.0, 0.5, 1.0, 3.0])
    | st.floats(0, 100, width=32, allow_subnormal=False),
)


@settings(max_examples=40)
@given(MAGNITUDES, st.data())
def test_kth_smallest_matches_sort(x, data):
    k = data.draw(st.integers(0, x.shape[0] - 1))
    np.testing.assert_array_equal(jax.jit(qmath.kth_smallest)(x, k), np.sort(x, axis=0)[k])


@settings(max_examples=40)
@given(MAGNITUDES, st.floats(0, 100))
def test_percentile_matches_numpy(x, q):
    got = jax.jit(qmath.percentile)(x, q)
    np.testing.assert_allclose(got, np.percentile(x, q), rtol=1e-6, atol=1e-6)


def test_first_true():
    mask = np.zeros((7, 3), bool)
    mask[[1, 3, 4], 0] = True
    mask[[0, 6], 1] = True
    got = np.asarray(jax.jit(qmath.first_true)(mask, np.array([2, 5, 1])))
    expected = np.zeros_like(mask)
    expected[[1, 3], 0] = True
    expected[[0, 6], 1] = True
    np.testing.assert_array_equal(got, expected)
    np.testing.assert_array_equal(qmath.first_true(mask, np.array([0, 0, 0])), False)


@settings(max_examples=15)
@given(st.integers(0, 2**16), st.sampled_from([(4, 3, 3, 6), (3, 3, 16, 8), (1, 1, 2, 3)]))
def test_simaN_balance_under_jit(seed, shape):
    x = jnp.asarray(np.random.default_rng(seed).normal(size=shape), jnp.float32)
    n = int(np.prod(shape[:-1]))
    q = quant.get("siman")
    for out in (q(x), jax.jit(lambda v: q(v))(x)):
        np.testing.assert_array_equal((np.asarray(out).reshape(n, -1) == 1).sum(0), n // 2)
