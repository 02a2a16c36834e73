"""Building blocks shared by the model zoo: which convs are binary, BatchNorm, activations,
shortcuts.

Conventions taken from the papers' PyTorch code: k×k convs pad symmetrically by k // 2 (a
stride-2 3×3 conv then centres its windows on pixels 0, 2, 4, …; Flax's 'SAME' pads an even
input only at the end and centres them on 1, 3, 5, …; on odd inputs the two agree), convs have
no bias (BatchNorm follows), BatchNorm uses PyTorch's momentum 0.1 (written as Flax's
momentum 0.9: Flax weights the old average, PyTorch the new batch) and ε = 1e-5 with a
two-pass batch variance, the running-variance rule is a model option (``NormSpec.running_var``:
PyTorch's unbiased update in the recipes that replicate released code), and the first conv and
the classifier always stay full precision.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import flax.linen as nn
import jax.numpy as jnp
from flax.linen import initializers

from bnnlab import quant
from bnnlab.layers import activations, adder, quantized
from bnnlab.layers import batch_norm as batch_norm_lib

ACTIVATIONS = ("hardtanh", "relu", "prelu", "rprelu", "identity")
SHORTCUTS = ("avgpool_pad", "subsample_pad", "block_conv", "fp_conv", "avgpool_fp_conv")


@dataclasses.dataclass(frozen=True)
class QuantSpec:
    """What a model's inner convs compute: quantizers for kernel and inputs, the learnable
    per-channel scale and the padding value; or, with ``adder=True``, AdderNet's L1 layers.
    All defaults mean a float model (the first conv and the classifier are always float)."""

    kernel: quant.Quantizer | str | None = None
    inputs: quant.Quantizer | str | None = None
    scale: str | None = None
    pad_value: float = 0.0
    adder: bool = False
    input_norm: str | None = None  # transformers: the sub-layer norm of BitLinear (Rule)

    def __post_init__(self):
        # Resolve names now, so an unknown quantizer fails when the model is configured.
        object.__setattr__(self, "kernel", quant.resolve(self.kernel))
        object.__setattr__(self, "inputs", quant.resolve(self.inputs))
        quantized.check_pad_value(self.pad_value)
        if self.adder and (self.kernel or self.inputs or self.scale):
            raise ValueError(
                "adder=True replaces the convolution by AdderNet's L1 layer; it takes no "
                f"quantizers or scale (got kernel={self.kernel}, inputs={self.inputs}, "
                f"scale={self.scale})."
            )

    @property
    def is_float(self) -> bool:
        return self.kernel is None and self.inputs is None and not self.adder


FLOAT = QuantSpec()


def channels(features: int, width: float) -> int:
    """Width-multiplied channel count (at least 1)."""
    return max(1, int(round(features * width)))


def conv(
    spec: QuantSpec,
    features: int,
    kernel: int,
    strides: int = 1,
    name: str | None = None,
    dtype: Any = None,
):
    """A k×k conv without bias, padded by k // 2 on each side (PyTorch's ``padding=k//2``);
    an AdderNet layer when ``spec.adder``. ``dtype`` is the compute dtype (None: float32)."""
    pad = kernel // 2
    if spec.adder:
        return adder.AdderConv(
            features,
            (kernel, kernel),
            strides=strides,
            padding=((pad, pad), (pad, pad)),
            dtype=dtype,
            name=name,
        )
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
        dtype=dtype,
        name=name,
    )


@dataclasses.dataclass(frozen=True)
class NormSpec:
    """How a model's BatchNorms behave.

    gamma_init: initial γ (1e-8 in ReCU/SiMaN's ImageNet code);
    frozen: use (and keep) the running statistics even in training, the usual practice when
      fine-tuning a CNN backbone (which AdderNet backbones should avoid);
    running_var: ``"biased"`` (Flax's update) or ``"unbiased"`` (PyTorch's: the stored variance
      is the batch variance times m/(m − 1), m values per channel), see
      ``bnnlab.layers.batch_norm``.
    """

    gamma_init: float = 1.0
    frozen: bool = False
    running_var: str = "biased"

    def __post_init__(self):
        batch_norm_lib.check_running_var(self.running_var)

    def __call__(
        self,
        train: bool,
        name: str | None = None,
        gamma_init: float | None = None,
        dtype: Any = None,
    ):
        """A BatchNorm over the last axis with PyTorch's momentum 0.1 (Flax ρ = 0.9), ε = 1e-5;
        statistics and normalisation in float32, the output in ``dtype`` (None: the input's
        dtype promoted with float32, as before mixed precision)."""
        gamma = self.gamma_init if gamma_init is None else gamma_init
        return batch_norm_lib.BatchNorm(
            use_running_average=self.frozen or not train,
            momentum=0.9,
            epsilon=1e-5,
            scale_init=initializers.constant(gamma),
            running_var=self.running_var,
            dtype=dtype,
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
    ``block_conv``: a 1×1 stride-s conv of the block's own kind + BN (binary in SiMaN's CIFAR
    ResNet-18, adder in AdderNet);
    ``fp_conv``: float 1×1 stride-s conv + BN (ReCU/SiMaN ImageNet);
    ``avgpool_fp_conv``: AvgPool 2×2 + float 1×1 conv + BN (Bi-Real, ReActNet).
    """

    kind: str
    features: int
    strides: int
    spec: QuantSpec = FLOAT
    norm: NormSpec = NormSpec()
    dtype: Any = None

    @nn.compact
    def __call__(self, x, train: bool, progress=None):
        check_choice("shortcut", self.kind, SHORTCUTS)
        if self.strides == 1 and x.shape[-1] == self.features:
            return x
        if self.kind in ("avgpool_pad", "subsample_pad"):
            if self.strides != 1:
                x = avg_pool2(x) if self.kind == "avgpool_pad" else x[:, ::2, ::2]
            return pad_channels(x, self.features)
        spec = self.spec if self.kind == "block_conv" else FLOAT
        strides = self.strides
        if self.kind == "avgpool_fp_conv" and self.strides != 1:
            x, strides = avg_pool2(x), 1
        x = conv(spec, self.features, 1, strides, name="conv", dtype=self.dtype)(
            x, train=train, progress=progress
        )
        return self.norm(train, name="bn", dtype=self.dtype)(x)
