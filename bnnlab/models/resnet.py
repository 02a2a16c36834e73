"""ResNets of the BNN and AdderNet papers: standard blocks (CIFAR ResNet-18/20, He et al.'s
ResNet-18), bottlenecks (ResNet-50), and the Bi-Real family with a shortcut around every binary
conv (CIFAR ResNet-20, ImageNet ResNet-18/34, ReActNet's ResNet-18).

References:
  He, Zhang, Ren, Sun. "Deep Residual Learning for Image Recognition", CVPR 2016.
  Liu et al. "Bi-Real Net", ECCV 2018, arXiv 1808.00278.
  Liu et al. "ReActNet", ECCV 2020, arXiv 2003.03488.
  Chen et al. "AdderNet", CVPR 2020, arXiv 1912.13200.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from bnnlab.layers import activations
from bnnlab.models import blocks
from bnnlab.models.blocks import FLOAT, QuantSpec

BLOCKS = ("basic", "bireal", "bottleneck")


class Stem(nn.Module):
    """Full-precision first conv, 3×3/1 (CIFAR) or 7×7/2 (ImageNet), then BN, an optional
    activation and (ImageNet) a 3×3/2 max-pool."""

    features: int
    imagenet: bool
    act: str | None
    norm: blocks.NormSpec = blocks.NormSpec()
    dtype: Any = None

    @nn.compact
    def __call__(self, x, train: bool):
        kernel, strides = (7, 2) if self.imagenet else (3, 1)
        x = blocks.conv(FLOAT, self.features, kernel, strides, name="conv", dtype=self.dtype)(
            x, train=train
        )
        x = self.norm(train, name="bn", dtype=self.dtype)(x)
        if self.act is not None:
            x = blocks.Activation(self.act, name="act")(x)
        if self.imagenet:
            x = nn.max_pool(x, (3, 3), (2, 2), padding=((1, 1), (1, 1)))
        return x


class Head(nn.Module):
    """Global average pool, optional BatchNorm1d, full-precision classifier, and optionally
    BatchNorm on the logits (AdderNet's head)."""

    num_classes: int
    batch_norm: bool
    logits_bn: bool = False
    fc_bias: bool = True
    norm: blocks.NormSpec = blocks.NormSpec()
    dtype: Any = None

    @nn.compact
    def __call__(self, x, train: bool):
        x = x.mean(axis=(1, 2))
        if self.batch_norm:
            x = self.norm(train, name="bn", gamma_init=1.0, dtype=self.dtype)(x)
        x = nn.Dense(self.num_classes, use_bias=self.fc_bias, dtype=self.dtype, name="fc")(x)
        if self.logits_bn:
            x = self.norm(train, name="logits_bn", gamma_init=1.0, dtype=self.dtype)(x)
        return x


class _Block(nn.Module):
    """Fields shared by the residual blocks."""

    features: int
    strides: int
    spec: QuantSpec
    act: str
    shortcut: str
    norm: blocks.NormSpec = blocks.NormSpec()
    dtype: Any = None

    def skip(self, x, features, train, progress):
        return blocks.Shortcut(
            self.shortcut,
            features,
            self.strides,
            self.spec,
            self.norm,
            dtype=self.dtype,
            name="shortcut",
        )(x, train=train, progress=progress)

    def conv(self, features: int, kernel: int, strides: int, name: str):
        return blocks.conv(self.spec, features, kernel, strides, name=name, dtype=self.dtype)

    def bn(self, train: bool, name: str):
        return self.norm(train, name, dtype=self.dtype)


class BasicBlock(_Block):
    """Standard block, one shortcut per two convs: act(BN(conv2(act(BN(conv1 x)))) + sc(x))."""

    @nn.compact
    def __call__(self, x, train: bool, progress=None):
        kw = dict(train=train, progress=progress)
        y = self.conv(self.features, 3, self.strides, name="conv1")(x, **kw)
        y = blocks.Activation(self.act, name="act1")(self.bn(train, "bn1")(y))
        y = self.conv(self.features, 3, 1, name="conv2")(y, **kw)
        y = self.bn(train, "bn2")(y)
        return blocks.Activation(self.act, name="act2")(
            y + self.skip(x, self.features, train, progress)
        )


class Bottleneck(_Block):
    """ResNet-50 block: 1×1 → 3×3 (stride) → 1×1 (4× width), BN after each, then the add."""

    @nn.compact
    def __call__(self, x, train: bool, progress=None):
        kw = dict(train=train, progress=progress)
        y = self.conv(self.features, 1, 1, name="conv1")(x, **kw)
        y = blocks.Activation(self.act, name="act1")(self.bn(train, "bn1")(y))
        y = self.conv(self.features, 3, self.strides, name="conv2")(y, **kw)
        y = blocks.Activation(self.act, name="act2")(self.bn(train, "bn2")(y))
        y = self.conv(4 * self.features, 1, 1, name="conv3")(y, **kw)
        y = self.bn(train, "bn3")(y)
        return blocks.Activation(self.act, name="act3")(
            y + self.skip(x, 4 * self.features, train, progress)
        )


class BiRealUnit(_Block):
    """One binary conv with its own shortcut: act(BN(conv(rsign(x))) + sc(x))."""

    rsign: bool = False

    @nn.compact
    def __call__(self, x, train: bool, progress=None):
        y = activations.RSign(name="rsign")(x) if self.rsign else x
        y = self.conv(self.features, 3, self.strides, name="conv")(
            y, train=train, progress=progress
        )
        y = self.bn(train, "bn")(y)
        return blocks.Activation(self.act, name="act")(
            y + self.skip(x, self.features, train, progress)
        )


class ResNet(nn.Module):
    """A ResNet for BNN/AdderNet experiments; every architectural choice of the papers is a field.

    Attributes:
      stage_sizes: blocks (or Bi-Real units) per stage.
      stage_features: channels per stage before the width multiplier (×4 out of bottlenecks).
      block: "basic" (two convs per shortcut), "bireal" (one shortcut per binary conv) or
        "bottleneck" (ResNet-50).
      imagenet: 7×7/2 stem with max-pool (else a 3×3/1 CIFAR stem).
      quant: what the inner convs compute (``FLOAT``: the float baseline; binary quantizers;
        or ``adder=True`` for AdderNet).
      act, stem_act: nonlinearity after each block/unit and after the stem (None: none).
      shortcut: downsample shortcut kind (``blocks.SHORTCUTS``).
      rsign: ReActNet's learnable-threshold sign before every binary conv.
      head_bn, logits_bn, fc_bias: BatchNorm1d before the classifier, BatchNorm on the logits
        (AdderNet), classifier bias.
      bn_gamma_init: initial BatchNorm γ of stem and blocks (1e-8 in ReCU/SiMaN ImageNet code).
      frozen_bn: keep every BatchNorm at its running statistics, also in training (fine-tuning
        a CNN backbone; the AdderNet detection paper keeps them updating for adder backbones).
      bn_running_var: ``"biased"`` (Flax) or ``"unbiased"`` (PyTorch) running-variance update
        (``blocks.NormSpec``); the recipes that replicate PyTorch code use ``"unbiased"``.
      width: channel multiplier for small runs.
      dtype: compute dtype of activations and conv/matmul operands (None: float32;
        ``jnp.bfloat16`` for mixed precision). Parameters, BatchNorm statistics and the
        quantizers' decisions stay float32 and the logits are returned in float32.
    """

    stage_sizes: Sequence[int]
    stage_features: Sequence[int]
    num_classes: int = 10
    block: str = "basic"
    imagenet: bool = False
    quant: QuantSpec = FLOAT
    act: str = "hardtanh"
    stem_act: str | None = None
    shortcut: str = "avgpool_pad"
    rsign: bool = False
    head_bn: bool = True
    logits_bn: bool = False
    fc_bias: bool = True
    bn_gamma_init: float = 1.0
    frozen_bn: bool = False
    bn_running_var: str = "biased"
    width: float = 1.0
    dtype: Any = None

    @nn.compact
    def __call__(self, x, train: bool = False, progress=None):
        blocks.check_choice("activation", self.act, blocks.ACTIVATIONS)
        blocks.check_choice("shortcut", self.shortcut, blocks.SHORTCUTS)
        blocks.check_choice("block", self.block, BLOCKS)
        norm = blocks.NormSpec(self.bn_gamma_init, self.frozen_bn, self.bn_running_var)
        features = [blocks.channels(f, self.width) for f in self.stage_features]
        x = Stem(features[0], self.imagenet, self.stem_act, norm, self.dtype, name="stem")(x, train)
        make = {
            "basic": BasicBlock,
            "bottleneck": Bottleneck,
            "bireal": functools.partial(BiRealUnit, rsign=self.rsign),
        }[self.block]
        kind = "unit" if self.block == "bireal" else "block"
        for i, (size, f) in enumerate(zip(self.stage_sizes, features, strict=True)):
            for j in range(size):
                strides = 2 if i > 0 and j == 0 else 1
                x = make(
                    f,
                    strides,
                    self.quant,
                    self.act,
                    self.shortcut,
                    norm,
                    self.dtype,
                    name=f"stage{i + 1}_{kind}{j + 1}",
                )(x, train=train, progress=progress)
        logits = Head(
            self.num_classes,
            self.head_bn,
            self.logits_bn,
            self.fc_bias,
            norm,
            self.dtype,
            name="head",
        )(x, train)
        return logits.astype(jnp.promote_types(logits.dtype, jnp.float32))
