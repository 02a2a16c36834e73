"""Order statistics and the upper-half code used by SiMaN, against NumPy, including ties, zeros
and traced inputs."""

import hypothesis.extra.numpy as hnp
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bnnlab import quant
from bnnlab.quant import math as qmath

import reference

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


@pytest.mark.parametrize("ties", qmath.TIE_RULES)
@settings(max_examples=12)  # each example compiles both implementations
@given(x=MAGNITUDES)
def test_upper_half_code_matches_numpy(ties, x):
    """Both implementations (CPU bisection loop, sort for GPU/TPU) equal the sorting reference,
    with ties (the sampled values repeat) and columns of length 1."""
    expected = reference.siman_code(x, ties)
    keys = jax.lax.bitcast_convert_type(jnp.asarray(x), jnp.int32)
    for fn in (qmath._upper_half_by_bisection, qmath._upper_half_by_sort):
        got = jax.jit(fn, static_argnames="ties")(keys, ties=ties)
        np.testing.assert_array_equal(np.asarray(got, np.float32), expected, err_msg=fn.__name__)
    np.testing.assert_array_equal(qmath.upper_half_code(x, ties), expected)


def test_upper_half_code_hand_examples():
    x = np.array([[3.0, 1.0], [1.0, 1.0], [2.0, 1.0], [1.0, 2.0]], np.float32)
    # Column 0: lower median 1 (tied twice): median rule → only 3 and 2; exact half → same.
    # Column 1: lower median 1 (three ties): median rule → only the 2; exact half adds the
    # first tied row.
    np.testing.assert_array_equal(
        qmath.upper_half_code(x, "median"), [[1, 0], [0, 0], [1, 0], [0, 1]]
    )
    np.testing.assert_array_equal(
        qmath.upper_half_code(x, "exact_half"), [[1, 1], [0, 0], [1, 0], [0, 1]]
    )
    with pytest.raises(ValueError, match="ties must be one of"):
        qmath.upper_half_code(x, "lower")


@settings(max_examples=15)
@given(st.integers(0, 2**16), st.sampled_from([(4, 3, 3, 6), (3, 3, 16, 8), (1, 1, 2, 3)]))
def test_simaN_balance_under_jit(seed, shape):
    x = jnp.asarray(np.random.default_rng(seed).normal(size=shape), jnp.float32)
    n = int(np.prod(shape[:-1]))
    q = quant.get("siman(ties='exact_half')")
    for out in (q(x), jax.jit(lambda v: q(v))(x)):
        np.testing.assert_array_equal((np.asarray(out).reshape(n, -1) == 1).sum(0), n // 2)
