"""LSQ: k-bit uniform quantization with a learned step size."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from bnnlab.quant import base
from bnnlab.quant.dorefa import straight_through

Array = jax.Array


def scale_gradient(x: Array, factor: float) -> Array:
    """Forward ``x`` exactly; backward the gradient times ``factor``."""
    return straight_through(x, x * factor)


@base.register("lsq")
@dataclasses.dataclass(frozen=True)
class LSQ(base.Quantizer):
    r"""Learned Step Size Quantization. The step s is a learnable array the layer owns.

    With levels [−Q_N, Q_P] (signed: Q_N = 2^{k−1}, Q_P = 2^{k−1} − 1; unsigned: Q_N = 0,
    Q_P = 2^k − 1) and r = v / s:

    Forward:  v̂ = round(clip(r, −Q_N, Q_P)) · s
    Backward: ∂v̂/∂v = 1{−Q_N < r < Q_P}
              ∂v̂/∂s = (round(r) − r) if −Q_N < r < Q_P;  −Q_N if r ≤ −Q_N;  Q_P if r ≥ Q_P
              and the step gradient is multiplied by g = 1/√(N·Q_P), N = number of weights
              (weights mode) or of features per example (activations mode).
    Init:     s = 2·mean|v| / √Q_P  (from the first tensor seen).

    References:
      Esser, McKinstry, Bablani, Appuswamy, Modha. "Learned Step Size Quantization",
      ICLR 2020, arXiv 1902.08153.

    Args:
      k_bit: bit width; 2 … 8 when signed, 1 … 8 when unsigned.
      mode: ``"weights"`` or ``"activations"`` (sets N and the default signedness).
      signed: override the signedness (default: signed for weights, unsigned for activations).
    """

    learnable = ("step",)

    k_bit: int = 2
    mode: str = "weights"
    signed: bool | None = None

    def __post_init__(self):
        base.check_choice("lsq", "mode", self.mode, ("weights", "activations"))
        # One signed bit leaves Q_P = 0: there is no positive level to learn a step for.
        base.check_bits("lsq", self.k_bit, low=2 if self.is_signed else 1)

    @property
    def is_signed(self) -> bool:
        return self.mode == "weights" if self.signed is None else self.signed

    @property
    def precision(self) -> int:
        return self.k_bit

    @property
    def levels(self) -> tuple[int, int]:
        """(Q_N, Q_P)."""
        if self.is_signed:
            return 2 ** (self.k_bit - 1), 2 ** (self.k_bit - 1) - 1
        return 0, 2**self.k_bit - 1

    def init_learnable(self, x):
        q_p = self.levels[1]
        return {"step": 2.0 * jnp.mean(jnp.abs(x)) / jnp.sqrt(float(q_p))}

    def _clipped_ratio(self, x: Array, step: Array) -> Array:
        q_n, q_p = self.levels
        r = x / step
        # jnp.where (not jnp.clip) so the boundary itself counts as clipped, as in the paper.
        return jnp.where(r <= -q_n, -float(q_n), jnp.where(r >= q_p, float(q_p), r))

    def encode(self, x, *, progress=None, train=True, step=None, **kwargs):
        del progress, train, kwargs  # Unused.
        if step is None:
            raise ValueError("lsq needs its learnable step: call q(x, step=s).")
        codes = jnp.round(self._clipped_ratio(x, step))
        dtype = jnp.int8 if self.is_signed else jnp.uint8
        return base.Encoded(
            codes=codes.astype(dtype),
            scale=jnp.asarray(step, jnp.float32),
            offset=jnp.float32(0.0),
            bits=self.k_bit,
        )

    def __call__(self, x, *, progress=None, train=True, step=None, **kwargs):
        del progress, train, kwargs  # Unused.
        if step is None:
            raise ValueError("lsq needs its learnable step: call q(x, step=s).")
        q_p = self.levels[1]
        n = x.size if self.mode == "weights" else x.size // max(x.shape[0], 1)
        s = scale_gradient(step, 1.0 / float(n * q_p) ** 0.5)
        r = self._clipped_ratio(x, s)
        r_rounded = straight_through(jnp.round(r), r)
        return r_rounded * s
