"""VGG-small for CIFAR (the BNN literature's plain network, from LQ-Nets / XNOR-Net setups)."""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from bnnlab.models import blocks
from bnnlab.models.blocks import FLOAT, QuantSpec

FEATURES = (128, 128, 256, 256, 512, 512)
POOL_AFTER = (1, 3, 5)


class VGGSmall(nn.Module):
    """conv0 (float) → five binary 3×3 convs 128-256-256-512-512, each conv → (max-pool after
    conv1, conv3, conv5) → BN → act; then a float classifier on the flattened features
    (8192 → classes for 32×32 inputs). The papers use Hardtanh (ReCU) or PReLU (SiMaN).
    ``dtype`` is the compute dtype as in ``ResNet`` (logits in float32).
    """

    num_classes: int = 10
    quant: QuantSpec = FLOAT
    act: str = "hardtanh"
    bn_running_var: str = "biased"  # or "unbiased" (PyTorch), see blocks.NormSpec
    width: float = 1.0
    dtype: Any = None

    @nn.compact
    def __call__(self, x, train: bool = False, progress=None):
        blocks.check_choice("activation", self.act, blocks.ACTIVATIONS)
        norm = blocks.NormSpec(running_var=self.bn_running_var)
        for i, f in enumerate(FEATURES):
            spec = FLOAT if i == 0 else self.quant
            features = blocks.channels(f, self.width)
            x = blocks.conv(spec, features, 3, name=f"conv{i}", dtype=self.dtype)(
                x, train=train, progress=progress
            )
            if i in POOL_AFTER:
                x = nn.max_pool(x, (2, 2), (2, 2), padding="SAME")
            x = norm(train, name=f"bn{i}", dtype=self.dtype)(x)
            x = blocks.Activation(self.act, name=f"act{i}")(x)
        logits = nn.Dense(self.num_classes, dtype=self.dtype, name="fc")(x.reshape(x.shape[0], -1))
        return logits.astype(jnp.promote_types(logits.dtype, jnp.float32))
