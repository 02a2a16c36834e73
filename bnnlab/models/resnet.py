"""ResNets of the BNN papers: the standard-block CIFAR ResNet-18 and the Bi-Real family
(a shortcut around every binary conv): CIFAR ResNet-20, ImageNet ResNet-18/34 and ReActNet's
ResNet-18.

References:
  He, Zhang, Ren, Sun. "Deep Residual Learning for Image Recognition", CVPR 2016.
  Liu et al. "Bi-Real Net", ECCV 2018, arXiv 1808.00278.
  Liu et al. "ReActNet", ECCV 2020, arXiv 2003.03488.
"""

from __future__ import annotations

from collections.abc import Sequence

import flax.linen as nn

from bnnlab.layers import activations
from bnnlab.models import blocks
from bnnlab.models.blocks import FLOAT, QuantSpec


class Stem(nn.Module):
    """Full-precision first conv: 3×3/1 (CIFAR) or 7×7/2 + max-pool 3×3/2 (ImageNet), then BN
    and an optional activation."""

    features: int
    imagenet: bool
    act: str | None
    gamma_init: float = 1.0

    @nn.compact
    def __call__(self, x, train: bool):
        kernel, strides = (7, 2) if self.imagenet else (3, 1)
        x = blocks.conv(FLOAT, self.features, kernel, strides, name="conv")(x, train=train)
        x = blocks.batch_norm(train, self.gamma_init, name="bn")(x)
        if self.act is not None:
            x = blocks.Activation(self.act, name="act")(x)
        if self.imagenet:
            x = nn.max_pool(x, (3, 3), (2, 2), padding=((1, 1), (1, 1)))
        return x


class Head(nn.Module):
    """Global average pool, optional BatchNorm1d, full-precision classifier."""

    num_classes: int
    batch_norm: bool

    @nn.compact
    def __call__(self, x, train: bool):
        x = x.mean(axis=(1, 2))
        if self.batch_norm:
            x = blocks.batch_norm(train, name="bn")(x)
        return nn.Dense(self.num_classes, name="fc")(x)


class BasicBlock(nn.Module):
    """Standard block, one shortcut per two convs: act(BN(conv2(act(BN(conv1 x)))) + sc(x))."""

    features: int
    strides: int
    spec: QuantSpec
    act: str
    shortcut: str
    gamma_init: float = 1.0

    @nn.compact
    def __call__(self, x, train: bool, progress=None):
        kw = dict(train=train, progress=progress)
        y = blocks.conv(self.spec, self.features, 3, self.strides, name="conv1")(x, **kw)
        y = blocks.batch_norm(train, self.gamma_init, name="bn1")(y)
        y = blocks.Activation(self.act, name="act1")(y)
        y = blocks.conv(self.spec, self.features, 3, 1, name="conv2")(y, **kw)
        y = blocks.batch_norm(train, self.gamma_init, name="bn2")(y)
        x = blocks.Shortcut(
            self.shortcut,
            self.features,
            self.strides,
            self.spec,
            self.gamma_init,
            name="shortcut",
        )(x, **kw)
        return blocks.Activation(self.act, name="act2")(y + x)


class BiRealUnit(nn.Module):
    """One binary conv with its own shortcut: act(BN(conv(rsign(x))) + sc(x))."""

    features: int
    strides: int
    spec: QuantSpec
    act: str
    shortcut: str
    rsign: bool = False
    gamma_init: float = 1.0

    @nn.compact
    def __call__(self, x, train: bool, progress=None):
        kw = dict(train=train, progress=progress)
        y = activations.RSign(name="rsign")(x) if self.rsign else x
        y = blocks.conv(self.spec, self.features, 3, self.strides, name="conv")(y, **kw)
        y = blocks.batch_norm(train, self.gamma_init, name="bn")(y)
        x = blocks.Shortcut(
            self.shortcut,
            self.features,
            self.strides,
            self.spec,
            self.gamma_init,
            name="shortcut",
        )(x, **kw)
        return blocks.Activation(self.act, name="act")(y + x)


class ResNet(nn.Module):
    """A ResNet for BNN experiments; every architectural choice of the papers is a field.

    Attributes:
      stage_sizes: blocks per stage (standard) or binary units per stage (Bi-Real).
      stage_features: channels per stage before the width multiplier.
      bireal: one shortcut per binary conv (Bi-Real) instead of per two convs.
      imagenet: 7×7/2 stem with max-pool (else a 3×3/1 CIFAR stem).
      quant: how binary convs quantize (``FLOAT`` gives the float baseline).
      act, stem_act: nonlinearity after each unit/block and after the stem (None: none).
      shortcut: downsample shortcut kind (``blocks.SHORTCUTS``).
      rsign: ReActNet's learnable-threshold sign before every binary conv.
      head_bn: BatchNorm1d before the classifier.
      bn_gamma_init: initial BatchNorm γ of stem and units (1e-8 in ReCU/SiMaN ImageNet code).
      width: channel multiplier for small runs.
    """

    stage_sizes: Sequence[int]
    stage_features: Sequence[int]
    num_classes: int = 10
    bireal: bool = False
    imagenet: bool = False
    quant: QuantSpec = FLOAT
    act: str = "hardtanh"
    stem_act: str | None = None
    shortcut: str = "avgpool_pad"
    rsign: bool = False
    head_bn: bool = True
    bn_gamma_init: float = 1.0
    width: float = 1.0

    @nn.compact
    def __call__(self, x, train: bool = False, progress=None):
        blocks.check_choice("activation", self.act, blocks.ACTIVATIONS)
        blocks.check_choice("shortcut", self.shortcut, blocks.SHORTCUTS)
        features = [blocks.channels(f, self.width) for f in self.stage_features]
        x = Stem(features[0], self.imagenet, self.stem_act, self.bn_gamma_init, name="stem")(
            x, train
        )
        for i, (size, f) in enumerate(zip(self.stage_sizes, features, strict=True)):
            for j in range(size):
                strides = 2 if i > 0 and j == 0 else 1
                name = f"stage{i + 1}_{'unit' if self.bireal else 'block'}{j + 1}"
                if self.bireal:
                    layer = BiRealUnit(
                        f,
                        strides,
                        self.quant,
                        self.act,
                        self.shortcut,
                        self.rsign,
                        self.bn_gamma_init,
                        name=name,
                    )
                else:
                    layer = BasicBlock(
                        f,
                        strides,
                        self.quant,
                        self.act,
                        self.shortcut,
                        self.bn_gamma_init,
                        name=name,
                    )
                x = layer(x, train=train, progress=progress)
        return Head(self.num_classes, self.head_bn, name="head")(x, train)
