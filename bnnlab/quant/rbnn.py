"""Rotated BNN (RBNN) pieces: the bi-rotation shape and the training-aware sign gradient.

The learned bi-rotation itself (alternating SVD updates of R1, R2 once per epoch) is a training
procedure, not a pure quantizer; these are the parts docs/baselines.md describes and checks.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from bnnlab.quant import base, math

Array = jax.Array


def birotation_shape(n: int) -> tuple[int, int]:
    """(a, b) with a·b = n and a the largest divisor of n with a ≤ √n."""
    if not isinstance(n, int) or n < 1:
        raise ValueError(f"birotation_shape needs a positive integer filter size, got {n!r}.")
    a = max(d for d in range(1, int(n**0.5) + 1) if n % d == 0)
    return a, n // a


def rbnn_schedule(progress, t_min: float = 1e-2, t_max: float = 10.0) -> tuple[Array, Array]:
    r"""t = 10^{log10 T_min + p·(log10 T_max − log10 T_min)}, k = max(1/t, 1)."""
    p = base.resolve_progress(progress)
    t = jnp.power(10.0, jnp.log10(t_min) + p * (jnp.log10(t_max) - jnp.log10(t_min)))
    return t, jnp.maximum(1.0 / t, 1.0)


def rbnn_derivative(x: Array, t: Array, k: Array) -> Array:
    r"""k·max(0, √2·t − t²·|x|)."""
    return k * jnp.maximum(0.0, jnp.sqrt(2.0) * t - t * t * jnp.abs(x))


@base.register("rbnn_sign")
@dataclasses.dataclass(frozen=True)
class RbnnSign(base.Quantizer):
    r"""Sign with RBNN's training-aware approximation of the sign gradient.

    Forward:  q(x) = sign(x)
    Backward: ∂q/∂x = k·max(0, √2·t − t²|x|),
              t = 10^{log10 T_min + p·(log10 T_max − log10 T_min)}, k = max(1/t, 1).
              For activations the reference uses k = 1 and t = max(t, 1) (``activations=True``).

    References:
      Lin, Ji, Xu, Wang, Shen, Duan, Tian, Zhang. "Rotated Binary Neural Network",
      NeurIPS 2020, arXiv 2009.13055.
    """

    t_min: float = 1e-2
    t_max: float = 10.0
    activations: bool = False

    def __post_init__(self):
        base.check_positive("rbnn_sign", "t_min", self.t_min)
        if not self.t_max > self.t_min:
            raise ValueError(
                f"rbnn_sign: t_max must exceed t_min, got {self.t_max} <= {self.t_min}."
            )

    def schedule(self, progress=None):
        t, k = rbnn_schedule(progress, self.t_min, self.t_max)
        return {"rbnn_t": t, "rbnn_k": k}

    def __call__(self, x, *, progress=None, train=True, **kwargs):
        del train, kwargs  # Unused.
        t, k = rbnn_schedule(progress, self.t_min, self.t_max)
        if self.activations:
            t, k = jnp.maximum(t, 1.0), jnp.float32(1.0)
        return math.surrogate(math.sign, rbnn_derivative, x, (t, k))

    def encode(self, x, *, progress=None, train=True, **kwargs):
        del progress, train, kwargs  # Unused.
        return base.signs_encoded(math.sign(x))
