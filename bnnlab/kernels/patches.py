"""im2col from strided slices, shared by the adder and XNOR convolutions.

Built from slices rather than ``lax.conv_general_dilated_patches``: its transpose (for input
gradients) is then a cheap scatter-add, where the conv-based version costs a dense convolution
with K output channels (60× slower on CPU), and it works on any dtype (packed uint32 words).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax import lax

Array = jax.Array


def explicit_padding(padding, in_spatial, kernel_size, strides):
    """'SAME' / 'VALID' / ((top, bottom), (left, right)) as explicit pairs."""
    if isinstance(padding, str):
        if padding not in ("SAME", "VALID"):
            raise ValueError(f"padding must be 'SAME', 'VALID' or explicit pairs, got {padding!r}.")
        return tuple(lax.padtype_to_pads(in_spatial, kernel_size, strides, padding))
    return tuple(tuple(p) for p in padding)


def patches(x: Array, kernel_size, strides, padding, pad_value=0) -> Array:
    """(N, H', W', k_h·k_w·C) patches of NHWC ``x``, features ordered (k_h, k_w, C) like an
    HWIO kernel; padded taps hold ``pad_value``."""
    (kh, kw), (sh, sw) = kernel_size, strides
    pads = explicit_padding(padding, x.shape[1:3], kernel_size, strides)
    xp = jnp.pad(x, [(0, 0), pads[0], pads[1], (0, 0)], constant_values=pad_value)
    ho, wo = (xp.shape[1] - kh) // sh + 1, (xp.shape[2] - kw) // sw + 1
    taps = [
        xp[:, i : i + (ho - 1) * sh + 1 : sh, j : j + (wo - 1) * sw + 1 : sw, :]
        for i in range(kh)
        for j in range(kw)
    ]
    return jnp.concatenate(taps, axis=-1)
