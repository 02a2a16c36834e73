"""Keyed layers: one shared flat latent vector per layer, read through a task's permutation,
and BatchNorm with one set of parameters and statistics per task.

The permutation and the task index arrive in the ``task`` variable collection at apply time,
so they are traced inputs: switching task changes array values, never the compiled program.

    W_{l,t} = reshape(θ_l[π_{l,t}])                  (θ_l shared by every task)
    binary layers: W_b = mean_f|W| · sign(W) (scale detached), STE through clip(W, −1, 1)
                   (ReActNet-style, as the reference code; any 1-bit quantizer can be given)
    ∂L/∂θ_l = ∂L/∂W_{l,t} scattered back through π_{l,t} (the gather's transpose)

References:
  Qiu et al. "RBNN: Memory-Efficient Reconfigurable Deep Binary Neural Network With IP
  Protection for Internet of Things", IEEE TCAD 2023, arXiv 2105.03822; the mechanism follows
  the public code described in docs/reconfigurable.md (keyed weight permutation, per-task
  BatchNorm, shared head with per-task logit slices), itself modelled on TrojanNet (Guo et al.
  2020).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
from flax.linen import initializers
from jax import lax

from bnnlab import quant

TASK = "task"  # the variable collection holding permutations, task index and class count
Array = jax.Array


def identity_permutation(n: int):
    return lambda: jnp.arange(n, dtype=jnp.int32)


def _keyed_weight(module: nn.Module, shape, init: Callable) -> Array:
    n = math.prod(shape)
    theta = module.param("latent", lambda rng: init(rng, shape).reshape(-1))
    perm = module.variable(TASK, "perm", identity_permutation(n)).value
    return theta[perm].reshape(shape)


class KeyedConv(nn.Module):
    """A conv whose HWIO kernel is the task-permuted shared latent vector (no bias)."""

    features: int
    kernel_size: Sequence[int]
    strides: int = 1
    padding: Any = "SAME"
    kernel_quantizer: quant.Quantizer | str | None = None
    kernel_init: Callable = initializers.lecun_normal()

    @nn.compact
    def __call__(self, x, *, train: bool = False, progress=None):
        shape = (*self.kernel_size, x.shape[-1], self.features)
        w = _keyed_weight(self, shape, self.kernel_init)
        q = quant.resolve(self.kernel_quantizer)
        if q is not None:
            w = q(w, progress=progress, train=train)
        return lax.conv_general_dilated(
            x, w, (self.strides,) * 2, self.padding, dimension_numbers=("NHWC", "HWIO", "NHWC")
        )


class KeyedDense(nn.Module):
    """A float classifier whose (in, out) kernel is the task-permuted latent vector; the bias is
    shared and not permuted."""

    features: int
    kernel_init: Callable = initializers.lecun_normal()

    @nn.compact
    def __call__(self, x):
        w = _keyed_weight(self, (x.shape[-1], self.features), self.kernel_init)
        return x @ w + self.param("bias", initializers.zeros_init(), (self.features,))


class TaskBatchNorm(nn.Module):
    """BatchNorm with per-task γ, β and running statistics, rows selected by the traced task
    index (PyTorch's momentum 0.1, ε = 1e-5)."""

    num_tasks: int
    momentum: float = 0.9
    epsilon: float = 1e-5

    @nn.compact
    def __call__(self, x, *, train: bool):
        c = x.shape[-1]
        task = self.variable(TASK, "index", lambda: jnp.zeros((), jnp.int32)).value
        scale = self.param("scale", initializers.ones_init(), (self.num_tasks, c))[task]
        bias = self.param("bias", initializers.zeros_init(), (self.num_tasks, c))[task]
        mean_var = self.variable("batch_stats", "mean", jnp.zeros, (self.num_tasks, c))
        var_var = self.variable("batch_stats", "var", jnp.ones, (self.num_tasks, c))
        axes = tuple(range(x.ndim - 1))
        if train:
            mean = jnp.mean(x, axis=axes)
            var = jnp.mean(jnp.square(x - mean), axis=axes)
            if not self.is_initializing():
                m = self.momentum
                mean_var.value = mean_var.value.at[task].set(
                    m * mean_var.value[task] + (1 - m) * mean
                )
                var_var.value = var_var.value.at[task].set(m * var_var.value[task] + (1 - m) * var)
        else:
            mean, var = mean_var.value[task], var_var.value[task]
        return (x - mean) * lax.rsqrt(var + self.epsilon) * scale + bias


def mask_logits(logits: Array, num_classes: Array) -> Array:
    """Logits of classes ≥ the task's class count set to a large negative value (the task uses
    the first C_t outputs of the shared head)."""
    valid = jnp.arange(logits.shape[-1]) < num_classes
    return jnp.where(valid, logits, -1e9)
