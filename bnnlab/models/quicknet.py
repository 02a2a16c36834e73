"""QuickNet (larq zoo's deployment-oriented BNN): Bannink et al., "Larq Compute Engine:
Design, Benchmark, and Deploy State-of-the-Art Binarized Neural Networks", MLSys 2021,
arXiv 2011.09398; the architecture as larq zoo defines it (``larq_zoo.sota.QuickNet``).

    stem   float 3×3/2 conv (F/4) → BN → ReLU → float depthwise 3×3/2 → BN (no γ, β)
           → float 1×1 conv (F) → BN                                   224 → 56
    block  x + BN(ReLU(bconv₃ₓ₃(sign(x))))     sign(x) = +1 if x ≥ 0; +1 padding
    transition (width change)  ReLU → max-pool 2×2/1 VALID → blur pool (fixed depthwise
           3×3/2, kernel [1 2 1]ᵀ[1 2 1]/16) → float 1×1 conv → BN     56 → 55 → 28
    head   ReLU → global average pool → float Dense (with bias)

Sections: widths (64, 128, 256, 512) and 4 blocks each (QuickNet), widths (32, 64, 256, 512)
(QuickNet-Small), blocks (6, 8, 12, 6) (QuickNet-Large). Only the blocks' 3×3 convs are
binary: sign inputs and sign weights (``quant``, the recipe's ``ste_sign(clip_value=1.25)``)
with the conv's ReLU before its BatchNorm, the order LCE folds into one ``LceBconv2d``.
Padding follows Keras's "same" (Flax's SAME: the odd pad at the end), as the zoo's models do.
BatchNorms: momentum 0.99, ε 1e-3 in the stem (Keras's defaults); 0.9 and 1e-5 elsewhere.
The blur kernel is a constant, not a parameter (larq zoo freezes it).
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from bnnlab.layers import batch_norm as batch_norm_lib
from bnnlab.layers import quantized
from bnnlab.models import blocks
from bnnlab.models.blocks import FLOAT, QuantSpec

VARIANTS = {
    "quicknet_small": dict(section_features=(32, 64, 256, 512), section_blocks=(4, 4, 4, 4)),
    "quicknet": dict(section_features=(64, 128, 256, 512), section_blocks=(4, 4, 4, 4)),
    "quicknet_large": dict(section_features=(64, 128, 256, 512), section_blocks=(6, 8, 12, 6)),
}
_BLUR = np.outer([1.0, 2.0, 1.0], [1.0, 2.0, 1.0]) / 16.0


def _bn(train, momentum=0.9, epsilon=1e-5, affine=True, dtype=None, name=None):
    return batch_norm_lib.BatchNorm(
        use_running_average=not train,
        momentum=momentum,
        epsilon=epsilon,
        use_scale=affine,
        use_bias=affine,
        dtype=dtype,
        name=name,
    )


def blur_pool(x):
    """Anti-aliased stride-2 downsampling (Zhang, ICML 2019): each channel convolved with the
    fixed [1 2 1]ᵀ[1 2 1]/16 kernel, stride 2, SAME."""
    c = x.shape[-1]
    kernel = jnp.broadcast_to(jnp.asarray(_BLUR, x.dtype)[:, :, None, None], (3, 3, 1, c))
    return jax.lax.conv_general_dilated(
        x,
        kernel,
        (2, 2),
        "SAME",
        dimension_numbers=("NHWC", "HWIO", "NHWC"),
        feature_group_count=c,
    )


class QuickNet(nn.Module):
    """QuickNet (module docstring). ``width`` scales every section's channels (the
    ``:runlocal`` recipes); ``dtype`` is the compute dtype (logits in float32)."""

    num_classes: int = 10  # the zoo's default; the recipe's dataset sets it
    quant: QuantSpec = FLOAT
    section_features: tuple[int, ...] = (64, 128, 256, 512)
    section_blocks: tuple[int, ...] = (4, 4, 4, 4)
    width: float = 1.0
    dtype: Any = None

    @nn.compact
    def __call__(self, x, train: bool = False, progress=None):
        if len(self.section_features) != len(self.section_blocks):
            raise ValueError(
                f"section_features {self.section_features} and section_blocks "
                f"{self.section_blocks} must have the same length."
            )
        features = [blocks.channels(f, self.width) for f in self.section_features]
        stem = features[0]
        if stem % 4:
            raise ValueError(f"QuickNet's stem needs a width divisible by 4, got {stem}.")
        conv = dict(use_bias=False, dtype=self.dtype)
        x = nn.Conv(stem // 4, (3, 3), (2, 2), padding="SAME", name="stem_conv", **conv)(x)
        x = nn.relu(_bn(train, 0.99, 1e-3, dtype=self.dtype, name="stem_bn1")(x))
        x = nn.Conv(
            stem // 4,
            (3, 3),
            (2, 2),
            padding="SAME",
            feature_group_count=stem // 4,
            name="stem_depthwise",
            **conv,
        )(x)
        x = _bn(train, 0.99, 1e-3, affine=False, dtype=self.dtype, name="stem_bn2")(x)
        x = nn.Conv(stem, (1, 1), name="stem_pointwise", **conv)(x)
        x = _bn(train, 0.99, 1e-3, dtype=self.dtype, name="stem_bn3")(x)
        for s, (f, n) in enumerate(zip(features, self.section_blocks, strict=True)):
            if x.shape[-1] != f:  # a transition before the section's first block
                x = nn.max_pool(nn.relu(x), (2, 2), (1, 1), padding="VALID")
                x = blur_pool(x)
                x = nn.Conv(f, (1, 1), name=f"transition{s}_conv", **conv)(x)
                x = _bn(train, dtype=self.dtype, name=f"transition{s}_bn")(x)
            for b in range(n):
                y = quantized.QuantConv(
                    f,
                    (3, 3),
                    padding="SAME",
                    use_bias=False,
                    kernel_quantizer=self.quant.kernel,
                    input_quantizer=self.quant.inputs,
                    scale=self.quant.scale,
                    pad_value=self.quant.pad_value,
                    dtype=self.dtype,
                    name=f"section{s}_block{b}_conv",
                )(x, train=train, progress=progress)
                y = _bn(train, dtype=self.dtype, name=f"section{s}_block{b}_bn")(nn.relu(y))
                x = x + y
        x = nn.relu(x).mean(axis=(1, 2))
        logits = nn.Dense(self.num_classes, dtype=self.dtype, name="fc")(x)
        return logits.astype(jnp.promote_types(logits.dtype, jnp.float32))
