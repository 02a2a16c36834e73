"""Sign-type binarizers that differ only in their pseudo-gradient, plus the no-op quantizer.

Names follow larq (``ste_sign``, ``approx_sign``, ``swish_sign``, ``ste_heaviside``), so a larq
config translates one to one. All forwards are exact: outputs are precisely ±1 (or 0/1).
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from bnnlab.quant import base, math

Array = jax.Array


@base.register("identity")
@dataclasses.dataclass(frozen=True)
class Identity(base.Quantizer):
    r"""No-op quantizer: q(x) = x, ∂q/∂x = 1. Marks a tensor as full precision (32 bits)."""

    @property
    def precision(self) -> int:
        return 32

    def __call__(self, x, *, progress=None, train=True, **kwargs):
        del progress, train, kwargs  # Unused.
        return x

    def encode(self, x, *, progress=None, train=True, **kwargs):
        del progress, train, kwargs  # Unused.
        return base.Encoded(codes=x, scale=jnp.float32(1.0), offset=jnp.float32(0.0), bits=32)


@dataclasses.dataclass(frozen=True)
class _SignQuantizer(base.Quantizer):
    """Shared forward/encode of quantizers whose forward is exactly sign(x)."""

    def _derivative(self):
        raise NotImplementedError

    def __call__(self, x, *, progress=None, train=True, **kwargs):
        del progress, train, kwargs  # Unused.
        derivative, params = self._derivative()
        return math.surrogate(math.sign, derivative, x, params)

    def encode(self, x, *, progress=None, train=True, **kwargs):
        del progress, train, kwargs  # Unused.
        return base.signs_encoded(math.sign(x))


@base.register("ste_sign")
@dataclasses.dataclass(frozen=True)
class SteSign(_SignQuantizer):
    r"""Sign with the clipped straight-through estimator.

    Forward:  q(x) = +1 if x ≥ 0, −1 otherwise   (sign(0) = +1)
    Backward: ∂q/∂x = 1{|x| ≤ c}                 (c = ``clip_value``)

    References:
      Courbariaux, Hubara, Soudry, El-Yaniv, Bengio. "Binarized Neural Networks: Training Deep
      Neural Networks with Weights and Activations Constrained to +1 or −1", arXiv 1602.02830.

    Args:
      clip_value: gradient window half-width; ``float('inf')`` gives the plain STE.
      latent_clip: as a kernel quantizer, latent weights are clipped to [−c, c] after each
        step (larq's ``WeightClip``, QuickNet's 1.25; ``project``); None: no clip.
    """

    clip_value: float = 1.0
    latent_clip: float | None = None

    def __post_init__(self):
        base.check_positive("ste_sign", "clip_value", self.clip_value)
        if self.latent_clip is not None:
            base.check_positive("ste_sign", "latent_clip", self.latent_clip)

    def project(self, w, progress=None):
        del progress  # Unused.
        if self.latent_clip is None:
            return w
        return jnp.clip(w, -self.latent_clip, self.latent_clip)

    def _derivative(self):
        return math.ste_derivative, (jnp.float32(self.clip_value),)


@base.register("approx_sign")
@dataclasses.dataclass(frozen=True)
class ApproxSign(_SignQuantizer):
    r"""Sign with Bi-Real Net's piecewise-polynomial pseudo-gradient.

    Forward:  q(x) = sign(x)                     (sign(0) = +1)
    Backward: ∂q/∂x = 2 + 2x on [−1, 0), 2 − 2x on [0, 1), 0 elsewhere  = max(0, 2 − 2|x|)

    References:
      Liu, Wu, Luo, Yang, Liu, Cheng. "Bi-Real Net: Enhancing the Performance of 1-bit CNNs
      with Improved Representational Capability and Advanced Training Algorithm", ECCV 2018,
      arXiv 1808.00278.
    """

    def _derivative(self):
        return math.approx_sign_derivative, ()


@base.register("swish_sign")
@dataclasses.dataclass(frozen=True)
class SwishSign(_SignQuantizer):
    r"""Sign with the SignSwish pseudo-gradient.

    Forward:  q(x) = sign(x)
    Backward: ∂q/∂x = β(2 − βx·tanh(βx/2)) / (1 + cosh(βx)),
              the derivative of SS_β(x) = 2σ(βx)(1 + βx(1 − σ(βx))) − 1.

    References:
      Darabi, Belbahri, Courbariaux, Nia. "BNN+: Improved Binary Network Training",
      arXiv 1812.11800.

    Args:
      beta: sharpness of the surrogate (larq's default 5).
    """

    beta: float = 5.0

    def __post_init__(self):
        base.check_positive("swish_sign", "beta", self.beta)

    def _derivative(self):
        return math.swish_sign_derivative, (jnp.float32(self.beta),)


@base.register("ste_heaviside")
@dataclasses.dataclass(frozen=True)
class SteHeaviside(base.Quantizer):
    r"""Heaviside step with the clipped straight-through estimator ({0, 1} outputs).

    Forward:  q(x) = 1 if x > 0, 0 otherwise
    Backward: ∂q/∂x = 1{|x| ≤ c}

    References:
      Hubara, Courbariaux, Soudry, El-Yaniv, Bengio. "Binarized Neural Networks", NeurIPS 2016
      (the straight-through estimator); larq's ``SteHeaviside``.

    Args:
      clip_value: gradient window half-width.
    """

    clip_value: float = 1.0

    def __post_init__(self):
        base.check_positive("ste_heaviside", "clip_value", self.clip_value)

    def __call__(self, x, *, progress=None, train=True, **kwargs):
        del progress, train, kwargs  # Unused.
        return math.surrogate(
            math.heaviside, math.ste_derivative, x, (jnp.float32(self.clip_value),)
        )

    def encode(self, x, *, progress=None, train=True, **kwargs):
        del progress, train, kwargs  # Unused.
        return base.Encoded(
            codes=math.heaviside(x).astype(jnp.uint8),
            scale=jnp.float32(1.0),
            offset=jnp.float32(0.0),
            bits=1,
        )
