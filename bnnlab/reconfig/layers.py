"""Keyed layers: one shared flat latent vector per layer, read through a task's permutation;
BatchNorm with one set of rows per task; RSign, RPReLU and the head bias shared. Every row
(per-task or shared) is stored masked, so without the keys it is noise.

The permutations, masks and task index arrive in the ``task`` variable collection at apply
time, so they are traced inputs: switching task changes array values, never the program.

    W_{l,t} = reshape(θ_l[π_{l,t}])                  (θ_l shared by every task)
    binary layers: W_b = mean_f|W| · sign(W) (scale detached), STE through clip(W, −1, 1)
                   (ReActNet-style, as the reference code; any 1-bit quantizer can be given)
    ∂L/∂θ_l = ∂L/∂W_{l,t} scattered back through π_{l,t} (the gather's transpose)
    row r (γ, β, running mean, log₂ running variance of a task; RSign, RPReLU, head bias):
        stored s = r + A·u,  read r = s − A·u,  ∂L/∂s = ∂L/∂r
    u ∈ [−1, 1)^c keyed: the task's seed for per-task rows, the model seed for shared ones;
    A = MASK_AMPLITUDE. ``mask_initial`` adds A·u to the freshly initialised rows, so under
    the right keys training starts from the ordinary initialisation (γ = 1, β = 0, …) and
    follows the same path (the optimizer sees the same gradients; a constant offset changes
    neither Adam nor SGD, only weight decay, which the trainer refuses). Under other keys a
    row reads r + A·(u − u′): trained values buried in noise of range ±2A.

References:
  Qiu et al. "RBNN: Memory-Efficient Reconfigurable Deep Binary Neural Network With IP
  Protection for Internet of Things", IEEE TCAD 2023, arXiv 2105.03822; the mechanism follows
  the public code described in docs/reconfigurable.md (keyed weight permutation, per-task
  BatchNorm, shared head with per-task logit slices), itself modelled on TrojanNet (Guo et al.
  2020). The masked rows are bnnlab's addition (docs/reconfigurable.md, "Keyed rows").
  ReActNet's RSign and RPReLU: Liu et al., ECCV 2020, arXiv 2003.03488.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
from flax import traverse_util
from flax.linen import initializers
from jax import lax

from bnnlab import quant
from bnnlab.quant import math as qmath

TASK = "task"  # the variable collection holding permutations, masks, task index, class count
MASK_AMPLITUDE = 2.0  # A: masks span ±2, against trained rows of order 1
TASK_MASK, SHARED_MASK = "_mask", "_shared_mask"  # suffixes of the mask entries in TASK
Array = jax.Array


def identity_permutation(n: int):
    return lambda: jnp.arange(n, dtype=jnp.int32)


def _keyed_weight(module: nn.Module, shape, init: Callable) -> Array:
    n = math.prod(shape)
    theta = module.param("latent", lambda rng: init(rng, shape).reshape(-1))
    perm = module.variable(TASK, "perm", identity_permutation(n)).value
    return theta[perm].reshape(shape)


def _mask(module: nn.Module, name: str, size: int, shared: bool) -> Array:
    suffix = SHARED_MASK if shared else TASK_MASK
    u = module.variable(TASK, name + suffix, jnp.zeros, (size,), jnp.float32).value
    return MASK_AMPLITUDE * u


def _shared_row(module: nn.Module, name: str, init: Callable, size: int) -> Array:
    """A shared row read through the model seed's mask."""
    stored = module.param(name, init, (size,))
    return stored - _mask(module, name, size, shared=True)


def mask_initial(variables: dict, task_collections) -> dict:
    """``variables`` from ``model.init`` with every keyed row stored masked: A·u of task t
    added to row t of per-task variables, A·u of the model seed to shared ones."""
    flat = {
        col: traverse_util.flatten_dict(dict(variables[col]), sep="/")
        for col in ("params", "batch_stats")
        if col in variables
    }
    for t, collection in enumerate(task_collections):
        for key, u in traverse_util.flatten_dict(dict(collection), sep="/").items():
            shared = key.endswith(SHARED_MASK)
            if not (shared or key.endswith(TASK_MASK)) or (shared and t > 0):
                continue
            target = key[: -len(SHARED_MASK if shared else TASK_MASK)]
            col = next((c for c in flat if target in flat[c]), None)
            if col is None:
                raise ValueError(f"The mask {key!r} has no variable {target!r} to mask.")
            value = flat[col][target]
            offset = MASK_AMPLITUDE * jnp.asarray(u, value.dtype)
            flat[col][target] = value + offset if shared else value.at[t].add(offset)
    out = dict(variables)
    for col, entries in flat.items():
        out[col] = traverse_util.unflatten_dict(entries, sep="/")
    return out


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
    shared, stored masked under the model seed."""

    features: int
    kernel_init: Callable = initializers.lecun_normal()

    @nn.compact
    def __call__(self, x):
        w = _keyed_weight(self, (x.shape[-1], self.features), self.kernel_init)
        return x @ w + _shared_row(self, "bias", initializers.zeros_init(), self.features)


class KeyedRSign(nn.Module):
    r"""ReActNet's RSign with its shift stored masked under the model seed.

    Forward:  x_b = sign(x + β_c)   (β_c the learnable shift)
    Backward: ∂x_b/∂x = ∂x_b/∂β = max(0, 2 − 2|x + β_c|)   (ApproxSign)
    """

    @nn.compact
    def __call__(self, x: Array) -> Array:
        shift = _shared_row(self, "bias", initializers.zeros_init(), x.shape[-1])
        return qmath.surrogate(qmath.sign, qmath.approx_sign_derivative, x + shift, ())


class KeyedRPReLU(nn.Module):
    r"""ReActNet's RPReLU with γ, β, ζ stored masked under the model seed.

    Forward:  f(x) = PReLU_β(x − γ) + ζ,  PReLU_β(u) = u if u ≥ 0 else β·u
              (per channel; β initialised to 0.25, γ and ζ to 0)
    Backward: ordinary derivative.
    """

    slope_init: float = 0.25

    @nn.compact
    def __call__(self, x: Array) -> Array:
        c = x.shape[-1]
        gamma = _shared_row(self, "gamma", initializers.zeros_init(), c)
        beta = _shared_row(self, "beta", initializers.constant(self.slope_init), c)
        zeta = _shared_row(self, "zeta", initializers.zeros_init(), c)
        u = x - gamma
        return jnp.where(u >= 0, u, beta * u) + zeta


class TaskBatchNorm(nn.Module):
    """BatchNorm with per-task γ, β and running statistics, rows selected by the traced task
    index (PyTorch's momentum 0.1, ε = 1e-5). Every row is stored masked under the task's
    seed; the running variance as log₂ (so a mask keeps it positive)."""

    num_tasks: int
    momentum: float = 0.9
    epsilon: float = 1e-5

    @nn.compact
    def __call__(self, x, *, train: bool):
        c = x.shape[-1]
        task = self.variable(TASK, "index", lambda: jnp.zeros((), jnp.int32)).value
        masks = {n: _mask(self, n, c, shared=False) for n in ("scale", "bias", "mean", "log_var")}
        scale = self.param("scale", initializers.ones_init(), (self.num_tasks, c))[task]
        bias = self.param("bias", initializers.zeros_init(), (self.num_tasks, c))[task]
        scale, bias = scale - masks["scale"], bias - masks["bias"]
        mean_var = self.variable("batch_stats", "mean", jnp.zeros, (self.num_tasks, c))
        log_var = self.variable("batch_stats", "log_var", jnp.zeros, (self.num_tasks, c))
        running_mean = mean_var.value[task] - masks["mean"]
        running_var = jnp.exp2(log_var.value[task] - masks["log_var"])
        axes = tuple(range(x.ndim - 1))
        if train:
            mean = jnp.mean(x, axis=axes)
            var = jnp.mean(jnp.square(x - mean), axis=axes)
            if not self.is_initializing():
                m = self.momentum
                new_mean = m * running_mean + (1 - m) * mean
                new_var = m * running_var + (1 - m) * var
                mean_var.value = mean_var.value.at[task].set(new_mean + masks["mean"])
                log_var.value = log_var.value.at[task].set(jnp.log2(new_var) + masks["log_var"])
        else:
            mean, var = running_mean, running_var
        return (x - mean) * lax.rsqrt(var + self.epsilon) * scale + bias


def mask_logits(logits: Array, num_classes: Array) -> Array:
    """Logits of classes ≥ the task's class count set to a large negative value (the task uses
    the first C_t outputs of the shared head)."""
    valid = jnp.arange(logits.shape[-1]) < num_classes
    return jnp.where(valid, logits, -1e9)
