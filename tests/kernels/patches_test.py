"""im2col: explicit padding against hand-worked pairs, and the patch matrix against direct
NumPy loops (any dtype, padded taps holding ``pad_value``) and, multiplied by a flattened HWIO
kernel, against XLA's convolution."""

import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from bnnlab.kernels import patches


@pytest.mark.parametrize(
    "padding,in_spatial,kernel_size,strides,expected",
    [
        ("VALID", (5, 5), (3, 3), (1, 1), ((0, 0), (0, 0))),
        ("SAME", (5, 5), (3, 3), (1, 1), ((1, 1), (1, 1))),
        # Even kernel: SAME puts the odd padded row and column at the end.
        ("SAME", (5, 5), (2, 2), (1, 1), ((0, 1), (0, 1))),
        # Stride 2: ceil(7/2) = 4 rows need (4−1)·2 + 3 − 7 = 2 padded; ceil(6/2) = 3 columns, 1.
        ("SAME", (7, 6), (3, 3), (2, 2), ((1, 1), (0, 1))),
        ([[1, 0], [2, 1]], (6, 6), (3, 3), (2, 2), ((1, 0), (2, 1))),  # explicit: as given
    ],
)
def test_explicit_padding(padding, in_spatial, kernel_size, strides, expected):
    got = patches.explicit_padding(padding, in_spatial, kernel_size, strides)
    assert got == expected and all(isinstance(p, tuple) for p in got)


def test_unknown_padding_names_itself():
    with pytest.raises(ValueError, match=r"'FULL'"):
        patches.explicit_padding("FULL", (5, 5), (3, 3), (1, 1))


def loop_patches(x, kernel_size, strides, pads, pad_value):
    """Row (n, i, j) holds x at every tap (di, dj) of output (i, j), channels innermost."""
    (kh, kw), (sh, sw) = kernel_size, strides
    xp = np.pad(x, [(0, 0), *pads, (0, 0)], constant_values=pad_value)
    ho, wo = (xp.shape[1] - kh) // sh + 1, (xp.shape[2] - kw) // sw + 1
    out = np.zeros((x.shape[0], ho, wo, kh * kw * x.shape[3]), x.dtype)
    for i in range(ho):
        for j in range(wo):
            taps = [xp[:, i * sh + di, j * sw + dj, :] for di in range(kh) for dj in range(kw)]
            out[:, i, j] = np.concatenate(taps, axis=-1)
    return out


@pytest.mark.parametrize(
    "shape,kernel_size,strides,padding",
    [
        ((1, 5, 5, 3), (3, 3), (1, 1), "SAME"),
        ((2, 7, 6, 2), (3, 3), (2, 2), "SAME"),
        ((1, 6, 5, 4), (2, 3), (1, 2), "VALID"),
        ((1, 6, 6, 1), (3, 3), (2, 2), ((1, 0), (2, 1))),
    ],
)
@pytest.mark.parametrize("dtype,pad_value", [(np.uint32, 0), (np.float32, 0.0), (np.float32, 1.0)])
def test_patches_match_loops(shape, kernel_size, strides, padding, dtype, pad_value):
    rng = np.random.default_rng(sum(shape))
    x = rng.integers(1, 2**31, size=shape).astype(dtype)  # no zeros: padding must show
    pads = patches.explicit_padding(padding, shape[1:3], kernel_size, strides)
    got = patches.patches(jnp.asarray(x), kernel_size, strides, padding, pad_value)
    assert got.dtype == dtype  # packed words stay words
    np.testing.assert_array_equal(got, loop_patches(x, kernel_size, strides, pads, pad_value))


def test_patches_times_a_flat_kernel_is_the_convolution():
    # Features in (k_h, k_w, C) order: an HWIO kernel reshaped to (k_h·k_w·C, O) multiplies them.
    rng = np.random.default_rng(0)
    x = rng.integers(-4, 5, size=(2, 7, 7, 5)).astype(np.float32)  # integers: exact sums
    w = rng.integers(-4, 5, size=(3, 3, 5, 6)).astype(np.float32)
    cols = patches.patches(jnp.asarray(x), (3, 3), (2, 2), "SAME")
    expected = lax.conv_general_dilated(
        x, w, (2, 2), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC")
    )
    np.testing.assert_array_equal(cols @ w.reshape(-1, 6), expected)
