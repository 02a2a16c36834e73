"""IR-Net: Libra-PB balanced, standardized binary weights and the EDE pseudo-gradient."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from bnnlab.quant import base, math

Array = jax.Array


def ede_schedule(progress, t_min: float = 0.1, t_max: float = 10.0) -> tuple[Array, Array]:
    r"""EDE's (t, k) at a training fraction: t = T_min·10^{p·log10(T_max/T_min)}, k = max(1/t, 1).

    ``progress`` = epoch / E as in the reference, so t(0) = T_min and t(1) = T_max.
    """
    p = base.resolve_progress(progress)
    t = t_min * jnp.power(10.0, p * jnp.log10(t_max / t_min))
    return t, jnp.maximum(1.0 / t, 1.0)


def ede_derivative(x: Array, t: Array, k: Array) -> Array:
    r"""k·t·(1 − tanh²(t·x)): the derivative of k·tanh(t·x)."""
    return k * t * (1.0 - jnp.tanh(t * x) ** 2)


@dataclasses.dataclass(frozen=True)
class _EdeBase(base.Quantizer):
    t_min: float = 0.1
    t_max: float = 10.0

    def __post_init__(self):
        base.check_positive(self.name, "t_min", self.t_min)
        if not self.t_max > self.t_min:
            raise ValueError(
                f"{self.name}: t_max must exceed t_min, got {self.t_max} <= {self.t_min}."
            )

    def schedule(self, progress=None):
        t, k = ede_schedule(progress, self.t_min, self.t_max)
        return {"ede_t": t, "ede_k": k}

    def _ede_sign(self, x: Array, progress) -> Array:
        t, k = ede_schedule(progress, self.t_min, self.t_max)
        return math.surrogate(math.sign, ede_derivative, x, (t, k))


@base.register("ede_sign")
@dataclasses.dataclass(frozen=True)
class EdeSign(_EdeBase):
    r"""Sign with IR-Net's Error Decay Estimator (for activations).

    Forward:  q(x) = sign(x)
    Backward: ∂q/∂x = k·t·(1 − tanh²(t·x)),  t = T_min·10^{p·log10(T_max/T_min)}, k = max(1/t, 1)

    References:
      Qin, Gong, Liu, Bai, Song, Yu, Yang, Wang. "Forward and Backward Information Retention
      for Accurate Binary Neural Networks", CVPR 2020, arXiv 1909.10788.

    Args:
      t_min, t_max: temperature range (paper 0.1 → 10; the CIFAR ResNet-20 code uses 1e-3).
    """

    def __call__(self, x, *, progress=None, train=True, **kwargs):
        del train, kwargs  # Unused.
        return self._ede_sign(x, progress)

    def encode(self, x, *, progress=None, train=True, **kwargs):
        del progress, train, kwargs  # Unused.
        return base.signs_encoded(math.sign(x))


def _libra_pb(w: Array) -> tuple[Array, Array]:
    """Balanced, standardized weights Ŵ and the power-of-two scale (detached)."""
    axes = math.filter_axes(w)
    w_hat = math.standardize(w, axes, eps=0.0)
    mean_abs = jnp.mean(jnp.abs(w_hat), axis=axes, keepdims=True)
    scale = jax.lax.stop_gradient(jnp.exp2(jnp.round(jnp.log2(mean_abs))))
    return w_hat, scale


@base.register("ir_net")
@dataclasses.dataclass(frozen=True)
class IRNet(_EdeBase):
    r"""IR-Net Libra-PB weights: balanced, standardized, power-of-two scaled sign.

    Forward:  Ŵ = (W − mean_f W) / std_f(W)   (per filter, unbiased std, no ε)
              q(W) = sign(Ŵ) · s,  s = 2^{round(log2(mean_f |Ŵ|))}   (detached)
    Backward: ∂q/∂Ŵ = s · k·t·(1 − tanh²(t·Ŵ))  (EDE, see ``ede_sign``), then through the
              standardisation (statistics not detached, as the reference code).

    References:
      Qin et al. "Forward and Backward Information Retention for Accurate Binary Neural
      Networks", CVPR 2020, arXiv 1909.10788.
    """

    def __call__(self, w, *, progress=None, train=True, **kwargs):
        del train, kwargs  # Unused.
        base.require_kernel_rank(self.name, w)
        w_hat, scale = _libra_pb(w)
        return self._ede_sign(w_hat, progress) * scale

    def encode(self, w, *, progress=None, train=True, **kwargs):
        del progress, train, kwargs  # Unused.
        base.require_kernel_rank(self.name, w)
        w_hat, scale = _libra_pb(w)
        return base.signs_encoded(math.sign(w_hat), scale)
