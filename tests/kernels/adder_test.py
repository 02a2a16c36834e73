"""AdderNet L1 kernel: the Pallas kernel (interpreted) and the XLA path bit-exact against the
broadcast reference and a NumPy loop. Integer-valued inputs keep every partial sum exact, so
any summation order gives the same float — exact equality is then the right test."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bnnlab.kernels import adder, patches


@pytest.mark.parametrize("backend", ["interpret", "xla"])
@pytest.mark.parametrize("r,k,o", [(1, 1, 1), (7, 27, 5), (70, 100, 130), (33, 576, 16)])
def test_distance_bit_exact(r, k, o, backend):
    rng = np.random.default_rng(r + k)
    p = rng.integers(-8, 9, size=(r, k)).astype(np.float32)
    f = rng.integers(-8, 9, size=(k, o)).astype(np.float32)
    expected = -np.abs(p[:, :, None] - f[None]).sum(axis=1)
    np.testing.assert_array_equal(adder.distance(jnp.asarray(p), jnp.asarray(f), backend), expected)
    np.testing.assert_array_equal(adder.distance_reference(p, f), expected)


def test_row_blocks_cover_every_row():
    # More rows than one block: the padded last block must be cut off exactly.
    rng = np.random.default_rng(0)
    r = adder.ROW_BLOCK + 37
    p = rng.integers(-4, 5, size=(r, 9)).astype(np.float32)
    f = rng.integers(-4, 5, size=(9, 3)).astype(np.float32)
    np.testing.assert_array_equal(
        adder.distance_xla(jnp.asarray(p), jnp.asarray(f)), adder.distance_reference(p, f)
    )


@pytest.mark.parametrize("backend", ["interpret", "xla"])
@pytest.mark.parametrize(
    "shape,k,stride,padding",
    [((1, 6, 6, 3), 3, 1, "SAME"), ((2, 7, 7, 5), 3, 2, "SAME"), ((1, 5, 8, 4), 2, 1, "VALID")],
)
def test_conv_matches_numpy_loops(shape, k, stride, padding, backend):
    rng = np.random.default_rng(k * stride)
    x = rng.integers(-5, 6, size=shape).astype(np.float32)
    f = rng.integers(-5, 6, size=(k, k, shape[-1], 4)).astype(np.float32)
    pads = patches.explicit_padding(padding, shape[1:3], (k, k), (stride, stride))
    xp = np.pad(x, [(0, 0), *pads, (0, 0)])  # zero padding: a padded tap adds |F|
    ho, wo = (xp.shape[1] - k) // stride + 1, (xp.shape[2] - k) // stride + 1
    expected = np.zeros((shape[0], ho, wo, 4), np.float32)
    for i in range(ho):
        for j in range(wo):
            patch = xp[:, i * stride : i * stride + k, j * stride : j * stride + k, :, None]
            expected[:, i, j] = -np.abs(patch - f[None]).sum(axis=(1, 2, 3))
    got = adder.adder_conv2d(jnp.asarray(x), jnp.asarray(f), (stride, stride), padding, backend)
    np.testing.assert_array_equal(got, expected)


def test_kernel_backends_share_the_gradient():
    rng = np.random.default_rng(1)
    x = jnp.asarray(rng.normal(size=(1, 5, 5, 3)), jnp.float32)
    f = jnp.asarray(rng.normal(size=(3, 3, 3, 4)), jnp.float32)

    def loss(backend):
        return lambda x, f: jnp.sum(adder.adder_conv2d(x, f, (1, 1), "SAME", backend) ** 2)

    got = jax.grad(loss("interpret"), (0, 1))(x, f)
    want = jax.grad(loss("xla"), (0, 1))(x, f)
    for a, b in zip(got, want, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)


def test_filter_gradient_has_no_cancellation():
    """∂L/∂F = Σ_r G·(P − F) when patches and filters share a large offset (AdderNet filters
    move towards the patches they match): the float32 gradient must keep float32 accuracy
    relative to the float64 sum on the same inputs. PᵀG − F·ΣG loses two digits here."""
    rng = np.random.default_rng(2)
    x = (50.0 + 0.3 * rng.normal(size=(4, 9, 9, 16))).astype(np.float32)
    f = (50.0 + 0.3 * rng.normal(size=(3, 3, 16, 8))).astype(np.float32)
    g = rng.normal(size=(4, 7, 7, 8)).astype(np.float32)

    def filter_grad(x, f):
        _, vjp = jax.vjp(lambda f: adder.adder_conv2d(x, f, (1, 1), "VALID"), f)
        return vjp(jnp.asarray(g))[0]

    got = np.asarray(jax.jit(filter_grad)(jnp.asarray(x), jnp.asarray(f)), np.float64)
    x64, f64, g64 = (a.astype(np.float64) for a in (x, f, g))
    expected = np.zeros(f.shape)
    for i in range(3):
        for j in range(3):
            patch = x64[:, i : i + 7, j : j + 7, :, None]  # (N, 7, 7, C_in, 1)
            diff = patch - f64[i, j][None, None, None]  # P − F per tap
            expected[i, j] = np.einsum("nhwco,nhwo->co", diff, g64)
    error = np.linalg.norm(got - expected) / np.linalg.norm(expected)
    assert error < 1e-6, error
