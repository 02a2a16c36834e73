"""Building blocks shared by the model zoo: which convs are binary, BatchNorm, activations,
shortcuts.

Conventions taken from the papers' PyTorch code: 3×3 convs pad symmetrically by k // 2 (so a
stride-2 conv on an odd input rounds up, unlike Flax's 'SAME'), convs have no bias (BatchNorm
follows), BatchNorm uses PyTorch's momentum 0.1 (Flax momentum 0.9) and ε = 1e-5, and the first
conv and the classifier always stay full precision.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import flax.linen as nn
import jax.numpy as jnp
from flax.linen import initializers

from bnnlab import quant
from bnnlab.layers import activations, quantized

ACTIVATIONS = ("hardtanh", "relu", "prelu", "rprelu", "identity")
SHORTCUTS = ("avgpool_pad", "subsample_pad", "binary_conv", "fp_conv", "avgpool_fp_conv")


@dataclasses.dataclass(frozen=True)
class QuantSpec:
    """How the binary convs of a model quantize: kernel and input quantizers, the learnable
    per-channel scale, and the padding value. All None means a float model."""

    kernel: quant.Quantizer | str | None = None
    inputs: quant.Quantizer | str | None = None
    scale: str | None = None
    pad_value: float = 0.0

    def __post_init__(self):
        # Resolve names now, so an unknown quantizer fails when the model is configured.
        object.__setattr__(self, "kernel", quant.resolve(self.kernel))
        object.__setattr__(self, "inputs", quant.resolve(self.inputs))
        quantized.check_pad_value(self.pad_value)

    @property
    def is_float(self) -> bool:
        return self.kernel is None and self.inputs is None


FLOAT = QuantSpec()


def channels(features: int, width: float) -> int:
    """Width-multiplied channel count (at least 1)."""
    return max(1, int(round(features * width)))


def conv(spec: QuantSpec, features: int, kernel: int, strides: int = 1, name: str | None = None):
    """A k×k conv without bias, padded by k // 2 on each side (PyTorch's ``padding=k//2``)."""
    pad = kernel // 2
    return quantized.QuantConv(
        features,
        (kernel, kernel),
        strides=strides,
        padding=((pad, pad), (pad, pad)),
        use_bias=False,
        kernel_quantizer=spec.kernel,
        input_quantizer=spec.inputs,
        scale=spec.scale,
        pad_value=spec.pad_value,
        name=name,
    )


def batch_norm(train: bool, gamma_init: float = 1.0, name: str | None = None) -> nn.BatchNorm:
    return nn.BatchNorm(
        use_running_average=not train,
        momentum=0.9,
        epsilon=1e-5,
        scale_init=initializers.constant(gamma_init),
        name=name,
    )


class Activation(nn.Module):
    """The nonlinearity named by ``kind`` (one of ``ACTIVATIONS``)."""

    kind: str

    @nn.compact
    def __call__(self, x):
        if self.kind == "hardtanh":
            return activations.hardtanh(x)
        if self.kind == "relu":
            return nn.relu(x)
        if self.kind == "prelu":
            return activations.PReLU()(x)
        if self.kind == "rprelu":
            return activations.RPReLU()(x)
        if self.kind == "identity":
            return x
        raise ValueError(f"Unknown activation {self.kind!r}; use one of {ACTIVATIONS}.")


def check_choice(what: str, value: Any, allowed: tuple) -> None:
    if value not in allowed:
        raise ValueError(f"Unknown {what} {value!r}; use one of {allowed}.")


def pad_channels(x, features: int):
    extra = features - x.shape[-1]
    return jnp.pad(x, [(0, 0)] * (x.ndim - 1) + [(extra // 2, extra - extra // 2)])


def avg_pool2(x):
    return nn.avg_pool(x, (2, 2), (2, 2), padding="SAME", count_include_pad=False)


class Shortcut(nn.Module):
    """The shortcut of a residual unit: the identity, unless it changes resolution or width.

    ``avgpool_pad``: AvgPool 2×2 + zero channels (ReCU's parameter-free CIFAR downsample);
    ``subsample_pad``: x[:, ::2, ::2] + zero channels (option A, SiMaN's ResNet-20);
    ``binary_conv``: binary 1×1 stride-s conv + BN (SiMaN's CIFAR ResNet-18);
    ``fp_conv``: float 1×1 stride-s conv + BN (ReCU/SiMaN ImageNet);
    ``avgpool_fp_conv``: AvgPool 2×2 + float 1×1 conv + BN (Bi-Real, ReActNet).
    """

    kind: str
    features: int
    strides: int
    spec: QuantSpec = FLOAT
    gamma_init: float = 1.0

    @nn.compact
    def __call__(self, x, train: bool, progress=None):
        check_choice("shortcut", self.kind, SHORTCUTS)
        if self.strides == 1 and x.shape[-1] == self.features:
            return x
        if self.kind in ("avgpool_pad", "subsample_pad"):
            if self.strides != 1:
                x = avg_pool2(x) if self.kind == "avgpool_pad" else x[:, ::2, ::2]
            return pad_channels(x, self.features)
        spec = self.spec if self.kind == "binary_conv" else FLOAT
        strides = self.strides
        if self.kind == "avgpool_fp_conv" and self.strides != 1:
            x, strides = avg_pool2(x), 1
        x = conv(spec, self.features, 1, strides, name="conv")(x, train=train, progress=progress)
        return batch_norm(train, self.gamma_init, name="bn")(x)
