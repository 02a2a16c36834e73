"""BatchNorm whose statistics can follow PyTorch's rules, with a two-pass batch variance.

Training mode, over the reduction axes (all but the feature axis), m values per feature:

    μ = mean(x),  σ² = mean((x − μ)²)                      (two passes, biased)
    y = γ · (x − μ) / √(σ² + ε) + β
    running mean ← ρ·running mean + (1 − ρ)·μ
    running var  ← ρ·running var  + (1 − ρ)·σ²·c,   c = m/(m − 1) ("unbiased") or 1 ("biased")

Evaluation uses the running statistics. ρ is Flax's momentum: PyTorch's ``momentum=0.1`` is
ρ = 0.9 here (PyTorch weights the *new* batch by its momentum, Flax the old average).

Why not ``nn.BatchNorm`` as it is:
  * PyTorch (``torch.nn.BatchNorm2d``) normalises with the biased batch variance but stores the
    *unbiased* one in ``running_var``; Flax stores the biased one. The factor m/(m − 1) is 0.4 %
    for a BatchNorm1d head at batch 256 and shifts every eval output; ``running_var="unbiased"``
    matches the papers' released code.
  * Flax's default variance E[x²] − E[x]² cancels catastrophically when |mean| ≫ std, which is
    the normal state of AdderNet outputs (−Σ|X − F|: mean/std of 5–60). The forward loses
    digits and, worse, its autodiff backward sums terms of size ~mean to get a result of size
    ~std, so XLA's fusion-dependent rounding moves the gradients by 10⁻³. Two passes keep every
    term of size ~std. PyTorch also computes the variance around the mean.

Parameters and statistics are named as in ``nn.BatchNorm`` (``scale``, ``bias``; ``mean``,
``var``), and the class is an ``nn.BatchNorm``, so checkpoints, the export's BatchNorm folding
and code that looks for ``nn.BatchNorm`` work unchanged.
"""

from __future__ import annotations

import math

import flax.linen as nn
import jax
import jax.numpy as jnp
from flax.linen import module as module_lib

RUNNING_VAR_RULES = ("biased", "unbiased")


def check_running_var(rule: str) -> None:
    if rule not in RUNNING_VAR_RULES:
        raise ValueError(
            f"running_var must be one of {RUNNING_VAR_RULES} ('unbiased' = PyTorch's rule, "
            f"'biased' = Flax's), got {rule!r}."
        )


def batch_moments(x: jax.Array, axes: tuple[int, ...]) -> tuple[jax.Array, jax.Array]:
    """(mean, biased variance) over ``axes`` in float32 (at least), the variance in two passes."""
    x = x.astype(jnp.promote_types(x.dtype, jnp.float32))
    mean = jnp.mean(x, axis=axes)
    centred = x - jnp.expand_dims(mean, axes)
    return mean, jnp.mean(jnp.square(centred), axis=axes)


class BatchNorm(nn.BatchNorm):
    """``nn.BatchNorm`` with a two-pass batch variance and a choice of running-variance rule.

    Attributes (beyond ``nn.BatchNorm``'s):
      running_var: ``"biased"`` (Flax's rule, the default) or ``"unbiased"`` (PyTorch's: the
        stored variance is σ²·m/(m − 1)); see the module docstring.

    Cross-device statistics come from XLA's SPMD partitioner under ``jax.jit`` with sharded
    inputs (as everywhere in bnnlab); ``axis_name`` (pmap / shard_map) and ``mask`` are not
    supported and raise.
    """

    running_var: str = "biased"

    @nn.compact
    def __call__(self, x, use_running_average: bool | None = None, *, mask=None):
        check_running_var(self.running_var)
        if self.axis_name is not None or mask is not None:
            raise ValueError(
                "bnnlab BatchNorm computes statistics under jit/SPMD only; axis_name and mask "
                "are not supported (use flax.linen.BatchNorm for pmap/shard_map)."
            )
        use_running_average = module_lib.merge_param(
            "use_running_average", self.use_running_average, use_running_average
        )
        axes = (self.axis,) if isinstance(self.axis, int) else tuple(self.axis)
        feature_axes = tuple(a % x.ndim for a in axes)
        reduction_axes = tuple(i for i in range(x.ndim) if i not in feature_axes)
        feature_shape = tuple(x.shape[a] for a in feature_axes)
        ra_mean = self.variable("batch_stats", "mean", jnp.zeros, feature_shape, jnp.float32)
        ra_var = self.variable("batch_stats", "var", jnp.ones, feature_shape, jnp.float32)

        if use_running_average:
            mean, var = ra_mean.value, ra_var.value
        else:
            mean, var = batch_moments(x, reduction_axes)
            if not self.is_initializing():
                m = math.prod(x.shape[a] for a in reduction_axes)
                correction = m / (m - 1) if self.running_var == "unbiased" and m > 1 else 1.0
                rho = self.momentum
                ra_mean.value = rho * ra_mean.value + (1 - rho) * mean
                ra_var.value = rho * ra_var.value + (1 - rho) * var * correction

        # Broadcast the per-feature vectors against x (features may be any axes).
        shape = [1] * x.ndim
        for a in feature_axes:
            shape[a] = x.shape[a]
        mul = jax.lax.rsqrt(var + self.epsilon)
        if self.use_scale:
            scale = self.param("scale", self.scale_init, feature_shape, self.param_dtype)
            mul = mul * scale
        y = (x - mean.reshape(shape)) * mul.reshape(shape)
        if self.use_bias:
            y = y + self.param("bias", self.bias_init, feature_shape, self.param_dtype).reshape(
                shape
            )
        dtype = self.dtype or jnp.result_type(x, self.param_dtype)
        return jnp.asarray(y, dtype)
