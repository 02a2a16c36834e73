"""Per-token k-bit activations of BitNet's BitLinear: absmax (BitNet, BitNet b1.58: 8 bits) and
absmean (BitNet a4.8: 4 bits).

A token is a vector along the last axis (the features a projection contracts; ``quantize_model``
moves a projection's contracted axes last before calling an input quantizer), so every token
gets its own scale and the batch and sequence axes never mix. Values are built from the exact
integer codes, so the codes are what an int8 kernel (``bnnlab.kernels.ternary``) consumes.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from bnnlab.quant import base
from bnnlab.quant.dorefa import straight_through

Array = jax.Array

STATISTICS = ("absmax", "absmean")


@base.register("token_absmax")
@dataclasses.dataclass(frozen=True)
class TokenAbsmax(base.Quantizer):
    r"""Symmetric k-bit activations with one scale per token (no zero point).

    With Q = 2^{k−1} − 1 (127 for 8 bits, 7 for 4), for each token x (a vector along ``axis``):

    absmax (BitNet, b1.58):   s = max(max_i |x_i|, ε) / Q
    absmean (BitNet a4.8):    s = max(mean_i |x_i|, ε) / √Q
    Forward:  x̃ = clip(round(x / s), −Q − 1, Q) ∈ {−Q−1, …, Q},   q(x) = s · x̃
    Backward: ∂q/∂x = 1   (identity straight-through, as the released BitLinear code)

    absmax never clips (|x / s| ≤ Q), so its codes lie in [−Q, Q]; absmean clips the tokens'
    outliers, which is why a4.8 keeps it for the inputs of the attention and FFN-up projections
    and 8-bit absmax elsewhere. a4.8 states absmean for 4 bits (√7); √Q is its value for other
    widths. ``round`` is half-to-even, as ``torch.round``.

    References:
      Wang et al. "BitNet: Scaling 1-bit Transformers for Large Language Models",
      arXiv 2310.11453 (2023); Ma et al. "The Era of 1-bit LLMs: All Large Language Models are
      in 1.58 Bits", arXiv 2402.17764 (2024); Wang, Ma, Wei. "BitNet a4.8: 4-bit Activations
      for 1-bit LLMs", arXiv 2411.04965 (2024).

    Args:
      k_bit: bit width, 2 … 8.
      statistic: ``"absmax"`` or ``"absmean"``.
      axis: the token's feature axis (default the last).
      eps: floor of the statistic.
    """

    k_bit: int = 8
    statistic: str = "absmax"
    axis: int = -1
    eps: float = 1e-5

    def __post_init__(self):
        base.check_bits(self.name, self.k_bit, low=2)
        base.check_choice(self.name, "statistic", self.statistic, STATISTICS)
        base.check_positive(self.name, "eps", self.eps)

    @property
    def precision(self) -> int:
        return self.k_bit

    @property
    def levels(self) -> int:
        """Q, the largest code."""
        return 2 ** (self.k_bit - 1) - 1

    def encode(self, x, *, progress=None, train=True, **kwargs):
        del progress, train, kwargs  # Unused.
        if x.ndim == 0:
            raise ValueError(f"{self.name} needs at least one (feature) axis, got a scalar.")
        q = float(self.levels)
        magnitude = jnp.abs(x)
        if self.statistic == "absmax":
            stat, divisor = jnp.max(magnitude, axis=self.axis, keepdims=True), q
        else:
            stat, divisor = jnp.mean(magnitude, axis=self.axis, keepdims=True), q**0.5
        scale = (jnp.maximum(stat, self.eps) / divisor).astype(jnp.float32)
        codes = jnp.clip(jnp.round(x / scale), -q - 1.0, q)
        return base.Encoded(
            codes=codes.astype(jnp.int8),
            scale=scale,
            offset=jnp.float32(0.0),
            bits=self.k_bit,
        )

    def __call__(self, x, *, progress=None, train=True, **kwargs):
        del progress, train, kwargs  # Unused.
        return straight_through(self.encode(x).decode().astype(x.dtype), x)
