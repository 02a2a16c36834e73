"""The reconfigurable ReActNet (docs/reconfigurable.md): one set of keyed latent weights for all
tasks, per-task BatchNorm, shared RSign/RPReLU, a shared head sliced per task; every row
stored masked under the keys (``layers``).

    FP 3×3 stem (keyed) + BN_task + max-pool 3×3/2
    three stages of 4 blocks (64/128/256 channels): RSign → binary 3×3 keyed conv → BN_task
        → + shortcut (AvgPool 2×2 + FP keyed 1×1 + BN_task when downsampling) → RPReLU
    global average pool → FP keyed FC → logits of the task's first C_t classes
"""

from __future__ import annotations

from collections.abc import Sequence

import flax.linen as nn
import jax.numpy as jnp
from flax.linen import initializers

from bnnlab.models import blocks
from bnnlab.reconfig import layers

# ReActNet initialises binary latent weights U[0, 1e-3): all positive, every task starts at +1.
BINARY_INIT = initializers.uniform(1e-3)


class Block(nn.Module):
    features: int
    strides: int
    num_tasks: int
    kernel_quantizer: str

    @nn.compact
    def __call__(self, x, train: bool, progress=None):
        y = layers.KeyedRSign(name="rsign")(x)
        y = layers.KeyedConv(
            self.features,
            (3, 3),
            self.strides,
            ((1, 1), (1, 1)),
            self.kernel_quantizer,
            kernel_init=BINARY_INIT,
            name="conv",
        )(y, train=train, progress=progress)
        y = layers.TaskBatchNorm(self.num_tasks, name="bn")(y, train=train)
        if self.strides != 1 or x.shape[-1] != self.features:
            if self.strides != 1:
                x = blocks.avg_pool2(x)
            x = layers.KeyedConv(self.features, (1, 1), 1, "VALID", name="shortcut_conv")(x)
            x = layers.TaskBatchNorm(self.num_tasks, name="shortcut_bn")(x, train=train)
        return layers.KeyedRPReLU(name="act")(y + x)


class ReconfigurableReActNet(nn.Module):
    """Call as ``model.apply(variables, x, train=..., progress=...)`` where ``variables``
    includes the ``task`` collection of the task to run (``task_variables``)."""

    num_tasks: int
    max_classes: int
    stage_sizes: Sequence[int] = (4, 4, 4)
    stage_features: Sequence[int] = (64, 128, 256)
    width: float = 1.0
    kernel_quantizer: str = "magnitude_aware_sign"

    @nn.compact
    def __call__(self, x, train: bool = False, progress=None):
        features = [blocks.channels(f, self.width) for f in self.stage_features]
        x = layers.KeyedConv(features[0], (3, 3), 1, ((1, 1), (1, 1)), name="stem_conv")(x)
        x = layers.TaskBatchNorm(self.num_tasks, name="stem_bn")(x, train=train)
        x = nn.max_pool(x, (3, 3), (2, 2), padding=((1, 1), (1, 1)))
        for i, (size, f) in enumerate(zip(self.stage_sizes, features, strict=True)):
            for j in range(size):
                x = Block(
                    f,
                    2 if i > 0 and j == 0 else 1,
                    self.num_tasks,
                    self.kernel_quantizer,
                    name=f"stage{i + 1}_block{j + 1}",
                )(x, train=train, progress=progress)
        logits = layers.KeyedDense(self.max_classes, name="fc")(x.mean(axis=(1, 2)))
        num_classes = self.variable(
            layers.TASK, "num_classes", lambda: jnp.asarray(self.max_classes, jnp.int32)
        ).value
        return layers.mask_logits(logits, num_classes)
