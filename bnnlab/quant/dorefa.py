"""DoReFa-Net k-bit quantizers for weights and activations, and the straight-through helpers
every multi-bit quantizer here uses.

The forward value is built from the exact integer codes (``Encoded.decode``), and a float
"gradient path" with the intended derivative is added as ``path - stop_gradient(path)``, which is
exactly 0 in the forward. This keeps quantized values bit-exact (an export reproduces them), where
``x + stop_gradient(q - x)`` would round in float32.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from bnnlab.quant import base

Array = jax.Array


def straight_through(value: Array, path: Array) -> Array:
    """Forward ``value`` exactly; backward the derivative of ``path``."""
    return jax.lax.stop_gradient(value) + (path - jax.lax.stop_gradient(path))


def round_half_up(x: Array) -> Array:
    """⌊x + 1/2⌋: unlike round-half-to-even, 0.5 goes up, so a zero weight maps to +1."""
    return jnp.floor(x + 0.5)


@base.register("dorefa")
@dataclasses.dataclass(frozen=True)
class DoReFa(base.Quantizer):
    r"""DoReFa-Net k-bit quantizer, in activation or weight mode.

    With n = 2^k − 1 and q_k(u) = ⌊n·u + ½⌋ / n:

    Activations:
      Forward:  q(x) = q_k(clip(x, 0, 1))                       ∈ {0, 1/n, …, 1}
      Backward: ∂q/∂x = 1{0 ≤ x ≤ 1}
    Weights:
      Forward:  u = tanh(w) / (2·max|tanh(w)|) + ½,  q(w) = 2·q_k(u) − 1   ∈ {−1, …, +1}
      Backward: ∂q/∂w = ∂(2u − 1)/∂w  (straight through the rounding only; the tanh and
                the max normalisation are differentiated; the max is over the whole tensor)

    Rounding is half-up rather than TensorFlow's half-to-even; they differ only on exact ties
    (e.g. w = 0 maps to +1 here, consistent with sign(0) = +1).

    References:
      Zhou, Wu, Ni, Zhou, Wen, Zou. "DoReFa-Net: Training Low Bitwidth Convolutional Neural
      Networks with Low Bitwidth Gradients", arXiv 1606.06160.

    Args:
      k_bit: bit width, 1 … 8.
      mode: ``"activations"`` or ``"weights"``.
    """

    k_bit: int = 2
    mode: str = "activations"

    def __post_init__(self):
        base.check_bits("dorefa", self.k_bit)
        base.check_choice("dorefa", "mode", self.mode, ("activations", "weights"))

    @property
    def precision(self) -> int:
        return self.k_bit

    @property
    def _levels(self) -> float:
        return float(2**self.k_bit - 1)

    def _unit(self, x: Array) -> Array:
        """The [0, 1] value that is rounded to k bits (differentiable path)."""
        if self.mode == "activations":
            inside = jax.lax.stop_gradient(((x >= 0) & (x <= 1)).astype(x.dtype))
            # Value clip(x, 0, 1), derivative exactly 1{0 <= x <= 1} (jnp.clip halves it at ties).
            return straight_through(jnp.clip(x, 0.0, 1.0), x * inside)
        t = jnp.tanh(x)
        # A tensor of exact zeros would divide 0/0; any positive floor gives u = 1/2 there.
        peak = jnp.maximum(jnp.max(jnp.abs(t)), jnp.finfo(x.dtype).tiny)
        return t / (2.0 * peak) + 0.5

    def encode(self, x, *, progress=None, train=True, **kwargs):
        del progress, train, kwargs  # Unused.
        n = self._levels
        codes = round_half_up(self._unit(x) * n)
        if self.mode == "activations":
            scale, offset = 1.0 / n, 0.0
        else:
            scale, offset = 2.0 / n, -1.0
        return base.Encoded(
            codes=codes.astype(jnp.uint8),
            scale=jnp.float32(scale),
            offset=jnp.float32(offset),
            bits=self.k_bit,
        )

    def __call__(self, x, *, progress=None, train=True, **kwargs):
        del progress, train, kwargs  # Unused.
        value = self.encode(x).decode().astype(x.dtype)
        u = self._unit(x)
        path = u if self.mode == "activations" else 2.0 * u - 1.0
        return straight_through(value, path)
