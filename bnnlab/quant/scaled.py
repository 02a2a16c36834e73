"""Binary weights with an analytic per-output-channel scale: Bi-Real/ReActNet and XNOR-Net.

Both scale each filter by α_f = mean |W_f| (the least-squares optimum for a ±1 approximation,
‖W_f‖₁ / n); they differ in the pseudo-gradient. The scale is part of the quantizer's output
here because it is a function of the weights, not a learnable parameter of the layer.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from bnnlab.quant import base, math

Array = jax.Array


def _scaled_sign(w: Array) -> Array:
    return math.mean_abs_per_filter(w) * math.sign(w)


def _xnor_derivative(w: Array, clip_value: Array) -> Array:
    n = w.size // w.shape[-1]
    alpha = math.mean_abs_per_filter(w)
    return 1.0 / n + alpha * math.ste_derivative(w, clip_value)


@dataclasses.dataclass(frozen=True)
class _ScaledSign(base.Quantizer):
    """α_f · sign(W) with α_f = mean |W_f|; subclasses choose the pseudo-derivative."""

    clip_value: float = 1.0

    def __post_init__(self):
        base.check_positive(self.name, "clip_value", self.clip_value)

    @staticmethod
    def _derivative(w: Array, clip_value: Array) -> Array:
        raise NotImplementedError

    def __call__(self, w, *, progress=None, train=True, **kwargs):
        del progress, train, kwargs  # Unused.
        base.require_kernel_rank(self.name, w)
        return math.surrogate(_scaled_sign, self._derivative, w, (jnp.float32(self.clip_value),))

    def encode(self, w, *, progress=None, train=True, **kwargs):
        del progress, train, kwargs  # Unused.
        base.require_kernel_rank(self.name, w)
        return base.signs_encoded(math.sign(w), math.mean_abs_per_filter(w))


@base.register("magnitude_aware_sign")
@dataclasses.dataclass(frozen=True)
class MagnitudeAwareSign(_ScaledSign):
    r"""Per-filter magnitude-scaled sign with a detached scale (Bi-Real Net, ReActNet weights).

    Forward:  q(W)_f = α_f · sign(W_f),  α_f = mean |W_f|  (over each filter, detached)
    Backward: ∂q/∂W = 1{|W| ≤ c}   (STE through clip(W, −c, c), as the released PyTorch code;
              larq's MagnitudeAwareSign additionally multiplies by α)

    References:
      Liu et al. "Bi-Real Net", ECCV 2018, arXiv 1808.00278; Liu, Shen, Savvides, Cheng.
      "ReActNet: Towards Precise Binary Neural Network with Generalized Activation Functions",
      ECCV 2020, arXiv 2003.03488.

    Args:
      clip_value: gradient window half-width.
    """

    _derivative = staticmethod(math.ste_derivative)


@base.register("xnor_sign")
@dataclasses.dataclass(frozen=True)
class XnorSign(_ScaledSign):
    r"""XNOR-Net binary weights: per-filter L1 scale with the paper's gradient.

    Forward:  q(W)_f = α_f · sign(W_f),  α_f = ‖W_f‖₁ / n
    Backward: ∂L/∂W = ∂L/∂q · (1/n + α_f · 1{|W| ≤ c})
              (the paper's approximation: the scale's own derivative is kept only on the
              diagonal, 1/n, and sign is replaced by the clipped STE)

    References:
      Rastegari, Ordonez, Redmon, Farhadi. "XNOR-Net: ImageNet Classification Using Binary
      Convolutional Neural Networks", ECCV 2016, arXiv 1603.05279.

    Args:
      clip_value: gradient window half-width.
    """

    _derivative = staticmethod(_xnor_derivative)
