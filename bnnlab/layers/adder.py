"""AdderNet layer: the L1-distance "convolution" Y = −Σ|X − F| with AdderNet's gradients.

References:
  Chen, Wang, Xu, Shi, Xu, Tian, Xu. "AdderNet: Do We Really Need Multiplications in Deep
  Learning?", CVPR 2020, arXiv 1912.13200 (behaviour of huawei-noah/AdderNet ``adder.py``).

Forward:  Y = −Σ_{c,i,j} |X_patch − F| with zero padding: a padded tap contributes |0 − F| =
          |F|, it is *not* skipped (skipping it is the common porting bug; docs/addernet.md).
Backward: ∂L/∂F = Σ G·(X − F) (full precision, not sgn);
          ∂L/∂X = Σ G·clip(F − X, −1, 1) (HardTanh-clipped).
The per-layer adaptive gradient scaling η·√k/‖g‖₂ is an optax transform
(``bnnlab.train.optim.scale_adder_gradients``). The op and its memory-efficient formulation
live in ``bnnlab.kernels.adder``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
from flax.linen import initializers

from bnnlab.kernels import adder as adder_kernels
from bnnlab.layers import quantized

Array = jax.Array
adder_conv = adder_kernels.adder_conv2d


class AdderConv(nn.Module):
    """AdderNet layer with ``nn.Conv``-like arguments (2-D, NHWC): y = −Σ|x − F| (+ bias).

    Attributes:
      features, kernel_size, strides, padding: as ``nn.Conv`` ('SAME', 'VALID', an int or
        (low, high) pairs); padded taps contribute |F| as in the reference code.
      use_bias: AdderNet layers have none by default (BatchNorm follows them).
      kernel_init: N(0, 1), as the reference (its adder layers are not nn.Conv2d, so PyTorch's
        Kaiming init never touches them).
      dtype: dtype of the output (None: the input's). The L1 distances themselves are always
        computed in float32: they are sums of |x − F| of size 20–60 whose differences, a few
        units, are what the BatchNorm after the layer keeps, and bfloat16 keeps 3 digits.
      backend: forward kernel, ``"xla"`` (default), ``"pallas"``, ``"interpret"`` or ``"auto"``
        (``bnnlab.kernels.backend``); the backward is always the XLA formulation.

    Call: ``layer(x, train=..., progress=...)``; both are accepted for interchangeability with
    ``QuantConv`` and ignored.
    """

    features: int
    kernel_size: int | Sequence[int]
    strides: int | Sequence[int] = 1
    padding: Any = "SAME"
    use_bias: bool = False
    dtype: Any = None
    param_dtype: Any = jnp.float32
    kernel_init: Callable = initializers.normal(1.0)
    bias_init: Callable = initializers.zeros_init()
    backend: str = "xla"

    @nn.compact
    def __call__(self, x: Array, *, train: bool | None = None, progress=None) -> Array:
        del train, progress  # Unused: the adder op is the same in training and evaluation.
        ks = (self.kernel_size,) * 2 if isinstance(self.kernel_size, int) else self.kernel_size
        if len(ks) != 2 or x.ndim != 4:
            raise ValueError(
                f"AdderConv is 2-D: kernel_size of length 2 and NHWC inputs, got kernel_size "
                f"{self.kernel_size} and input shape {x.shape}."
            )
        strides = (self.strides,) * 2 if isinstance(self.strides, int) else tuple(self.strides)
        padding = quantized.explicit_padding(
            nn.linear.canonicalize_padding(self.padding, 2), x.shape[1:3], ks, strides, (1, 1)
        )
        kernel = self.param(
            "kernel", self.kernel_init, (*ks, x.shape[-1], self.features), self.param_dtype
        )
        out_dtype = self.dtype or x.dtype
        x = x.astype(jnp.promote_types(x.dtype, jnp.float32))
        y = adder_conv(x, kernel.astype(x.dtype), strides, tuple(padding), self.backend)
        if self.use_bias:
            y = y + self.param("bias", self.bias_init, (self.features,), self.param_dtype)
        return y.astype(out_dtype)
