"""Building blocks: PyTorch's k // 2 conv padding, the parameter-free shortcuts, PyTorch's
BatchNorm momentum, width rounding and QuantSpec, against NumPy and hand-worked values."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bnnlab import quant
from bnnlab.models import blocks


def test_conv_pads_k_over_2_on_each_side_unlike_same():
    x = np.arange(16, dtype=np.float32).reshape(1, 4, 4, 1)
    conv = blocks.conv(blocks.FLOAT, 1, 3, strides=2)
    ones = {"params": {"kernel": jnp.ones((3, 3, 1, 1))}}
    y = np.asarray(conv.apply(ones, jnp.asarray(x)))
    # PyTorch's padding=1, stride 2: windows of the zero-padded image at rows/cols 0 and 2.
    padded = np.pad(x[0, :, :, 0], 1)
    expected = [[padded[i : i + 3, j : j + 3].sum() for j in (0, 2)] for i in (0, 2)]
    np.testing.assert_array_equal(y[0, :, :, 0], expected)
    # Flax's 'SAME' pads this even input only at the end: other windows.
    same = nn.Conv(1, (3, 3), 2, padding="SAME", use_bias=False).apply(ones, jnp.asarray(x))
    assert not np.array_equal(np.asarray(same), y)


def test_parameter_free_shortcuts():
    x = np.random.default_rng(0).normal(size=(2, 4, 4, 2)).astype(np.float32)

    def shortcut(kind, features, strides):
        return np.asarray(blocks.Shortcut(kind, features, strides).apply({}, x, train=True))

    pad = [(0, 0), (0, 0), (0, 0), (1, 1)]  # 2 → 4 channels: one zero channel on each side
    pooled = x.reshape(2, 2, 2, 2, 2, 2).mean(axis=(2, 4))  # 2×2 average pool
    np.testing.assert_allclose(shortcut("avgpool_pad", 4, 2), np.pad(pooled, pad), rtol=1e-6)
    np.testing.assert_array_equal(shortcut("subsample_pad", 4, 2), np.pad(x[:, ::2, ::2], pad))
    np.testing.assert_array_equal(shortcut("fp_conv", 2, 1), x)  # same shape: the identity


def test_batch_norm_follows_pytorch_momentum_and_gamma_init():
    x = jnp.asarray(np.random.default_rng(1).normal(2.0, 3.0, size=(8, 5)), jnp.float32)
    bn = blocks.NormSpec(gamma_init=0.5)(train=True)
    variables = bn.init(jax.random.key(0), x)
    np.testing.assert_array_equal(variables["params"]["scale"], 0.5)
    _, updated = bn.apply(variables, x, mutable=["batch_stats"])
    # PyTorch, momentum 0.1: running ← 0.9·running + 0.1·batch statistic (biased variance).
    np.testing.assert_allclose(updated["batch_stats"]["mean"], 0.1 * x.mean(0), rtol=1e-5)
    np.testing.assert_allclose(
        updated["batch_stats"]["var"], 0.9 + 0.1 * np.var(np.asarray(x), axis=0), rtol=1e-5
    )
    assert blocks.NormSpec(frozen=True)(train=True).use_running_average


def test_channels_and_quant_spec():
    assert [blocks.channels(f, w) for f, w in ((64, 0.25), (512, 0.125), (3, 0.1))] == [16, 64, 1]
    assert blocks.FLOAT.is_float
    spec = blocks.QuantSpec("ste_sign", "ste_sign(clip_value=2.0)")
    assert spec.kernel == quant.SteSign() and spec.inputs == quant.SteSign(clip_value=2.0)
    assert not spec.is_float and not blocks.QuantSpec(adder=True).is_float
    with pytest.raises(ValueError, match=r"adder=True .* takes no quantizers"):
        blocks.QuantSpec("ste_sign", adder=True)
